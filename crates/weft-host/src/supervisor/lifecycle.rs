//! Starting the stored deployments when the host starts, and stopping
//! every instance when it stops; meanwhile, reporting how this host's
//! deployments are doing, for the other hosts.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use weft_host_api::deployments::VersionStatus;

use super::Supervisor;
use super::instance::Instance;
use super::orphans::kill_orphans;
use super::types::{Deployment, next_id};

/// How often the supervisor reports how its deployments are listed now (an
/// instance registered, crashed, restarted).
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await point.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

impl Supervisor {
    /// Starts every stored deployment again, then reports them and follows
    /// the other hosts' until [`shutdown`](Self::shutdown); run once when
    /// the host starts.
    pub(crate) async fn restore(self: &Arc<Self>) {
        self.restore_stored().await;
        let stop = self.stop.subscribe();
        let follow = tokio::spawn(self.backend.clone().run(stop.clone()));
        let orders = super::cluster::serve_orders(self, stop.clone());
        let report = tokio::spawn(self.clone().report(stop));
        self.tasks.lock().extend([follow, orders, report]);
    }

    async fn restore_stored(self: &Arc<Self>) {
        let records = match self.backend.load().await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the deployments to restore");
                return;
            }
        };
        kill_orphans(&self.tag);
        let _ops = self.ops.lock().await;
        // What the cluster keeps for this host and its store lacks comes
        // back too, and is stored once it runs.
        let fetched = if self.backend.clustered() {
            self.missing_from_store(&records).await
        } else {
            Vec::new()
        };
        let to_store: Vec<_> = fetched.iter().map(|(r, _)| r.clone()).collect();
        let records = records
            .into_iter()
            .chain(fetched.into_iter().map(|(r, _)| r));
        for record in records {
            let program = self.program(&record.service, &record.version, &record.sha256);
            if !program.exists() {
                tracing::error!(
                    service = %record.service,
                    version = %record.version,
                    program = %program.display(),
                    "the executable of a deployment is missing; deploy it again"
                );
            }
            let logs = self.ring(&record.service, &record.version);
            let launch = self.launch(&record, program, logs.clone());
            let mut deployment = Deployment {
                record,
                instances: Vec::new(),
                next: 1,
                logs,
                host: self.id_host(),
            };
            for _ in 0..deployment.record.instances {
                let id = next_id(&mut deployment);
                deployment
                    .instances
                    .push(Instance::start(id, launch.clone()));
            }
            tracing::info!(
                service = %deployment.record.service,
                version = %deployment.record.version,
                instances = deployment.record.instances,
                "restored a deployment"
            );
            let key = (
                deployment.record.service.clone(),
                deployment.record.version.clone(),
            );
            self.deployments.lock().insert(key, deployment);
        }
        for record in to_store {
            let key = (record.service.clone(), record.version.clone());
            if let Err(e) = self.store(&key, record).await {
                tracing::error!(service = %key.0, version = %key.1, error = %e, "cannot store a deployment restored from the cluster");
            }
        }
    }

    /// Stops every instance, keeping the deployments for the next start.
    pub(crate) async fn shutdown(&self) {
        let instances: Vec<Arc<Instance>> = self
            .deployments
            .lock()
            .values()
            .flat_map(|d| d.instances.iter().cloned())
            .collect();
        futures::future::join_all(instances.iter().map(|i| i.stop())).await;
        self.stop.send_replace(true);
        let tasks: Vec<_> = self.tasks.lock().drain(..).collect();
        for task in tasks {
            let _ = task.await;
        }
        // The other hosts see the instances stopped, not running.
        self.backend.report(self.local_statuses()).await;
        self.backend.close();
    }

    /// Reports this host's deployments every [`REPORT_EVERY`] until `stop`
    /// (the backend passes on what changed, and tries again what it could
    /// not pass on).
    async fn report(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(REPORT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stopped(&mut stop) => return,
            }
            self.backend.report(self.local_statuses()).await;
        }
    }

    /// How each deployment of this host is listed now.
    pub(super) fn local_statuses(&self) -> Vec<VersionStatus> {
        let keys: Vec<_> = self.deployments.lock().keys().cloned().collect();
        keys.iter()
            .filter_map(|(s, v)| self.status_of(s, v))
            .collect()
    }
}
