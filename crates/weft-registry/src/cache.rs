//! The caller side: a local copy of the registry, fed by the watch stream.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use weft_core::Address;
use weft_core::Error;
use weft_core::name::{Version, VersionSelector};
use weft_core::spec::ServiceSpec;

use crate::balance::pick_two;
use crate::select;
use crate::types::{InstanceInfo, WatchEvent};

/// How long instances and main versions missing from a restarted host's
/// first snapshot are kept, unless [`Cache::with_grace`] says otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// Every caller's local copy of the registry, kept current by
/// [`apply`](Cache::apply)ing the host's watch stream, and read on every call
/// by [`resolve`](Cache::resolve).
///
/// Calls keep flowing while the host is away: the cache keeps what it last
/// knew. When the host restarts (its snapshot carries a new epoch), instances
/// are still re-registering, so the ones missing from the new snapshot are
/// kept as *stale* for a grace period and stay callable; [`prune`](Cache::prune)
/// drops them once it ends unless they came back with an `Up` event. A
/// service's main version missing from the new snapshot is kept the same way.
///
/// Share it behind an `Arc`; all methods take `&self`.
///
/// ```
/// use std::time::{Duration, Instant};
/// use weft_core::name::{Version, VersionSelector};
/// use weft_registry::{Cache, WatchEvent};
///
/// let t0 = Instant::now();
/// let cache = Cache::with_grace(Duration::from_secs(5));
/// cache.apply(WatchEvent::Snapshot { epoch: "a".into(), instances: vec![], mains: Default::default() }, t0);
/// cache.apply(WatchEvent::Main { service: "die_roller".into(), version: Version::new(1, 0, 0) }, t0);
/// let err = cache.resolve("die_roller", &VersionSelector::Main).unwrap_err();
/// assert_eq!(err.code(), weft_core::Code::Unavailable);
/// ```
#[derive(Debug)]
pub struct Cache {
    grace: Duration,
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    /// `None` until the first snapshot.
    epoch: Option<String>,
    services: HashMap<String, ServiceState>,
    /// Instance id → its service, for removals by id alone.
    owners: HashMap<String, String>,
}

#[derive(Debug, Default)]
struct ServiceState {
    instances: BTreeMap<String, Slot>,
    main: Option<Kept<Version>>,
    /// Derived from `instances` on every change, so that `resolve` only
    /// clones an `Arc`. Only versions with instances appear.
    versions: BTreeMap<Version, Arc<[Candidate]>>,
}

#[derive(Debug)]
struct Slot {
    info: Arc<InstanceInfo>,
    /// `info.address`, parsed once here rather than on every call.
    address: Option<Address>,
    /// Set for instances missing from a restarted host's snapshot.
    stale_until: Option<Instant>,
}

#[derive(Debug)]
struct Kept<T> {
    value: T,
    stale_until: Option<Instant>,
}

impl<T> Kept<T> {
    fn current(value: T) -> Self {
        Kept {
            value,
            stale_until: None,
        }
    }
}

/// One instance a call may go to, with its address parsed when the cache
/// learned of it, so that routing a call parses nothing.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The instance as it registered.
    pub info: Arc<InstanceInfo>,
    /// `info.address` parsed; `None` when it does not parse (the instance
    /// cannot be called).
    pub address: Option<Address>,
}

/// The outcome of [`Cache::resolve`]: the version chosen and its instances.
///
/// Cloning it is cheap: the instance list is shared with the cache.
#[derive(Debug, Clone)]
pub struct Resolved {
    version: Version,
    candidates: Arc<[Candidate]>,
}

impl Resolved {
    /// The version the selector resolved to.
    pub fn version(&self) -> &Version {
        &self.version
    }

    /// The candidate instances, with their parsed addresses; never empty.
    pub fn candidates(&self) -> &[Candidate] {
        &self.candidates
    }

    /// The candidate instances; never empty.
    pub fn instances(&self) -> impl ExactSizeIterator<Item = &Arc<InstanceInfo>> {
        self.candidates.iter().map(|c| &c.info)
    }

    /// One instance, chosen by [`pick_two`] on `load` (e.g. outstanding calls).
    pub fn pick(&self, load: impl Fn(&InstanceInfo) -> usize) -> &Arc<InstanceInfo> {
        &self.pick_candidate(|c| load(&c.info)).info
    }

    /// One candidate, chosen by [`pick_two`] on `load`.
    pub fn pick_candidate(&self, load: impl Fn(&Candidate) -> usize) -> &Candidate {
        pick_two(&self.candidates, load).unwrap_or(&self.candidates[0])
    }
}

impl Default for Cache {
    fn default() -> Self {
        Self::new()
    }
}

impl Cache {
    /// An empty cache with the [`DEFAULT_GRACE`] period (10 s).
    pub fn new() -> Self {
        Self::with_grace(DEFAULT_GRACE)
    }

    /// An empty cache that keeps instances and mains missing from a restarted
    /// host's snapshot for `grace`.
    pub fn with_grace(grace: Duration) -> Self {
        Cache {
            grace,
            state: RwLock::new(State::default()),
        }
    }

    /// Applies one event of the watch stream at `now`.
    ///
    /// - The first snapshot is adopted as is.
    /// - A snapshot with the same epoch as before (a resync) replaces the
    ///   state: instances and mains it lacks are dropped, except stale ones
    ///   still in their grace period.
    /// - A snapshot with a new epoch (the host restarted) merges: its
    ///   instances and mains are current; instances it lacks, and mains of
    ///   services it has no main for, are kept as stale until `now + grace`.
    /// - `Up` adds or replaces an instance (a stale one becomes current),
    ///   `Down` removes one, `Main` sets a service's main version.
    pub fn apply(&self, event: WatchEvent, now: Instant) {
        match event {
            WatchEvent::Snapshot {
                epoch,
                instances,
                mains,
            } => self
                .state
                .write()
                .apply_snapshot(epoch, instances, mains, now + self.grace),
            change => self.apply_change(change),
        }
    }

    /// Applies an `Up`, `Down` or `Main` event; these need no clock. A
    /// snapshot is ignored here (see [`apply`](Self::apply)).
    pub(crate) fn apply_change(&self, event: WatchEvent) {
        let mut state = self.state.write();
        match event {
            WatchEvent::Snapshot { .. } => {}
            WatchEvent::Up { instance } => state.insert(instance),
            WatchEvent::Down { id, .. } => {
                state.remove(&id);
            }
            WatchEvent::Main { service, version } => {
                state.services.entry(service).or_default().main = Some(Kept::current(version));
            }
        }
    }

    /// Drops stale instances and mains whose grace period ended by `now`;
    /// returns the ids of the instances dropped. Call it periodically.
    pub fn prune(&self, now: Instant) -> Vec<String> {
        let mut state = self.state.write();
        let state = &mut *state;
        let lapsed = |kept: Option<Instant>| kept.is_some_and(|until| until <= now);
        let mut dropped = Vec::new();
        for svc in state.services.values_mut() {
            let before = dropped.len();
            svc.instances.retain(|id, slot| {
                let keep = !lapsed(slot.stale_until);
                if !keep {
                    dropped.push(id.clone());
                }
                keep
            });
            if dropped.len() != before {
                svc.rebuild();
            }
            if svc.main.as_ref().is_some_and(|m| lapsed(m.stale_until)) {
                svc.main = None;
            }
        }
        for id in &dropped {
            state.owners.remove(id);
        }
        state.services.retain(|_, svc| !svc.is_empty());
        dropped
    }

    /// The version of `service` that `selector` asks for, and its instances.
    ///
    /// - [`VersionSelector::Main`]: the main version; when the service has
    ///   no main version (yet), the highest running version.
    /// - [`VersionSelector::Exact`]: that version.
    /// - [`VersionSelector::Req`]: the highest running version that matches.
    ///
    /// Fails with `NotFound` when the service is unknown or no running
    /// version matches, and with `Unavailable` when the main version has no
    /// running instances; the messages name the running versions.
    pub fn resolve(&self, service: &str, selector: &VersionSelector) -> Result<Resolved, Error> {
        let state = self.state.read();
        let svc = state
            .services
            .get(service)
            .ok_or_else(|| select::unknown_service(service))?;
        let main = svc.main.as_ref().map(|m| &m.value);
        let (version, instances) = select::choose(service, main, &svc.versions, selector)?;
        Ok(Resolved {
            version: version.clone(),
            candidates: instances.clone(),
        })
    }

    /// Drops instance `id` at once, e.g. because connecting to it was
    /// refused; it comes back with its next `Up` event or snapshot. Returns
    /// whether it was known.
    pub fn remove_instance(&self, id: &str) -> bool {
        self.state.write().remove(id)
    }

    /// The names of the services known (running, or with a main version), sorted.
    pub fn services(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state.read().services.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// The spec of the version of `service` that `selector` resolves to.
    pub fn spec(&self, service: &str, selector: &VersionSelector) -> Option<ServiceSpec> {
        let resolved = self.resolve(service, selector).ok()?;
        Some(resolved.candidates[0].info.spec.clone())
    }

    /// Whether `entrypoint` is idempotent in the spec of the version of
    /// `service` that `selector` resolves to (false when unknown).
    pub fn idempotent(&self, service: &str, selector: &VersionSelector, entrypoint: &str) -> bool {
        self.resolve(service, selector).is_ok_and(|r| {
            r.candidates[0]
                .info
                .spec
                .entrypoint(entrypoint)
                .is_some_and(|e| e.idempotent)
        })
    }

    /// The epoch of the last snapshot applied, if any.
    pub fn epoch(&self) -> Option<String> {
        self.state.read().epoch.clone()
    }

    /// How many instances are known, stale ones included.
    pub fn len(&self) -> usize {
        self.state.read().owners.len()
    }

    /// Whether no instance is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl State {
    fn apply_snapshot(
        &mut self,
        epoch: String,
        instances: Vec<InstanceInfo>,
        mains: BTreeMap<String, Version>,
        stale_until: Instant,
    ) {
        let restarted = self.epoch.as_ref().is_some_and(|old| *old != epoch);
        let present: HashSet<&str> = instances.iter().map(|i| i.id.as_str()).collect();
        for (name, svc) in &mut self.services {
            svc.instances.retain(|id, slot| {
                if present.contains(id.as_str()) || slot.stale_until.is_some() {
                    // Replaced below, or already counting down its grace.
                    return true;
                }
                if restarted {
                    slot.stale_until = Some(stale_until);
                }
                restarted
            });
            if let Some(main) = &mut svc.main
                && !mains.contains_key(name)
                && main.stale_until.is_none()
            {
                if restarted {
                    main.stale_until = Some(stale_until);
                } else {
                    svc.main = None;
                }
            }
        }
        self.owners.retain(|id, service| {
            self.services
                .get(service)
                .is_some_and(|svc| svc.instances.contains_key(id))
        });
        for info in instances {
            self.insert_only(info);
        }
        for (service, version) in mains {
            self.services.entry(service).or_default().main = Some(Kept::current(version));
        }
        for svc in self.services.values_mut() {
            svc.rebuild();
        }
        self.services.retain(|_, svc| !svc.is_empty());
        self.epoch = Some(epoch);
    }

    fn insert(&mut self, info: InstanceInfo) {
        let service = info.service.clone();
        self.insert_only(info);
        if let Some(svc) = self.services.get_mut(&service) {
            svc.rebuild();
        }
    }

    /// Inserts or replaces an instance as current, without rebuilding its
    /// service's versions (the old service's are rebuilt if it moved).
    fn insert_only(&mut self, info: InstanceInfo) {
        if let Some(old) = self.owners.get(&info.id)
            && *old != info.service
        {
            self.remove(&info.id);
        }
        self.owners.insert(info.id.clone(), info.service.clone());
        self.services
            .entry(info.service.clone())
            .or_default()
            .instances
            .insert(
                info.id.clone(),
                Slot {
                    address: info.address.parse().ok(),
                    info: Arc::new(info),
                    stale_until: None,
                },
            );
    }

    fn remove(&mut self, id: &str) -> bool {
        let Some(service) = self.owners.remove(id) else {
            return false;
        };
        if let Some(svc) = self.services.get_mut(&service) {
            svc.instances.remove(id);
            svc.rebuild();
            if svc.is_empty() {
                self.services.remove(&service);
            }
        }
        true
    }
}

impl ServiceState {
    fn rebuild(&mut self) {
        let mut versions: BTreeMap<Version, Vec<Candidate>> = BTreeMap::new();
        for slot in self.instances.values() {
            versions
                .entry(slot.info.version.clone())
                .or_default()
                .push(Candidate {
                    info: slot.info.clone(),
                    address: slot.address.clone(),
                });
        }
        self.versions = versions
            .into_iter()
            .map(|(v, instances)| (v, Arc::from(instances)))
            .collect();
    }

    /// Nothing left to say about the service: callers then learn it is unknown.
    fn is_empty(&self) -> bool {
        self.instances.is_empty() && self.main.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::instance;
    use weft_core::Code;

    const GRACE: Duration = Duration::from_secs(10);

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn sel(s: &str) -> VersionSelector {
        s.parse().unwrap()
    }

    fn snapshot(
        epoch: &str,
        instances: &[(&str, &str, &str)],
        mains: &[(&str, &str)],
    ) -> WatchEvent {
        WatchEvent::Snapshot {
            epoch: epoch.into(),
            instances: instances
                .iter()
                .map(|(id, s, ver)| instance(id, s, ver))
                .collect(),
            mains: mains
                .iter()
                .map(|(s, ver)| (s.to_string(), v(ver)))
                .collect(),
        }
    }

    /// The ids `resolve` offers, sorted, or the error message.
    fn ids(cache: &Cache, service: &str, selector: &str) -> Result<(String, Vec<String>), String> {
        let r = cache
            .resolve(service, &sel(selector))
            .map_err(|e| e.message().to_owned())?;
        assert!(r.instances().len() > 0);
        let mut ids: Vec<_> = r.instances().map(|i| i.id.clone()).collect();
        ids.sort();
        Ok((r.version().to_string(), ids))
    }

    fn ok(version: &str, ids: &[&str]) -> Result<(String, Vec<String>), String> {
        Ok((version.into(), ids.iter().map(|s| s.to_string()).collect()))
    }

    fn cache_with(instances: &[(&str, &str, &str)], mains: &[(&str, &str)]) -> Cache {
        let cache = Cache::with_grace(GRACE);
        cache.apply(snapshot("e1", instances, mains), Instant::now());
        cache
    }

    #[test]
    fn first_snapshot_is_adopted_and_main_resolves() {
        let cache = Cache::new();
        assert!(cache.is_empty());
        assert_eq!(cache.epoch(), None);
        cache.apply(
            snapshot(
                "e1",
                &[
                    ("a1", "a", "1.0.0"),
                    ("a2", "a", "1.0.0"),
                    ("a3", "a", "2.0.0"),
                ],
                &[("a", "1.0.0")],
            ),
            Instant::now(),
        );
        assert_eq!(cache.epoch().as_deref(), Some("e1"));
        assert_eq!(cache.len(), 3);
        assert_eq!(ids(&cache, "a", "main"), ok("1.0.0", &["a1", "a2"]));
    }

    #[test]
    fn selectors() {
        let cache = cache_with(
            &[
                ("a1", "a", "1.0.0"),
                ("a2", "a", "1.2.0"),
                ("a3", "a", "1.3.0"),
                ("a4", "a", "2.0.0"),
            ],
            &[("a", "1.2.0")],
        );
        assert_eq!(ids(&cache, "a", "main"), ok("1.2.0", &["a2"]));
        assert_eq!(ids(&cache, "a", "1.0.0"), ok("1.0.0", &["a1"]));
        // The highest matching version, not main.
        assert_eq!(ids(&cache, "a", "^1.1"), ok("1.3.0", &["a3"]));
        assert_eq!(ids(&cache, "a", "*"), ok("2.0.0", &["a4"]));
        assert_eq!(ids(&cache, "a", "<1.3"), ok("1.2.0", &["a2"]));
    }

    #[test]
    fn without_a_main_the_highest_version_is_used() {
        let cache = cache_with(
            &[
                ("a1", "a", "1.0.0"),
                ("a2", "a", "1.10.0"),
                ("a3", "a", "1.9.0"),
            ],
            &[],
        );
        assert_eq!(ids(&cache, "a", "main"), ok("1.10.0", &["a2"]));
    }

    #[test]
    fn unknown_service() {
        let cache = cache_with(&[("a1", "a", "1.0.0")], &[]);
        for selector in ["main", "1.0.0", "^1"] {
            let err = cache.resolve("b", &sel(selector)).unwrap_err();
            assert_eq!(err.code(), Code::NotFound);
            assert_eq!(
                err.message(),
                "no service `b` is registered with the host; start it, or check the name (`weft ls` lists services)"
            );
        }
    }

    #[test]
    fn missing_versions_name_the_running_ones() {
        let cache = cache_with(
            &[("a1", "a", "1.0.0"), ("a2", "a", "1.1.0")],
            &[("a", "1.0.0")],
        );
        let err = cache.resolve("a", &sel("2.0.0")).unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(
            err.message(),
            "version 2.0.0 of `a` is not running; running versions: 1.0.0, 1.1.0; call one of those, or start the version you want (`weft ls` lists versions)"
        );
        let err = cache.resolve("a", &sel("^2")).unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(
            err.message(),
            "no running version of `a` matches `^2`; running versions: 1.0.0, 1.1.0; call one of those, or start the version you want (`weft ls` lists versions)"
        );

        // Only a main is known: nothing runs at all.
        let cache = cache_with(&[], &[("a", "1.0.0")]);
        let err = cache.resolve("a", &sel("1.0.0")).unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        assert_eq!(
            err.message(),
            "version 1.0.0 of `a` is not running, and no other version of it is running; start or deploy it"
        );
    }

    #[test]
    fn a_main_without_instances_is_unavailable() {
        let cache = cache_with(
            &[("a1", "a", "1.1.0"), ("a2", "a", "2.0.0")],
            &[("a", "1.0.0")],
        );
        let err = cache.resolve("a", &VersionSelector::Main).unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(
            err.message(),
            "the main version 1.0.0 of `a` has no running instances, but other versions are running (1.1.0, 2.0.0); start 1.0.0, call a running version by number, or make one main (`weft main a <version>`)"
        );

        let cache = cache_with(&[("a1", "a", "1.0.0")], &[("a", "1.0.0")]);
        cache.apply(
            WatchEvent::Down {
                id: "a1".into(),
                service: "a".into(),
            },
            Instant::now(),
        );
        let err = cache.resolve("a", &VersionSelector::Main).unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert_eq!(
            err.message(),
            "the main version 1.0.0 of `a` has no running instances, and no other version is running; start it, or check its status with `weft ls`"
        );
        assert_eq!(cache.services(), ["a"]);
    }

    #[test]
    fn up_down_and_main_events() {
        let t0 = Instant::now();
        let cache = cache_with(&[("a1", "a", "1.0.0")], &[("a", "1.0.0")]);
        cache.apply(
            WatchEvent::Up {
                instance: instance("a2", "a", "1.0.0"),
            },
            t0,
        );
        cache.apply(
            WatchEvent::Up {
                instance: instance("a3", "a", "2.0.0"),
            },
            t0,
        );
        assert_eq!(ids(&cache, "a", "main"), ok("1.0.0", &["a1", "a2"]));
        cache.apply(
            WatchEvent::Main {
                service: "a".into(),
                version: v("2.0.0"),
            },
            t0,
        );
        assert_eq!(ids(&cache, "a", "main"), ok("2.0.0", &["a3"]));
        cache.apply(
            WatchEvent::Down {
                id: "a1".into(),
                service: "a".into(),
            },
            t0,
        );
        assert_eq!(ids(&cache, "a", "1.0.0"), ok("1.0.0", &["a2"]));
        // Unknown ids are ignored.
        cache.apply(
            WatchEvent::Down {
                id: "zz".into(),
                service: "a".into(),
            },
            t0,
        );
        assert_eq!(cache.len(), 2);

        // Up with a known id replaces it, here with another version.
        cache.apply(
            WatchEvent::Up {
                instance: instance("a2", "a", "2.0.0"),
            },
            t0,
        );
        assert_eq!(ids(&cache, "a", "main"), ok("2.0.0", &["a2", "a3"]));
        assert!(cache.resolve("a", &sel("1.0.0")).is_err());
        // ... or with another service.
        cache.apply(
            WatchEvent::Up {
                instance: instance("a2", "b", "1.0.0"),
            },
            t0,
        );
        assert_eq!(ids(&cache, "a", "main"), ok("2.0.0", &["a3"]));
        assert_eq!(ids(&cache, "b", "main"), ok("1.0.0", &["a2"]));
        assert_eq!(cache.len(), 2);

        // The last instance of a service without a main: the service is gone.
        cache.apply(
            WatchEvent::Down {
                id: "a2".into(),
                service: "b".into(),
            },
            t0,
        );
        assert_eq!(cache.services(), ["a"]);
    }

    #[test]
    fn addresses_are_parsed_once_when_learned() {
        let cache = cache_with(&[("a1", "a", "1.0.0")], &[]);
        let mut bad = instance("a2", "a", "1.0.0");
        bad.address = "ftp://nowhere".into();
        cache.apply(WatchEvent::Up { instance: bad }, Instant::now());
        let r = cache.resolve("a", &VersionSelector::Main).unwrap();
        let by_id = |id: &str| {
            r.candidates()
                .iter()
                .find(|c| c.info.id == id)
                .unwrap()
                .address
                .clone()
        };
        assert_eq!(by_id("a1"), Some("tcp://127.0.0.1:4002".parse().unwrap()));
        assert_eq!(by_id("a2"), None);
        // The picker never prefers an instance it cannot call while another is idle.
        for _ in 0..50 {
            let c = r.pick_candidate(|c| if c.address.is_some() { 0 } else { usize::MAX });
            assert_eq!(c.info.id, "a1");
        }
    }

    #[test]
    fn resolve_shares_the_precomputed_list() {
        let cache = cache_with(&[("a1", "a", "1.0.0"), ("a2", "a", "1.0.0")], &[]);
        let first = cache.resolve("a", &VersionSelector::Main).unwrap();
        let second = cache.resolve("a", &sel("1.0.0")).unwrap();
        assert!(Arc::ptr_eq(&first.candidates, &second.candidates));
        let picked = first.pick(|i| usize::from(i.id == "a1"));
        assert_eq!(picked.id, "a2");
    }

    #[test]
    fn remove_instance_drops_it_until_it_comes_up_again() {
        let t0 = Instant::now();
        let cache = cache_with(&[("a1", "a", "1.0.0"), ("a2", "a", "1.0.0")], &[]);
        assert!(cache.remove_instance("a1"));
        assert!(!cache.remove_instance("a1"));
        assert_eq!(ids(&cache, "a", "main"), ok("1.0.0", &["a2"]));
        assert!(cache.remove_instance("a2"));
        assert!(
            cache
                .resolve("a", &VersionSelector::Main)
                .unwrap_err()
                .message()
                .starts_with("no service `a`")
        );
        cache.apply(
            WatchEvent::Up {
                instance: instance("a1", "a", "1.0.0"),
            },
            t0,
        );
        assert_eq!(ids(&cache, "a", "main"), ok("1.0.0", &["a1"]));
        // A resync brings the other back too.
        cache.apply(
            snapshot("e1", &[("a1", "a", "1.0.0"), ("a2", "a", "1.0.0")], &[]),
            t0,
        );
        assert_eq!(ids(&cache, "a", "main"), ok("1.0.0", &["a1", "a2"]));
    }

    #[test]
    fn same_epoch_snapshot_replaces_the_state() {
        let t0 = Instant::now();
        let cache = cache_with(
            &[
                ("a1", "a", "1.0.0"),
                ("a2", "a", "1.0.0"),
                ("b1", "b", "1.0.0"),
            ],
            &[("a", "1.0.0"), ("b", "1.0.0")],
        );
        cache.apply(
            snapshot(
                "e1",
                &[("a2", "a", "1.0.0"), ("c1", "c", "1.0.0")],
                &[("c", "1.0.0")],
            ),
            t0,
        );
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.services(), ["a", "c"]);
        // `a` lost its main: the highest version is used.
        assert_eq!(ids(&cache, "a", "main"), ok("1.0.0", &["a2"]));
        assert!(cache.resolve("b", &VersionSelector::Main).is_err());
        // Nothing was kept for a grace period.
        assert!(cache.prune(t0 + GRACE * 10).is_empty());
    }

    #[test]
    fn new_epoch_keeps_missing_instances_for_the_grace_period() {
        let t0 = Instant::now();
        let cache = Cache::with_grace(GRACE);
        cache.apply(
            snapshot(
                "e1",
                &[
                    ("a1", "a", "1.0.0"),
                    ("a2", "a", "1.0.0"),
                    ("b1", "b", "1.0.0"),
                ],
                &[("a", "1.0.0"), ("b", "1.0.0")],
            ),
            t0,
        );
        // The host restarted at t1; only a1 has re-registered so far.
        let t1 = t0 + Duration::from_secs(60);
        cache.apply(
            snapshot("e2", &[("a1", "a", "1.0.0")], &[("a", "1.0.0")]),
            t1,
        );
        assert_eq!(cache.epoch().as_deref(), Some("e2"));
        // Stale instances stay callable during the grace period.
        assert_eq!(ids(&cache, "a", "main"), ok("1.0.0", &["a1", "a2"]));
        assert_eq!(ids(&cache, "b", "main"), ok("1.0.0", &["b1"]));
        assert!(
            cache
                .prune(t1 + GRACE - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(cache.len(), 3);

        // b1 comes back before the grace ends; a2 does not.
        cache.apply(
            WatchEvent::Up {
                instance: instance("b1", "b", "1.0.0"),
            },
            t1 + Duration::from_secs(3),
        );
        assert_eq!(cache.prune(t1 + GRACE), ["a2"]);
        assert_eq!(ids(&cache, "a", "main"), ok("1.0.0", &["a1"]));
        // b's main was not in the new snapshot and no Main event came: it
        // was dropped with the grace; b still resolves to its highest version.
        assert_eq!(ids(&cache, "b", "main"), ok("1.0.0", &["b1"]));
        assert!(cache.prune(t1 + GRACE * 10).is_empty());
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn new_epoch_mains_override_and_missing_mains_last_the_grace() {
        let t0 = Instant::now();
        let cache = cache_with(
            &[
                ("a1", "a", "1.0.0"),
                ("a2", "a", "2.0.0"),
                ("b1", "b", "1.0.0"),
                ("b2", "b", "2.0.0"),
            ],
            &[("a", "1.0.0"), ("b", "1.0.0")],
        );
        cache.apply(
            snapshot(
                "e2",
                &[
                    ("a1", "a", "1.0.0"),
                    ("a2", "a", "2.0.0"),
                    ("b1", "b", "1.0.0"),
                    ("b2", "b", "2.0.0"),
                ],
                &[("a", "2.0.0")],
            ),
            t0,
        );
        assert_eq!(ids(&cache, "a", "main"), ok("2.0.0", &["a2"]));
        // b has no main in the new snapshot: the old one holds until the grace ends...
        assert_eq!(ids(&cache, "b", "main"), ok("1.0.0", &["b1"]));
        // ... and a resync with the same epoch does not cut it short.
        cache.apply(
            snapshot(
                "e2",
                &[
                    ("a1", "a", "1.0.0"),
                    ("a2", "a", "2.0.0"),
                    ("b1", "b", "1.0.0"),
                    ("b2", "b", "2.0.0"),
                ],
                &[("a", "2.0.0")],
            ),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(ids(&cache, "b", "main"), ok("1.0.0", &["b1"]));
        assert!(cache.prune(t0 + GRACE).is_empty());
        // Without a main, the highest version.
        assert_eq!(ids(&cache, "b", "main"), ok("2.0.0", &["b2"]));

        // A Main event during the grace makes a kept main current again.
        cache.apply(snapshot("e3", &[("a2", "a", "2.0.0")], &[]), t0 + GRACE);
        cache.apply(
            WatchEvent::Main {
                service: "a".into(),
                version: v("2.0.0"),
            },
            t0 + GRACE,
        );
        cache.prune(t0 + GRACE * 3);
        assert_eq!(ids(&cache, "a", "main"), ok("2.0.0", &["a2"]));
        // b was missing from e3 entirely; after the grace it is gone.
        assert!(cache.resolve("b", &VersionSelector::Main).is_err());
        assert_eq!(cache.services(), ["a"]);
    }

    #[test]
    fn stale_instances_keep_their_first_deadline() {
        let t0 = Instant::now();
        let cache = cache_with(&[("a1", "a", "1.0.0"), ("a2", "a", "1.0.0")], &[]);
        cache.apply(snapshot("e2", &[("a1", "a", "1.0.0")], &[]), t0);
        // Another restart halfway through the grace does not extend it,
        // and a resync of the same epoch does not drop it early.
        cache.apply(snapshot("e3", &[("a1", "a", "1.0.0")], &[]), t0 + GRACE / 2);
        cache.apply(snapshot("e3", &[("a1", "a", "1.0.0")], &[]), t0 + GRACE / 2);
        assert_eq!(ids(&cache, "a", "main"), ok("1.0.0", &["a1", "a2"]));
        assert_eq!(cache.prune(t0 + GRACE), ["a2"]);
        // Down removes a stale instance at once.
        cache.apply(snapshot("e4", &[], &[]), t0 + GRACE);
        cache.apply(
            WatchEvent::Down {
                id: "a1".into(),
                service: "a".into(),
            },
            t0 + GRACE,
        );
        assert!(cache.is_empty());
    }

    #[test]
    fn services_and_specs() {
        let cache = cache_with(
            &[("b1", "b", "1.0.0"), ("a1", "a", "1.0.0")],
            &[("c", "1.0.0")],
        );
        assert_eq!(cache.services(), ["a", "b", "c"]);
        let spec = cache.spec("a", &VersionSelector::Main).unwrap();
        assert_eq!(spec.name, "a");
        assert!(cache.spec("a", &sel("2.0.0")).is_none());
        assert!(cache.spec("c", &VersionSelector::Main).is_none());
        assert!(cache.spec("zz", &VersionSelector::Main).is_none());
    }
}
