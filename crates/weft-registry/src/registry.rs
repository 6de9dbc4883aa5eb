//! The host side: leases, main versions and the watch stream.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use std::sync::Arc;

use tokio::sync::broadcast;
use weft_core::Error;
use weft_core::name::{self, Version, VersionSelector};
use weft_core::spec::ServiceSpec;

use crate::cache::Cache;
use crate::select;
use crate::types::{InstanceInfo, RegisterReply, ServiceSummary, VersionSummary, WatchEvent};

/// How many events a watcher may fall behind before it lags (see
/// [`Registry::subscribe`]).
pub const WATCH_CAPACITY: usize = 1024;

/// The registry state machine the host runs: which instances hold a lease,
/// which version of each service is main, and the stream of changes that
/// callers watch.
///
/// It does no IO and reads no clock: every method that depends on time takes
/// `now`, so the host decides when leases lapse (by calling
/// [`expire`](Registry::expire) periodically) and tests control time exactly.
/// The host keeps it behind a mutex.
///
/// ```
/// use std::time::{Duration, Instant};
/// use weft_core::name::Version;
/// use weft_core::spec::ServiceSpec;
/// use weft_registry::{InstanceInfo, Registry, WatchEvent};
///
/// let t0 = Instant::now();
/// let mut registry = Registry::new(Duration::from_secs(10));
/// let mut events = registry.subscribe();
/// let spec = ServiceSpec { name: "die_roller".into(), description: String::new(), entrypoints: vec![], event_handlers: vec![], publishes: vec![] };
/// registry.register(InstanceInfo {
///     id: "die_roller-1".into(),
///     service: "die_roller".into(),
///     version: Version::new(1, 0, 0),
///     address: "tcp://127.0.0.1:4312".into(),
///     spec,
///     pid: None,
///     started_ms: 0,
///     host: None,
/// }, t0)?;
/// assert!(matches!(events.try_recv(), Ok(WatchEvent::Up { .. })));
/// assert!(matches!(events.try_recv(), Ok(WatchEvent::Main { .. })));
///
/// // No keepalive for the lease's duration: the instance is evicted.
/// assert_eq!(registry.expire(t0 + Duration::from_secs(10)), ["die_roller-1"]);
/// # Ok::<(), weft_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Registry {
    lease_ttl: Duration,
    /// Lets callers tell a restarted host (whose instances are still
    /// re-registering) from a resync with the same host.
    epoch: String,
    leases: BTreeMap<String, Lease>,
    /// Main versions outlive their instances: main is a deployment decision,
    /// not a property of whatever happens to be running.
    mains: BTreeMap<String, Version>,
    events: broadcast::Sender<WatchEvent>,
    /// The registry resolved for routing, kept current with every change:
    /// callers inside the host's process route from it without a watch
    /// stream of their own or a lock on the registry.
    index: Arc<Cache>,
}

#[derive(Debug)]
struct Lease {
    info: InstanceInfo,
    renewed: Instant,
}

impl Registry {
    /// An empty registry whose leases lapse after `lease_ttl` without a
    /// register or keepalive. Each registry gets a new random epoch.
    pub fn new(lease_ttl: Duration) -> Self {
        Registry {
            lease_ttl,
            epoch: format!("{:032x}", rand::random::<u128>()),
            leases: BTreeMap::new(),
            mains: BTreeMap::new(),
            events: broadcast::channel(WATCH_CAPACITY).0,
            index: Arc::new(Cache::with_grace(Duration::ZERO)),
        }
    }

    /// This registry's epoch, a random id chosen at construction.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// How long a lease lasts without a keepalive.
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
    }

    /// Registers an instance, or replaces the entry with the same id, and
    /// starts its lease at `now`.
    ///
    /// Emits [`WatchEvent::Up`]; when the service has no main version yet,
    /// the instance's version becomes main and [`WatchEvent::Main`] follows.
    ///
    /// Fails with `InvalidArgument` when the service name is not valid, the
    /// id is empty, or the spec names another service.
    pub fn register(&mut self, info: InstanceInfo, now: Instant) -> Result<RegisterReply, Error> {
        name::validate(&info.service)?;
        if info.id.is_empty() {
            return Err(Error::invalid_argument(
                "id",
                format!(
                    "an instance of `{}` registered with an empty id; give every instance a unique id",
                    info.service
                ),
            ));
        }
        if info.spec.name != info.service {
            return Err(Error::invalid_argument(
                "spec.name",
                format!(
                    "the instance registers as `{}` but its spec describes `{}`; register under the name the service was built with",
                    info.service, info.spec.name
                ),
            ));
        }
        let (id, service, version) = (info.id.clone(), info.service.clone(), info.version.clone());
        let previous = self.leases.insert(
            id.clone(),
            Lease {
                info: info.clone(),
                renewed: now,
            },
        );
        if let Some(previous) = previous
            && previous.info.service != service
        {
            self.emit(WatchEvent::Down {
                id,
                service: previous.info.service,
            });
        }
        // Up before Main: a cache that sees Main first would briefly have a
        // main version without instances and fail calls as unavailable.
        self.emit(WatchEvent::Up { instance: info });
        if !self.mains.contains_key(&service) {
            self.mains.insert(service.clone(), version.clone());
            self.emit(WatchEvent::Main { service, version });
        }
        Ok(RegisterReply {
            lease_ttl_ms: u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX),
            host_epoch: self.epoch.clone(),
        })
    }

    /// Renews the lease of instance `id` at `now`.
    ///
    /// Fails with `NotFound` when the id is not registered (its lease lapsed,
    /// or the host restarted); the instance should then register again.
    pub fn keepalive(&mut self, id: &str, now: Instant) -> Result<(), Error> {
        match self.leases.get_mut(id) {
            Some(lease) => {
                lease.renewed = now;
                Ok(())
            }
            None => Err(Error::not_found(format!(
                "instance `{id}` is not registered with this host (its lease lapsed or the host restarted); register it again"
            ))),
        }
    }

    /// Removes instance `id` (it is shutting down) and emits
    /// [`WatchEvent::Down`]. Returns the removed entry; an unknown id is not
    /// an error (the lease may have lapsed first) and emits nothing.
    pub fn deregister(&mut self, id: &str, _now: Instant) -> Option<InstanceInfo> {
        let lease = self.leases.remove(id)?;
        self.emit(WatchEvent::Down {
            id: lease.info.id.clone(),
            service: lease.info.service.clone(),
        });
        Some(lease.info)
    }

    /// Evicts every instance with no register or keepalive during the last
    /// `lease_ttl` before `now`, emits [`WatchEvent::Down`] for each and
    /// returns their ids. Main versions are kept.
    pub fn expire(&mut self, now: Instant) -> Vec<String> {
        let ttl = self.lease_ttl;
        let lapsed: Vec<String> = self
            .leases
            .iter()
            .filter(|(_, lease)| now.saturating_duration_since(lease.renewed) >= ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &lapsed {
            if let Some(lease) = self.leases.remove(id) {
                self.emit(WatchEvent::Down {
                    id: lease.info.id,
                    service: lease.info.service,
                });
            }
        }
        lapsed
    }

    /// Makes `version` the main version of `service` and emits
    /// [`WatchEvent::Main`] (nothing when it already is main).
    ///
    /// Fails with `NotFound` when the service is unknown or no instance of
    /// that version is registered: start the version before making it main.
    pub fn set_main(&mut self, service: &str, version: Version) -> Result<(), Error> {
        let running = self.running(service);
        if running.is_empty() {
            return Err(select::unknown_service(service));
        }
        if !running.contains_key(&version) {
            return Err(Error::not_found(format!(
                "version {version} of `{service}` has no running instances (running: {}); start it before making it main",
                select::list(&running)
            )));
        }
        if self.mains.get(service) != Some(&version) {
            self.mains.insert(service.to_owned(), version.clone());
            self.emit(WatchEvent::Main {
                service: service.to_owned(),
                version,
            });
        }
        Ok(())
    }

    /// The main version of each service that has one.
    pub fn mains(&self) -> &BTreeMap<String, Version> {
        &self.mains
    }

    /// Restores main versions a host persisted before it restarted; they
    /// override any chosen since (the first registration of a service picks
    /// its main only when none is set). Emits [`WatchEvent::Main`] for each
    /// change. Call it before instances register, to avoid that flip.
    pub fn restore_mains(&mut self, mains: BTreeMap<String, Version>) {
        for (service, version) in mains {
            if self.mains.get(&service) != Some(&version) {
                self.mains.insert(service.clone(), version.clone());
                self.emit(WatchEvent::Main { service, version });
            }
        }
    }

    /// The whole registry as a [`WatchEvent::Snapshot`], instances ordered by id.
    pub fn snapshot(&self) -> WatchEvent {
        WatchEvent::Snapshot {
            epoch: self.epoch.clone(),
            instances: self.instances().cloned().collect(),
            mains: self.mains.clone(),
        }
    }

    /// A receiver of every event emitted from now on.
    ///
    /// Serve a watcher by taking `subscribe()` and [`snapshot`](Self::snapshot)
    /// under the same lock, sending the snapshot first and then forwarding
    /// events. A receiver that falls more than [`WATCH_CAPACITY`] events
    /// behind gets `RecvError::Lagged`: it has missed events, so send it a
    /// fresh snapshot (same epoch: the watcher replaces its state) and carry on.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.events.subscribe()
    }

    /// The registered instance `id`, if any.
    pub fn instance(&self, id: &str) -> Option<&InstanceInfo> {
        self.leases.get(id).map(|lease| &lease.info)
    }

    /// Every registered instance, ordered by id.
    pub fn instances(&self) -> impl Iterator<Item = &InstanceInfo> {
        self.leases.values().map(|lease| &lease.info)
    }

    /// Every service that has instances or a main version, by name, with its
    /// running versions.
    pub fn services(&self) -> Vec<ServiceSummary> {
        let mut services: BTreeMap<&str, BTreeMap<&Version, usize>> = self
            .mains
            .keys()
            .map(|s| (s.as_str(), BTreeMap::new()))
            .collect();
        for info in self.instances() {
            *services
                .entry(&info.service)
                .or_default()
                .entry(&info.version)
                .or_default() += 1;
        }
        services
            .into_iter()
            .map(|(name, versions)| ServiceSummary {
                name: name.to_owned(),
                main: self.mains.get(name).cloned(),
                versions: versions
                    .into_iter()
                    .map(|(version, instances)| VersionSummary {
                        version: version.clone(),
                        instances,
                    })
                    .collect(),
            })
            .collect()
    }

    /// The version of `service` that `selector` resolves to, by the same
    /// rules as [`Cache::resolve`], and that version's spec; the error
    /// says why there is none.
    pub fn spec(
        &self,
        service: &str,
        selector: &VersionSelector,
    ) -> Result<(&Version, &ServiceSpec), Error> {
        let running = self.running(service);
        let (_, info) = select::choose(service, self.mains.get(service), &running, selector)?;
        let info: &InstanceInfo = info;
        Ok((&info.version, &info.spec))
    }

    /// The registry as a routing index: every registered instance by
    /// service and version, with addresses parsed, updated under the
    /// registry's lock with every change. [`Cache::resolve`] on it answers
    /// what the registry would; reading it takes no lock on the registry.
    ///
    /// It is the registry's own state, not a copy that trails it: an event
    /// emitted by a change is in the index before it reaches any watcher.
    pub fn index(&self) -> Arc<Cache> {
        self.index.clone()
    }

    /// The running versions of `service`, each with its first instance.
    fn running(&self, service: &str) -> BTreeMap<Version, &InstanceInfo> {
        let mut running = BTreeMap::new();
        for info in self.instances().filter(|i| i.service == service) {
            running.entry(info.version.clone()).or_insert(info);
        }
        running
    }

    fn emit(&self, event: WatchEvent) {
        self.index.apply_change(event.clone());
        // No watcher is not an error: the next one starts from a snapshot.
        let _ = self.events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::instance;
    use tokio::sync::broadcast::error::TryRecvError;
    use weft_core::Code;

    const TTL: Duration = Duration::from_secs(10);

    fn drain(rx: &mut broadcast::Receiver<WatchEvent>) -> Vec<WatchEvent> {
        let mut out = Vec::new();
        loop {
            match rx.try_recv() {
                Ok(e) => out.push(e),
                Err(TryRecvError::Empty) => return out,
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn up(id: &str) -> impl Fn(&WatchEvent) -> bool + '_ {
        move |e| matches!(e, WatchEvent::Up { instance } if instance.id == id)
    }

    #[test]
    fn register_emits_up_then_main_for_the_first_version() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        let mut rx = r.subscribe();
        let reply = r.register(instance("a1", "a", "1.0.0"), t0).unwrap();
        assert_eq!(reply.lease_ttl_ms, 10_000);
        assert_eq!(reply.host_epoch, r.epoch());
        let events = drain(&mut rx);
        assert_eq!(events.len(), 2);
        assert!(up("a1")(&events[0]));
        assert_eq!(
            events[1],
            WatchEvent::Main {
                service: "a".into(),
                version: Version::new(1, 0, 0)
            }
        );

        // A second version does not take over main.
        r.register(instance("a2", "a", "2.0.0"), t0).unwrap();
        let events = drain(&mut rx);
        assert_eq!(events.len(), 1);
        assert!(up("a2")(&events[0]));
        assert_eq!(r.mains()["a"], Version::new(1, 0, 0));
    }

    #[test]
    fn reregistering_the_same_id_replaces_it() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        r.register(instance("a1", "a", "1.0.0"), t0).unwrap();
        let mut rx = r.subscribe();
        let mut moved = instance("a1", "a", "1.1.0");
        moved.address = "tcp://127.0.0.1:9999".into();
        r.register(moved.clone(), t0).unwrap();
        assert_eq!(r.instances().collect::<Vec<_>>(), [&moved]);
        assert_eq!(r.services()[0].versions.len(), 1);
        assert_eq!(
            drain(&mut rx),
            [WatchEvent::Up {
                instance: moved.clone()
            }]
        );

        // Moving to another service: watchers drop it from the old one.
        r.register(instance("a1", "b", "1.0.0"), t0).unwrap();
        let events = drain(&mut rx);
        assert_eq!(
            events[0],
            WatchEvent::Down {
                id: "a1".into(),
                service: "a".into()
            }
        );
        assert!(up("a1")(&events[1]));
        assert_eq!(r.instances().count(), 1);
    }

    #[test]
    fn register_validates() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        let mut rx = r.subscribe();

        let mut bad = instance("x", "a", "1.0.0");
        bad.service = "Die Roller".into();
        let err = r.register(bad, t0).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert_eq!(err.field(), Some("name"));

        let err = r.register(instance("", "a", "1.0.0"), t0).unwrap_err();
        assert_eq!(err.field(), Some("id"));
        assert_eq!(
            err.message(),
            "an instance of `a` registered with an empty id; give every instance a unique id"
        );

        let mut bad = instance("x", "a", "1.0.0");
        bad.spec.name = "b".into();
        let err = r.register(bad, t0).unwrap_err();
        assert_eq!(err.field(), Some("spec.name"));
        assert_eq!(
            err.message(),
            "the instance registers as `a` but its spec describes `b`; register under the name the service was built with"
        );

        assert_eq!(r.instances().count(), 0);
        assert!(r.mains().is_empty());
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn leases_lapse_after_ttl_without_keepalive() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        r.register(instance("a1", "a", "1.0.0"), t0).unwrap();
        r.register(instance("a2", "a", "1.0.0"), t0).unwrap();
        let mut rx = r.subscribe();

        r.keepalive("a2", t0 + Duration::from_secs(6)).unwrap();
        assert!(r.expire(t0 + TTL - Duration::from_millis(1)).is_empty());
        assert_eq!(r.expire(t0 + TTL), ["a1"]);
        assert_eq!(
            drain(&mut rx),
            [WatchEvent::Down {
                id: "a1".into(),
                service: "a".into()
            }]
        );
        // a2 renewed at 6 s, so it lasts until 16 s.
        assert!(r.expire(t0 + Duration::from_secs(15)).is_empty());
        assert_eq!(r.expire(t0 + Duration::from_secs(16)), ["a2"]);
        assert_eq!(r.instances().count(), 0);
        // Main is a deployment decision and survives its instances.
        assert_eq!(r.mains()["a"], Version::new(1, 0, 0));

        // Registering again restarts the lease.
        r.register(instance("a1", "a", "1.0.0"), t0 + Duration::from_secs(20))
            .unwrap();
        assert!(r.expire(t0 + Duration::from_secs(29)).is_empty());
    }

    #[test]
    fn keepalive_of_an_unknown_id_asks_to_register_again() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        let err = r.keepalive("ghost", t0).unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(
            err.message(),
            "instance `ghost` is not registered with this host (its lease lapsed or the host restarted); register it again"
        );
        r.register(instance("a1", "a", "1.0.0"), t0).unwrap();
        r.expire(t0 + TTL);
        assert_eq!(
            r.keepalive("a1", t0 + TTL).unwrap_err().code(),
            Code::NotFound
        );
    }

    #[test]
    fn deregister_emits_down() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        r.register(instance("a1", "a", "1.0.0"), t0).unwrap();
        let mut rx = r.subscribe();
        assert_eq!(r.deregister("a1", t0).unwrap().id, "a1");
        assert_eq!(
            drain(&mut rx),
            [WatchEvent::Down {
                id: "a1".into(),
                service: "a".into()
            }]
        );
        assert!(r.deregister("a1", t0).is_none());
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn set_main_requires_a_running_version() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        r.register(instance("a1", "a", "1.0.0"), t0).unwrap();
        r.register(instance("a2", "a", "1.1.0"), t0).unwrap();
        let mut rx = r.subscribe();

        let err = r.set_main("nope", Version::new(1, 0, 0)).unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(
            err.message(),
            "no service `nope` is registered with the host; start it, or check the name (`weft ls` lists services)"
        );
        let err = r.set_main("a", Version::new(2, 0, 0)).unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(
            err.message(),
            "version 2.0.0 of `a` has no running instances (running: 1.0.0, 1.1.0); start it before making it main"
        );
        assert!(drain(&mut rx).is_empty());

        r.set_main("a", Version::new(1, 1, 0)).unwrap();
        assert_eq!(r.mains()["a"], Version::new(1, 1, 0));
        assert_eq!(
            drain(&mut rx),
            [WatchEvent::Main {
                service: "a".into(),
                version: Version::new(1, 1, 0)
            }]
        );
        // Already main: no event.
        r.set_main("a", Version::new(1, 1, 0)).unwrap();
        assert!(drain(&mut rx).is_empty());
    }

    #[test]
    fn restored_mains_are_not_overridden_by_registration() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        let mut rx = r.subscribe();
        r.restore_mains(BTreeMap::from([("a".to_owned(), Version::new(2, 0, 0))]));
        assert_eq!(drain(&mut rx).len(), 1);
        r.register(instance("a1", "a", "1.0.0"), t0).unwrap();
        assert_eq!(r.mains()["a"], Version::new(2, 0, 0));
        let events = drain(&mut rx);
        assert_eq!(events.len(), 1);
        assert!(up("a1")(&events[0]));
        // The summary shows the main even though it is not running.
        assert_eq!(
            r.services(),
            [ServiceSummary {
                name: "a".into(),
                main: Some(Version::new(2, 0, 0)),
                versions: vec![VersionSummary {
                    version: Version::new(1, 0, 0),
                    instances: 1
                }],
            }]
        );
    }

    #[test]
    fn restarted_hosts_have_new_epochs() {
        assert_ne!(Registry::new(TTL).epoch(), Registry::new(TTL).epoch());
    }

    #[test]
    fn snapshot_and_listings() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        for (id, service, version) in [
            ("b1", "b", "1.0.0"),
            ("a2", "a", "1.0.0"),
            ("a1", "a", "1.0.0"),
            ("a3", "a", "2.0.0"),
        ] {
            r.register(instance(id, service, version), t0).unwrap();
        }
        let WatchEvent::Snapshot {
            epoch,
            instances,
            mains,
        } = r.snapshot()
        else {
            panic!("not a snapshot")
        };
        assert_eq!(epoch, r.epoch());
        let ids: Vec<_> = instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["a1", "a2", "a3", "b1"]);
        assert_eq!(&mains, r.mains());
        assert_eq!(mains.len(), 2);

        let services = r.services();
        assert_eq!(services.len(), 2);
        assert_eq!(services[0].name, "a");
        assert_eq!(services[0].main, Some(Version::new(1, 0, 0)));
        assert_eq!(
            services[0].versions,
            [
                VersionSummary {
                    version: Version::new(1, 0, 0),
                    instances: 2
                },
                VersionSummary {
                    version: Version::new(2, 0, 0),
                    instances: 1
                },
            ]
        );
        assert_eq!(services[1].name, "b");
    }

    #[test]
    fn spec_follows_the_resolution_rules() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        let mut v1 = instance("a1", "a", "1.0.0");
        v1.spec.description = "one".into();
        let mut v2 = instance("a2", "a", "2.0.0");
        v2.spec.description = "two".into();
        r.register(v1, t0).unwrap();
        r.register(v2, t0).unwrap();
        let desc = |r: &Registry, sel: &str| {
            r.spec("a", &sel.parse().unwrap())
                .map(|(v, s)| format!("{v} {}", s.description))
                .map_err(|e| e.code())
        };
        assert_eq!(desc(&r, "main").as_deref(), Ok("1.0.0 one"));
        assert_eq!(desc(&r, "2.0.0").as_deref(), Ok("2.0.0 two"));
        assert_eq!(desc(&r, ">=1").as_deref(), Ok("2.0.0 two"));
        assert_eq!(desc(&r, "3.0.0"), Err(Code::NotFound));
        assert_eq!(
            r.spec("b", &VersionSelector::Main).map_err(|e| e.code()),
            Err(Code::NotFound)
        );
        r.deregister("a1", t0);
        // Main 1.0.0 is no longer running.
        assert_eq!(desc(&r, "main"), Err(Code::Unavailable));
    }

    #[test]
    fn the_index_resolves_what_the_registry_does() {
        let t0 = Instant::now();
        let mut r = Registry::new(TTL);
        let index = r.index();
        r.register(instance("a1", "a", "1.0.0"), t0).unwrap();
        r.register(instance("a2", "a", "2.0.0"), t0).unwrap();
        let ids = |sel: &str| {
            index
                .resolve("a", &sel.parse().unwrap())
                .map(|res| {
                    let ids: Vec<_> = res.instances().map(|i| i.id.clone()).collect();
                    (res.version().to_string(), ids)
                })
                .map_err(|e| e.code())
        };
        assert_eq!(ids("main"), Ok(("1.0.0".into(), vec!["a1".into()])));
        r.set_main("a", Version::new(2, 0, 0)).unwrap();
        assert_eq!(ids("main"), Ok(("2.0.0".into(), vec!["a2".into()])));
        r.expire(t0 + TTL);
        // Main is a deployment decision and outlives its instances.
        assert_eq!(ids("main"), Err(Code::Unavailable));
        assert_eq!(ids("1.0.0"), Err(Code::NotFound));
    }
}
