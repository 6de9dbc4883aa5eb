//! The front of the event log: opening it (recovering every topic and
//! resuming every stored consumer group), publishing, and closing it; and
//! the log as the rest of the host sees it, [`EventLog`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use futures::FutureExt as _;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use weft_core::Error;
use weft_core::name::validate_topic;
use weft_host_api::events::{DeadLetter, TopicInfo};
use weft_host_api::wire::{Ack, PublishArgs, Published, Subscription};

use super::config::{EventsConfig, MAX_KEY, RETAIN_EVERY};
use super::group::{Core, group_name};
use super::shared::{GroupHandle, Inner, Msg, group_key};
use super::store::{self, dead_key};
use super::topic::{Enqueued, Topic, Writer};
use crate::backend::{Deliveries, EventLog, Tail};
use crate::time::now_ms;

/// The embedded event log: per-topic segment files in the data dir and
/// consumer groups in `events/state.redb`; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct SegmentLog {
    pub(super) inner: Arc<Inner>,
}

impl SegmentLog {
    /// Opens the log in `data_dir/events`, recovering every topic, and
    /// resumes every stored consumer group.
    pub(crate) async fn open(
        data_dir: &std::path::Path,
        config: EventsConfig,
    ) -> Result<SegmentLog, Error> {
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
        let log = SegmentLog { inner };
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
    pub(super) fn topic(&self, name: &str) -> Result<Arc<Topic>, Error> {
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

    pub(super) fn existing_topic(&self, name: &str) -> Result<Arc<Topic>, Error> {
        validate_topic(name)?;
        self.inner.topics.lock().get(name).cloned().ok_or_else(|| {
            Error::not_found(format!(
                "there is no topic `{name}`; `weft events ls` lists topics (a topic exists once something publishes to it or subscribes to it)"
            ))
        })
    }

    /// Hands an event to the writer, or finds the earlier publish with the
    /// same idempotency key: the part of a publish that does not wait.
    fn enqueue(&self, args: PublishArgs) -> Result<(Arc<Topic>, Enqueued), Error> {
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
        Ok((topic, enqueued))
    }

    /// Stops every group (each stores its state first) and the writers.
    async fn close_all(&self) {
        self.inner.stop.send_replace(true);
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

/// What needs no waiting answers at once; a publish and an acknowledgement
/// do their part under the log's locks when called, so that what a
/// connection sends in order is applied in order, and only their waiting
/// (for the sync, for the group) is left to the future.
impl EventLog for SegmentLog {
    fn publish(&self, args: PublishArgs) -> BoxFuture<'static, Result<Published, Error>> {
        match self.enqueue(args) {
            Ok((_, Enqueued::New(id, done))) => async move {
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
            .boxed(),
            Ok((topic, Enqueued::Duplicate(id))) => async move {
                topic.wait_durable(id).await?;
                Ok(Published {
                    id,
                    duplicate: true,
                })
            }
            .boxed(),
            Err(e) => futures::future::ready(Err(e)).boxed(),
        }
    }

    fn subscribe(&self, sub: Subscription) -> BoxFuture<'static, Result<Deliveries, Error>> {
        futures::future::ready(self.join(sub)).boxed()
    }

    fn ack(&self, ack: Ack) -> BoxFuture<'static, Result<(), Error>> {
        match self.send_ack(ack) {
            Ok(answer) => async move {
                answer.await.map_err(|_| {
                    Error::unavailable(
                        "the host is shutting down; the event will be delivered again",
                    )
                })?
            }
            .boxed(),
            Err(e) => futures::future::ready(Err(e)).boxed(),
        }
    }

    fn topics(&self) -> BoxFuture<'static, Result<Vec<TopicInfo>, Error>> {
        futures::future::ready(Ok(self.topic_infos())).boxed()
    }

    fn tail(
        &self,
        topic: &str,
        after: Option<u64>,
        n: u64,
        follow: bool,
    ) -> BoxFuture<'static, Result<Tail, Error>> {
        futures::future::ready(self.tail_events(topic, after, n, follow)).boxed()
    }

    fn dead(&self, topic: Option<&str>) -> BoxFuture<'static, Result<Vec<DeadLetter>, Error>> {
        futures::future::ready(Ok(self.dead_letters(topic))).boxed()
    }

    fn replay(&self, topic: &str, id: Option<u64>) -> BoxFuture<'static, Result<usize, Error>> {
        futures::future::ready(self.replay_dead(topic, id)).boxed()
    }

    fn stopping(&self) {
        self.inner.stop.send_replace(true);
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let log = self.clone();
        async move { log.close_all().await }.boxed()
    }
}
