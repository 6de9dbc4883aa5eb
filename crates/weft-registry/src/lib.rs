//! The registry of weft, as pure logic with no IO and no clock.
//!
//! - [`Registry`] is the host's side: instances register with a lease and
//!   keep it alive, each service has a main version, and every change is
//!   broadcast as a [`WatchEvent`].
//! - [`Cache`] is every caller's side: it applies the watch stream and
//!   [`resolve`](Cache::resolve)s a service and version selector to the
//!   instances to call, cheaply, on every call. It keeps working while the
//!   host restarts.
//! - [`pick_two`] chooses one of those instances by load.
//!
//! Time is passed in as `Instant`s, so the host and callers decide when to
//! expire and prune, and tests are exact.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use weft_core::name::{Version, VersionSelector};
//! use weft_core::spec::ServiceSpec;
//! use weft_registry::{Cache, InstanceInfo, Registry};
//!
//! let now = Instant::now();
//! let mut registry = Registry::new(Duration::from_secs(10));
//! registry.register(
//!     InstanceInfo {
//!         id: "die_roller-1".into(),
//!         service: "die_roller".into(),
//!         version: Version::new(1, 0, 0),
//!         address: "tcp://127.0.0.1:4312".into(),
//!         spec: ServiceSpec {
//!             name: "die_roller".into(),
//!             description: "Rolls dice.".into(),
//!             entrypoints: vec![],
//!             event_handlers: vec![],
//!             publishes: vec![],
//!         },
//!         pid: Some(4242),
//!         started_ms: 0,
//!         host: None,
//!     },
//!     now,
//! )?;
//!
//! let cache = Cache::new();
//! cache.apply(registry.snapshot(), now);
//! let resolved = cache.resolve("die_roller", &VersionSelector::Main)?;
//! assert_eq!(resolved.version(), &Version::new(1, 0, 0));
//! let instance = resolved.pick(|_| 0);
//! assert_eq!(instance.address, "tcp://127.0.0.1:4312");
//! # Ok::<(), weft_core::Error>(())
//! ```

mod balance;
mod cache;
mod registry;
mod select;
mod types;

pub use balance::pick_two;
pub use cache::{Cache, Candidate, DEFAULT_GRACE, Resolved};
pub use registry::{Registry, WATCH_CAPACITY};
pub use types::{
    InstanceInfo, RegisterReply, RegisterRequest, ServiceSummary, VersionSummary, WatchEvent,
};

#[cfg(test)]
mod test_support {
    use weft_core::spec::ServiceSpec;

    use crate::InstanceInfo;

    pub(crate) fn instance(id: &str, service: &str, version: &str) -> InstanceInfo {
        InstanceInfo {
            id: id.into(),
            service: service.into(),
            version: version.parse().unwrap(),
            address: format!("tcp://127.0.0.1:{}", 4000 + id.len()),
            spec: ServiceSpec {
                name: service.into(),
                description: String::new(),
                entrypoints: vec![],
                event_handlers: vec![],
                publishes: vec![],
            },
            pid: None,
            started_ms: 0,
            host: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::sync::broadcast::error::TryRecvError;
    use weft_core::name::{Version, VersionSelector};

    use super::*;
    use crate::test_support::instance;

    /// What a host does for one watcher: snapshot, then events; a fresh
    /// snapshot when the watcher lagged.
    fn forward(
        registry: &Registry,
        rx: &mut tokio::sync::broadcast::Receiver<WatchEvent>,
        cache: &Cache,
        now: Instant,
    ) -> bool {
        let mut resynced = false;
        loop {
            match rx.try_recv() {
                Ok(event) => cache.apply(event, now),
                Err(TryRecvError::Lagged(_)) => {
                    cache.apply(registry.snapshot(), now);
                    resynced = true;
                }
                Err(TryRecvError::Empty) => return resynced,
                Err(TryRecvError::Closed) => panic!("closed"),
            }
        }
    }

    #[test]
    fn a_cache_follows_the_registry() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut registry = Registry::new(ttl);
        registry.register(instance("a1", "a", "1.0.0"), t0).unwrap();
        let mut rx = registry.subscribe();
        let cache = Cache::new();
        cache.apply(registry.snapshot(), t0);

        registry.register(instance("a2", "a", "2.0.0"), t0).unwrap();
        registry.set_main("a", Version::new(2, 0, 0)).unwrap();
        assert!(!forward(&registry, &mut rx, &cache, t0));
        let resolved = cache.resolve("a", &VersionSelector::Main).unwrap();
        assert_eq!(resolved.candidates()[0].info.id, "a2");

        // a2 stops renewing its lease; a1 keeps it.
        registry.keepalive("a1", t0 + ttl / 2).unwrap();
        assert_eq!(registry.expire(t0 + ttl), ["a2"]);
        assert!(!forward(&registry, &mut rx, &cache, t0 + ttl));
        let err = cache.resolve("a", &VersionSelector::Main).unwrap_err();
        assert_eq!(err.code(), weft_core::Code::Unavailable);
        assert_eq!(cache.len(), 1);

        // A watcher that lags past the channel's capacity resyncs.
        for i in 0..=WATCH_CAPACITY {
            registry
                .register(instance(&format!("b{i}"), "b", "1.0.0"), t0 + ttl)
                .unwrap();
        }
        assert!(forward(&registry, &mut rx, &cache, t0 + ttl));
        assert_eq!(cache.len(), registry.instances().count());
        let resolved = cache.resolve("b", &VersionSelector::Main).unwrap();
        assert_eq!(resolved.instances().len(), WATCH_CAPACITY + 1);
    }
}
