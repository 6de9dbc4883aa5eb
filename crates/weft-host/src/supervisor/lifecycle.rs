//! Starting the stored deployments when the host starts, and stopping
//! every instance when it stops.

use std::sync::Arc;

use super::Supervisor;
use super::instance::Instance;
use super::orphans::kill_orphans;
use super::types::{Deployment, next_id};

impl Supervisor {
    /// Starts every stored deployment again; run once when the host starts.
    pub(crate) async fn restore(self: &Arc<Self>) {
        let records = match self.store.blocking(|s| s.all()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the deployments to restore");
                return;
            }
        };
        kill_orphans(&self.tag);
        let _ops = self.ops.lock().await;
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
        self.store.close();
    }
}
