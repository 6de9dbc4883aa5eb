//! The event log: durable topics, consumer groups, dead letters.
//!
//! Layout in the data dir:
//!
//! ```text
//! events/topics/<topic>/<first id>.seg   append-only segments (see `segment`)
//! events/state.redb                      consumer groups and dead letters
//! ```
//!
//! A publish is answered once its record is fdatasync'd: a writer thread
//! takes every publish waiting and writes them with one write and one sync
//! per topic (group commit). Each consumer group (service, handler, topic;
//! for broadcast also the instance) runs as a task of its own that hands
//! events to the group's subscribe streams, and stores its position
//! (every id up to it is acknowledged or dead-lettered, plus the ids above
//! it that are done) before it answers an acknowledgement, so a restart
//! delivers again only what was not acknowledged.
//!
//! Where a group starts: a new `pool` or `ordered` group starts at the
//! oldest retained event, so nothing published before its service first
//! subscribed is missed; a new `broadcast` group (one per instance) starts
//! at the end of the log when the instance subscribes: an instance gets
//! what is published while it runs.

pub(crate) mod api;
mod group;
mod segment;
mod store;
mod topic;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::stream::{BoxStream, StreamExt};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use weft::host_api::{Ack, Delivery, DeliveryMode, PublishArgs, Published, Subscription};
use weft_core::Error;

pub(crate) use group::DeadLetter;
use group::{Core, GroupRecord, Sub, group_name};
use store::{Op, StateWriter, dead_key};
use topic::{Enqueued, Topic, Writer};

use crate::state::now_ms;

/// How the event log keeps events: retention and deduplication.
///
/// ```
/// use std::time::Duration;
/// use weft_host::EventsConfig;
///
/// let config = EventsConfig::default()
///     .max_age(Duration::from_secs(7 * 24 * 3600))
///     .max_bytes(1 << 30);
/// assert_eq!(config.dedup_window, Duration::from_secs(600));
/// ```
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Delete a topic's segments whose newest event is older than this.
    pub max_age: Option<Duration>,
    /// Delete a topic's oldest segments while it holds more bytes than this.
    pub max_bytes: Option<u64>,
    /// A publish with an idempotency key seen within this window is a
    /// duplicate.
    pub dedup_window: Duration,
    /// A segment file is closed and a new one started at about this size;
    /// retention deletes whole segments.
    pub segment_bytes: u64,
    /// A broadcast group (one per instance) with no subscriber for this
    /// long is removed: its instance left. An instance that comes back
    /// later starts from the newest event, as a new instance does.
    pub broadcast_idle: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            max_age: None,
            max_bytes: None,
            dedup_window: Duration::from_secs(600),
            segment_bytes: 64 * 1024 * 1024,
            broadcast_idle: Duration::from_secs(600),
        }
    }
}

impl EventsConfig {
    /// Sets the longest time events are kept.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Sets the most bytes a topic keeps.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Sets the idempotency window.
    pub fn dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// Sets the segment size.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1024);
        self
    }

    /// Sets how long a broadcast group waits for its instance to come back.
    pub fn broadcast_idle(mut self, idle: Duration) -> Self {
        self.broadcast_idle = idle;
        self
    }
}

/// How long a consumer group's acknowledged position may wait to be stored.
const STORE_POSITION_EVERY: Duration = Duration::from_millis(50);

/// How often retention runs.
const RETAIN_EVERY: Duration = Duration::from_secs(30);

/// The longest idempotency key.
const MAX_KEY: usize = 1024;

/// Checks a topic name: 1 to 200 of `A-Z a-z 0-9 . _ -`, not starting
/// with a dot (it names a directory).
pub(crate) fn validate_topic(topic: &str) -> Result<(), Error> {
    let ok = !topic.is_empty()
        && topic.len() <= 200
        && !topic.starts_with('.')
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            "topic",
            format!(
                "`{topic}` is not a topic name; use 1 to 200 letters, digits, `.`, `_` or `-`, \
                 not starting with `.`, like `orders.created`"
            ),
        ))
    }
}

/// One message to a group's task.
#[derive(Debug)]
enum Msg {
    Subscribe(u64, Subscription, mpsc::UnboundedSender<Delivery>),
    Unsubscribe(u64),
    Ack(u64, Option<String>, oneshot::Sender<Result<(), Error>>),
    Replay(u64),
    Stop(oneshot::Sender<()>),
}

/// What `GET /api/v1/events/topics` shows of a group.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct GroupInfo {
    pub(crate) group: String,
    pub(crate) service: String,
    pub(crate) handler: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) instance: Option<String>,
    pub(crate) mode: DeliveryMode,
    pub(crate) position: u64,
    pub(crate) backlog: u64,
    pub(crate) in_flight: usize,
    pub(crate) dead: u64,
    /// The instances subscribed right now.
    pub(crate) subscribers: Vec<String>,
}

/// What `GET /api/v1/events/topics` shows of a topic.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TopicInfo {
    pub(crate) topic: String,
    pub(crate) events: u64,
    pub(crate) first_id: u64,
    pub(crate) last_id: u64,
    pub(crate) bytes: u64,
    pub(crate) rate_per_min: u64,
    pub(crate) groups: Vec<GroupInfo>,
}

/// One event as `tail` shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TailEvent {
    pub(crate) id: u64,
    pub(crate) published_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) idempotency_key: Option<String>,
    pub(crate) payload: serde_json::Value,
}

#[derive(Debug)]
struct GroupHandle {
    tx: mpsc::UnboundedSender<Msg>,
    stats: Arc<Mutex<GroupInfo>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    config: EventsConfig,
    writer: Mutex<Option<Writer>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    state: Mutex<Option<StateWriter>>,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    groups: Mutex<BTreeMap<String, Arc<GroupHandle>>>,
    dead: Mutex<BTreeMap<String, DeadLetter>>,
    next_sub: AtomicU64,
    stop: watch::Sender<bool>,
}

/// The host's event log; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct EventLog {
    inner: Arc<Inner>,
}

fn group_key(topic: &str, group: &str) -> String {
    format!("{topic}\x1f{group}")
}

impl EventLog {
    /// Opens the log in `data_dir/events`, recovering every topic, and
    /// resumes every stored consumer group.
    pub(crate) async fn open(
        data_dir: &std::path::Path,
        config: EventsConfig,
    ) -> Result<EventLog, Error> {
        let dir = data_dir.join("events");
        let cfg = config.clone();
        let d = dir.clone();
        let (topics, (state, loaded, state_thread)) = tokio::task::spawn_blocking(move || {
            let topics_dir = d.join("topics");
            std::fs::create_dir_all(&topics_dir).map_err(|e| {
                Error::unavailable(format!(
                    "cannot create {}: {e}; pass a writable directory with --data-dir",
                    topics_dir.display()
                ))
            })?;
            let now = now_ms();
            let mut topics = HashMap::new();
            let entries = std::fs::read_dir(&topics_dir).map_err(|e| {
                Error::unavailable(format!("cannot list {}: {e}", topics_dir.display()))
            })?;
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if validate_topic(&name).is_err() {
                    continue;
                }
                let t = Topic::open(
                    &name,
                    entry.path(),
                    cfg.segment_bytes,
                    cfg.dedup_window,
                    now,
                )?;
                topics.insert(name, Arc::new(t));
            }
            let state = store::open(&d.join("state.redb"))?;
            Ok::<_, Error>((topics, state))
        })
        .await
        .map_err(|e| Error::internal(format!("opening the event log failed: {e}")))??;
        let (writer, writer_thread) = Writer::start()?;
        let inner = Arc::new(Inner {
            dir,
            config,
            writer: Mutex::new(Some(writer)),
            threads: Mutex::new(vec![writer_thread, state_thread]),
            state: Mutex::new(Some(state)),
            topics: Mutex::new(topics),
            groups: Mutex::new(BTreeMap::new()),
            dead: Mutex::new(BTreeMap::new()),
            next_sub: AtomicU64::new(1),
            stop: watch::channel(false).0,
        });
        let log = EventLog { inner };
        let (groups, dead) = loaded;
        let mut dead_counts: HashMap<String, u64> = HashMap::new();
        {
            let mut map = log.inner.dead.lock();
            for d in dead {
                if !d.replaying {
                    *dead_counts
                        .entry(group_key(&d.topic, &d.group))
                        .or_default() += 1;
                }
                map.insert(dead_key(&d), d);
            }
        }
        for record in groups {
            let key = group_key(&record.topic, &group_name(&record));
            let Ok(topic) = log.topic(&record.topic) else {
                continue;
            };
            let count = dead_counts.get(&key).copied().unwrap_or(0);
            log.spawn_group(
                &mut log.inner.groups.lock(),
                key,
                topic,
                Core::new(record, count),
            );
        }
        let weak = Arc::downgrade(&log.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RETAIN_EVERY);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if *inner.stop.borrow() {
                    return;
                }
                let (age, bytes) = (inner.config.max_age, inner.config.max_bytes);
                if age.is_none() && bytes.is_none() {
                    continue;
                }
                let topics: Vec<Arc<Topic>> = inner.topics.lock().values().cloned().collect();
                drop(inner);
                let _ = tokio::task::spawn_blocking(move || {
                    for t in topics {
                        t.retain(now_ms(), age, bytes);
                    }
                })
                .await;
            }
        });
        Ok(log)
    }

    /// The topic `name`, opened (created) if needed.
    fn topic(&self, name: &str) -> Result<Arc<Topic>, Error> {
        validate_topic(name)?;
        let mut topics = self.inner.topics.lock();
        if let Some(t) = topics.get(name) {
            return Ok(t.clone());
        }
        let dir = self.inner.dir.join("topics").join(name);
        let t = Arc::new(Topic::open(
            name,
            dir,
            self.inner.config.segment_bytes,
            self.inner.config.dedup_window,
            now_ms(),
        )?);
        topics.insert(name.to_owned(), t.clone());
        Ok(t)
    }

    fn existing_topic(&self, name: &str) -> Result<Arc<Topic>, Error> {
        validate_topic(name)?;
        self.inner.topics.lock().get(name).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "there is no topic `{name}`; `weft events ls` lists topics (a topic exists once something publishes to it or subscribes to it)"
            ))
        })
    }

    /// Stores an event; answers once it is durable.
    pub(crate) async fn publish(&self, args: PublishArgs) -> Result<Published, Error> {
        if args
            .idempotency_key
            .as_ref()
            .is_some_and(|k| k.len() > MAX_KEY || k.is_empty())
        {
            return Err(Error::invalid_argument(
                "idempotency_key",
                format!("an idempotency key must have 1 to {MAX_KEY} bytes"),
            ));
        }
        let topic = self.topic(&args.topic)?;
        let enqueued = {
            let writer = self.inner.writer.lock();
            let Some(writer) = writer.as_ref() else {
                return Err(Error::unavailable(
                    "the host is shutting down; publish again once it is back",
                ));
            };
            topic.enqueue(
                writer,
                args.payload,
                args.idempotency_key,
                now_ms(),
                self.inner.config.dedup_window,
            )?
        };
        match enqueued {
            Enqueued::New(id, done) => {
                done.await.map_err(|_| {
                    Error::unavailable(
                        "the host stopped before the event was stored; publish it again",
                    )
                })??;
                Ok(Published {
                    id,
                    duplicate: false,
                })
            }
            Enqueued::Duplicate(id) => {
                topic.wait_durable(id).await?;
                Ok(Published {
                    id,
                    duplicate: true,
                })
            }
        }
    }

    /// Starts a group's task and lists it in `groups` (the locked map, so
    /// that checking for a group and starting it is one step).
    fn spawn_group(
        &self,
        groups: &mut BTreeMap<String, Arc<GroupHandle>>,
        key: String,
        topic: Arc<Topic>,
        core: Core,
    ) -> Arc<GroupHandle> {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(info(&core, topic.last_id())));
        let handle = Arc::new(GroupHandle {
            tx,
            stats: stats.clone(),
            task: Mutex::new(None),
        });
        let state = self.inner.state.lock().clone();
        let task = tokio::spawn(run_group(
            core,
            topic,
            rx,
            Arc::downgrade(&handle),
            state,
            self.inner.clone(),
            key.clone(),
        ));
        *handle.task.lock() = Some(task);
        groups.insert(key, handle.clone());
        handle
    }

    /// Starts delivering to one instance's handler: a stream of deliveries
    /// that releases what it had in flight when dropped.
    pub(crate) fn subscribe(
        &self,
        sub: Subscription,
    ) -> Result<BoxStream<'static, Delivery>, Error> {
        for (field, value) in [
            ("service", &sub.service),
            ("handler", &sub.handler),
            ("instance", &sub.instance),
        ] {
            if value.is_empty() || value.len() > 200 {
                return Err(Error::invalid_argument(
                    field,
                    format!("`{field}` must have 1 to 200 characters"),
                ));
            }
        }
        if let DeliveryMode::Ordered { field } = &sub.mode
            && field.is_empty()
        {
            return Err(Error::invalid_argument(
                "mode",
                "ordered delivery needs the payload field to order by; set `ordered_by = \"<field>\"`",
            ));
        }
        if *self.inner.stop.borrow() {
            return Err(Error::unavailable(
                "the host is shutting down; subscribe again once it is back",
            ));
        }
        let topic = self.topic(&sub.topic)?;
        let instance = (sub.mode == DeliveryMode::Broadcast).then(|| sub.instance.clone());
        let record = GroupRecord {
            topic: sub.topic.clone(),
            service: sub.service.clone(),
            handler: sub.handler.clone(),
            instance,
            mode: sub.mode.clone(),
            max_attempts: sub.max_attempts.max(1),
            position: 0,
            done_above: Vec::new(),
            replaying: Vec::new(),
        };
        let key = group_key(&sub.topic, &group_name(&record));
        // Under the lock from the look-up to the start: two instances
        // subscribing at once must not each start the group (two groups
        // would each deliver every event, and acknowledgements would reach
        // only one of them).
        let mut groups = self.inner.groups.lock();
        let handle = match groups.get(&key).cloned() {
            Some(h) => h,
            None => {
                let position = if sub.mode == DeliveryMode::Broadcast {
                    topic.last_id()
                } else {
                    topic.first_id().saturating_sub(1)
                };
                let mut core = Core::new(GroupRecord { position, ..record }, 0);
                core.dirty = true;
                self.spawn_group(&mut groups, key, topic, core)
            }
        };
        let id = self.inner.next_sub.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        // Sent under the lock too: a group that retires (it takes the lock
        // and finds no message waiting) never drops a subscription.
        handle.tx.send(Msg::Subscribe(id, sub, tx)).map_err(|_| {
            Error::unavailable("the host is shutting down; subscribe again once it is back")
        })?;
        drop(groups);
        /// Tells the group when the stream is dropped.
        struct Release(mpsc::UnboundedSender<Msg>, u64);
        impl Drop for Release {
            fn drop(&mut self) {
                let _ = self.0.send(Msg::Unsubscribe(self.1));
            }
        }
        let release = Release(handle.tx.clone(), id);
        Ok(
            futures::stream::unfold((rx, release), |(mut rx, release)| async move {
                let d = rx.recv().await?;
                Some((d, (rx, release)))
            })
            .boxed(),
        )
    }

    /// Records the outcome of a delivery; answers once it is stored.
    pub(crate) async fn ack(&self, ack: Ack) -> Result<(), Error> {
        validate_topic(&ack.topic)?;
        let handle = {
            let groups = self.inner.groups.lock();
            let broadcast = group_key(
                &ack.topic,
                &format!("{}.{}@{}", ack.service, ack.handler, ack.instance),
            );
            let pool = group_key(&ack.topic, &format!("{}.{}", ack.service, ack.handler));
            groups
                .get(&broadcast)
                .or_else(|| groups.get(&pool))
                .cloned()
        };
        let Some(handle) = handle else {
            return Err(Error::not_found(format!(
                "no consumer group `{}.{}` on topic `{}`; subscribe before acknowledging",
                ack.service, ack.handler, ack.topic
            )));
        };
        let (tx, rx) = oneshot::channel();
        handle
            .tx
            .send(Msg::Ack(ack.id, ack.error, tx))
            .map_err(|_| {
                Error::unavailable("the host is shutting down; the event will be delivered again")
            })?;
        rx.await.map_err(|_| {
            Error::unavailable("the host is shutting down; the event will be delivered again")
        })?
    }

    /// Every topic with its groups.
    pub(crate) fn topics(&self) -> Vec<TopicInfo> {
        let now = now_ms();
        let mut topics: Vec<Arc<Topic>> = self.inner.topics.lock().values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        let groups = self.inner.groups.lock();
        topics
            .into_iter()
            .map(|t| {
                let s = t.stats(now);
                let prefix = format!("{}\x1f", t.name);
                let groups = groups
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(_, g)| g.stats.lock().clone())
                    .collect();
                TopicInfo {
                    topic: t.name.clone(),
                    events: (s.last_id + 1).saturating_sub(s.first_id),
                    first_id: s.first_id,
                    last_id: s.last_id,
                    bytes: s.bytes,
                    rate_per_min: s.rate_per_min,
                    groups,
                }
            })
            .collect()
    }

    /// Events of `topic` after `after` (or the last `n`), then, with
    /// `follow`, every new one until the host stops.
    pub(crate) fn tail(
        &self,
        topic: &str,
        after: Option<u64>,
        n: u64,
        follow: bool,
    ) -> Result<BoxStream<'static, Result<TailEvent, Error>>, Error> {
        let topic = self.existing_topic(topic)?;
        let start = match after {
            Some(a) => a + 1,
            None => (topic.last_id() + 1).saturating_sub(n).max(1),
        }
        .max(topic.first_id());
        let durable = topic.durable();
        let mut stop = self.inner.stop.subscribe();
        let state = (topic, start, durable);
        let stream =
            futures::stream::unfold(state, move |(topic, mut next, mut durable)| async move {
                loop {
                    if next <= *durable.borrow_and_update() {
                        let id = next;
                        next += 1;
                        match topic.read(id) {
                            Ok(Some(e)) => {
                                let item = TailEvent {
                                    id: e.id,
                                    published_ms: e.published_ms,
                                    idempotency_key: e.key.clone(),
                                    payload: e.payload.clone(),
                                };
                                return Some((Ok(item), (topic, next, durable)));
                            }
                            Ok(None) => {
                                next = next.max(topic.first_id());
                                continue;
                            }
                            Err(e) => return Some((Err(e), (topic, next, durable))),
                        }
                    }
                    if !follow || durable.changed().await.is_err() {
                        return None;
                    }
                }
            });
        Ok(stream
            .take_until(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .boxed())
    }

    /// Dead letters, of one topic or all, oldest first per topic.
    pub(crate) fn dead(&self, topic: Option<&str>) -> Vec<DeadLetter> {
        self.inner
            .dead
            .lock()
            .values()
            .filter(|d| topic.is_none_or(|t| d.topic == t))
            .cloned()
            .collect()
    }

    /// Delivers dead letters again to their groups: one (`id`) or every one
    /// of the topic. Returns how many.
    pub(crate) fn replay(&self, topic: &str, id: Option<u64>) -> Result<usize, Error> {
        validate_topic(topic)?;
        let chosen: Vec<DeadLetter> = self
            .inner
            .dead
            .lock()
            .values()
            .filter(|d| d.topic == topic && !d.replaying && id.is_none_or(|i| d.id == i))
            .cloned()
            .collect();
        if chosen.is_empty() {
            return Err(Error::not_found(match id {
                Some(i) => format!(
                    "event {i} of topic `{topic}` is not a dead letter (or is being replayed already); `weft events dead {topic}` lists them"
                ),
                None => format!("topic `{topic}` has no dead letters to replay"),
            }));
        }
        let groups = self.inner.groups.lock();
        let mut n = 0;
        let mut gone = BTreeSet::new();
        for d in chosen {
            match groups.get(&group_key(&d.topic, &d.group)) {
                Some(g) if g.tx.send(Msg::Replay(d.id)).is_ok() => n += 1,
                Some(_) => {}
                None => {
                    gone.insert(d.group);
                }
            }
        }
        if n == 0 && !gone.is_empty() {
            return Err(Error::not_found(format!(
                "no consumer group to deliver to: {} left (a broadcast group ends when its instance has been gone for a while); the dead letters stay for inspection",
                gone.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(n)
    }

    /// Ends follows and subscribe streams: the host is stopping.
    pub(crate) fn stopping(&self) {
        self.inner.stop.send_replace(true);
    }

    /// Stops every group (each stores its state first) and the writers.
    pub(crate) async fn close(&self) {
        self.stopping();
        let groups: Vec<Arc<GroupHandle>> = self.inner.groups.lock().values().cloned().collect();
        for g in &groups {
            let (tx, rx) = oneshot::channel();
            if g.tx.send(Msg::Stop(tx)).is_ok() {
                let _ = rx.await;
            }
            let task = g.task.lock().take();
            if let Some(task) = task {
                let _ = task.await;
            }
        }
        self.inner.groups.lock().clear();
        self.inner.writer.lock().take();
        self.inner.state.lock().take();
        let threads: Vec<_> = self.inner.threads.lock().drain(..).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

fn info(core: &Core, last_id: u64) -> GroupInfo {
    GroupInfo {
        group: core.name(),
        service: core.record.service.clone(),
        handler: core.record.handler.clone(),
        instance: core.record.instance.clone(),
        mode: core.record.mode.clone(),
        position: core.record.position,
        backlog: core.backlog(last_id),
        in_flight: core.in_flight(),
        dead: core.dead_count,
        subscribers: core.instances(),
    }
}

/// Takes a group out of the log's map, unless a message waits for it (a
/// subscription sent under the same lock, or anything else): then it goes on.
fn retire(
    inner: &Inner,
    me: &Weak<GroupHandle>,
    key: &str,
    rx: &mpsc::UnboundedReceiver<Msg>,
) -> bool {
    let mut groups = inner.groups.lock();
    if !rx.is_empty() {
        return false;
    }
    let Some(me) = me.upgrade() else {
        return false;
    };
    if groups.get(key).is_some_and(|h| Arc::ptr_eq(h, &me)) {
        groups.remove(key);
    }
    true
}

/// A group's task: reacts to subscriptions, acknowledgements, new events
/// and retry timers; stores what changed before answering acknowledgements.
async fn run_group(
    mut core: Core,
    topic: Arc<Topic>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    me: Weak<GroupHandle>,
    state: Option<StateWriter>,
    inner: Arc<Inner>,
    key: String,
) {
    let Some(stats) = me.upgrade().map(|h| h.stats.clone()) else {
        return;
    };
    let broadcast = core.record.instance.is_some();
    let mut durable = topic.durable();
    let mut replies: Vec<oneshot::Sender<Result<(), Error>>> = Vec::new();
    let mut stopped: Option<oneshot::Sender<()>> = None;
    // Since when a broadcast group has had no subscriber.
    let mut idle_since = broadcast.then(Instant::now);
    // When the position, changed by acknowledgements, is stored next.
    let mut store_at: Option<Instant> = None;
    loop {
        let retire_at = idle_since.map(|t| t + inner.config.broadcast_idle);
        let timer = [core.next_timer(), retire_at, store_at]
            .into_iter()
            .flatten()
            .min();
        let mut msgs = Vec::new();
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => msgs.push(m),
                None => break,
            },
            r = durable.changed() => if r.is_err() { break },
            () = async {
                match timer {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        while let Ok(m) = rx.try_recv() {
            msgs.push(m);
        }
        let now = Instant::now();
        let last = topic.last_id();
        for m in msgs {
            match m {
                Msg::Subscribe(id, sub, tx) => {
                    // The latest subscription's settings win: a new version
                    // of the service may change them.
                    if core.record.mode != sub.mode
                        || core.record.max_attempts != sub.max_attempts.max(1)
                    {
                        core.record.mode = sub.mode.clone();
                        core.record.max_attempts = sub.max_attempts.max(1);
                        core.dirty = true;
                    }
                    tracing::debug!(
                        topic = %core.record.topic, group = %core.name(), instance = %sub.instance,
                        subscription = id, "subscribed"
                    );
                    core.subscribe(
                        id,
                        Sub {
                            instance: sub.instance,
                            max_in_flight: sub.max_in_flight.max(1),
                            in_flight: 0,
                            tx,
                        },
                    );
                }
                Msg::Unsubscribe(id) => {
                    tracing::debug!(
                        topic = %core.record.topic, group = %core.name(), subscription = id,
                        "unsubscribed"
                    );
                    core.unsubscribe(id, now)
                }
                Msg::Ack(id, error, reply) => {
                    if core.ack(id, error, now, last) {
                        replies.push(reply);
                    } else {
                        let _ = reply.send(Ok(()));
                    }
                }
                Msg::Replay(id) => {
                    if core.replay(id) {
                        let k = dead_key(&DeadLetter {
                            topic: core.record.topic.clone(),
                            id,
                            group: core.name(),
                            attempts: 0,
                            error: String::new(),
                            time_ms: 0,
                            replaying: false,
                        });
                        if let Some(d) = inner.dead.lock().get_mut(&k) {
                            d.replaying = true;
                        }
                        let d = inner.dead.lock().get(&k).cloned();
                        if let Some(d) = d {
                            core.dead_out.push(d);
                        }
                    }
                }
                Msg::Stop(tx) => stopped = Some(tx),
            }
        }
        if stopped.is_none() {
            core.pump(now, topic.as_ref());
        }
        let mut ops = Vec::new();
        for d in core.dead_out.drain(..) {
            let k = dead_key(&d);
            inner.dead.lock().insert(k.clone(), d.clone());
            ops.push(Op::PutDead(k, d));
        }
        for id in core.replayed_ok.drain(..) {
            let k = dead_key(&DeadLetter {
                topic: core.record.topic.clone(),
                id,
                group: group_name(&core.record),
                attempts: 0,
                error: String::new(),
                time_ms: 0,
                replaying: false,
            });
            inner.dead.lock().remove(&k);
            ops.push(Op::DelDead(k));
        }
        // Positions are stored at most every STORE_POSITION_EVERY, not per
        // acknowledgement: a host that dies meanwhile delivers those events
        // again (at least once), and acknowledgements do not each wait for
        // an fsync. Dead letters and replays are stored before answering,
        // and with them the position.
        if core.dirty {
            if !ops.is_empty() || stopped.is_some() || store_at.is_some_and(|at| at <= now) {
                core.dirty = false;
                store_at = None;
                ops.push(Op::Group(key.clone(), core.snapshot()));
            } else if store_at.is_none() {
                store_at = Some(now + STORE_POSITION_EVERY);
            }
        }
        if ops.is_empty() {
            for r in replies.drain(..) {
                let _ = r.send(Ok(()));
            }
        } else {
            match &state {
                Some(s) => s.submit(ops, std::mem::take(&mut replies)),
                None => {
                    for r in replies.drain(..) {
                        let _ = r.send(Err(Error::unavailable("the host is shutting down")));
                    }
                }
            }
        }
        *stats.lock() = info(&core, last);
        if broadcast && stopped.is_none() {
            if !core.instances().is_empty() {
                idle_since = None;
            } else if idle_since.is_none() {
                idle_since = Some(now);
            } else if retire_at.is_some_and(|at| at <= now) && retire(&inner, &me, &key, &rx) {
                tracing::info!(
                    topic = %core.record.topic, group = %core.name(), idle = ?inner.config.broadcast_idle,
                    "removed the broadcast group of an instance that left"
                );
                if let Some(s) = &state {
                    let (done, wait) = oneshot::channel();
                    s.submit(vec![Op::DelGroup(key.clone())], vec![done]);
                    let _ = wait.await;
                }
                return;
            }
        }
        if let Some(tx) = stopped.take() {
            // Wait until what was submitted is stored.
            if let Some(s) = &state {
                let (done, wait) = oneshot::channel();
                s.submit(Vec::new(), vec![done]);
                let _ = wait.await;
            }
            let _ = tx.send(());
            return;
        }
    }
}
