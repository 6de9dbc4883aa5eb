//! The event log on JetStream, shared by every host of a cluster.
//!
//! - **Topics**: one stream per topic, `WEFT_EVENTS_<topic>` on the subject
//!   `weft.events.<topic>`, with the host's retention and deduplication
//!   window; a publish is answered once JetStream has stored it (on a
//!   quorum of three replicas on a cluster of three or more servers). An
//!   event's id is its sequence in the stream; an idempotency key is the
//!   message's `Nats-Msg-Id`, so JetStream drops a repeat within the window
//!   and answers with the first one's sequence.
//! - **Consumer groups**: one durable pull consumer per group (service,
//!   handler, topic; for broadcast also the instance), whose settings say
//!   which group it is (its metadata). Every host pulls from it for its own
//!   subscribers, at most their `max_in_flight` unacknowledged each, so a
//!   group's events are spread over its instances on every host. `ordered`
//!   groups have one event unacknowledged at a time across the group: an
//!   event is handled, or dead-lettered, before the next is delivered
//!   anywhere, which keeps the order of every key. While a handler works,
//!   its host tells JetStream so (progress acks); a host that dies stops
//!   telling it, and the event goes to another instance after the ack wait.
//! - **Failures**: a failed event is delivered again after a backoff (a
//!   delayed negative ack); after `max_attempts` it goes to the stream of
//!   dead letters, `WEFT_DEAD`, and leaves its group.
//! - **Replay**: a dead letter replayed is published again on its group's
//!   own subject in `WEFT_REPLAY`, which the group's subscribers pull from
//!   too, and leaves `WEFT_DEAD`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::stream::{self, Stream};
use async_nats::jetstream::{self, Message};
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use tokio::sync::{Semaphore, mpsc, watch};
use weft_core::Error;
use weft_core::backoff::Backoff;
use weft_core::name::validate_topic;
use weft_host_api::events::{DeadLetter, GroupInfo, TailEvent, TopicInfo};
use weft_host_api::wire::{Ack, Delivery, DeliveryMode, PublishArgs, Published, Subscription};

use super::events::{Deliveries, EventLog, Tail};
use super::nats::{NatsCluster, decode_id, encode_id, foreign, open_bucket, stream_differences};
use crate::events::EventsConfig;
use crate::time::now_ms;
use async_nats::jetstream::kv;

/// The prefix of a topic's stream name; the rest is the encoded topic.
const TOPIC_STREAM: &str = "WEFT_EVENTS_";
/// The prefix of a topic's subject; the rest is the topic.
const TOPIC_SUBJECT: &str = "weft.events.";
/// The stream of dead letters, on `weft.dead.<encoded topic>`.
const DEAD: &str = "WEFT_DEAD";
const DEAD_SUBJECT: &str = "weft.dead.";
/// The stream of replayed dead letters, on `weft.replay.<group>`.
const REPLAY: &str = "WEFT_REPLAY";
const REPLAY_SUBJECT: &str = "weft.replay.";

/// The bucket of subscribers: `<host>.<topic>.<group>.<instance>`, each
/// rewritten every third of the lease by its host; an entry of a host that
/// stopped expires after three lease times.
const SUBSCRIBERS: &str = "weft_subscribers";

/// Headers of an event.
const PUBLISHER: &str = "Weft-Publisher";
const KEY: &str = "Weft-Idempotency-Key";
/// Headers of a replayed event: its id in its topic, when it was published.
const EVENT_ID: &str = "Weft-Event-Id";
const PUBLISHED: &str = "Weft-Published-Ms";

/// How long JetStream waits for an acknowledgement before it delivers an
/// event to another instance; a host renews it for its handlers at a third
/// of it, so it only runs out when the host is gone.
const ACK_WAIT: Duration = Duration::from_secs(6);

/// How long one pull waits for events before it asks again.
const PULL_WAIT: Duration = Duration::from_secs(1);

/// How long a request to JetStream may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The first retry of a failed event waits this long, each further one
/// twice as long, never more than 30 s: as on one host.
const BACKOFF: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));

/// A delivery handed to a subscriber and not yet acknowledged (or failed
/// and waiting for its retry).
struct Pending {
    message: Message,
    /// Released when the delivery is acknowledged: the subscriber's
    /// credit.
    _credit: tokio::sync::OwnedSemaphorePermit,
    /// What was handed out, to hand it out again after a failure.
    delivery: Delivery,
    to: Subscriber,
}

/// Which delivery an acknowledgement is for: the instance, topic,
/// `service.handler` and event id.
type PendingKey = (String, String, String, u64);

/// The event log of a cluster, in JetStream.
#[derive(Clone)]
pub(super) struct NatsEvents {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    replicas: usize,
    servers: String,
    config: EventsConfig,
    /// Topics whose stream was opened (and checked) so far.
    topics: Mutex<HashMap<String, Arc<Opened>>>,
    /// Deliveries this host handed out and awaits acknowledgements of.
    pending: Mutex<HashMap<PendingKey, Pending>>,
    /// This host's subscribers, by topic and group.
    subscribers: Mutex<HashMap<(String, String), Vec<String>>>,
    /// Every host's subscribers.
    subscribers_kv: kv::Store,
    /// This host's name.
    host: String,
    /// The largest payload NATS takes, as the server said.
    max_payload: usize,
    stop: watch::Sender<bool>,
}

impl fmt::Debug for NatsEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsEvents")
            .field("servers", &self.inner.servers)
            .field("replicas", &self.inner.replicas)
            .finish()
    }
}

/// A topic whose stream is open: the stream, and the subject to publish on.
struct Opened {
    stream: Stream,
    subject: String,
}

fn stream_name(topic: &str) -> String {
    format!("{TOPIC_STREAM}{}", encode_id(topic))
}

fn topic_subject(topic: &str) -> String {
    format!("{TOPIC_SUBJECT}{topic}")
}

/// A consumer group's name, as `weft events ls` shows it and as its durable
/// consumer is named (encoded).
fn group_name(sub: &Subscription) -> String {
    match sub.mode {
        DeliveryMode::Broadcast => format!("{}.{}@{}", sub.service, sub.handler, sub.instance),
        _ => format!("{}.{}", sub.service, sub.handler),
    }
}

/// Reads a JSON payload back; a payload weft did not write is shown as a
/// string.
fn payload(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(bytes).into()))
}

fn header(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    headers
        .and_then(|h| h.get(name))
        .map(|v| v.as_str().to_owned())
}

fn millis(time: time::OffsetDateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn unavailable(what: &str, e: impl fmt::Display) -> Error {
    Error::unavailable(format!("{what}: {e}"))
}

impl NatsEvents {
    /// The event log of `cluster`'s JetStream, with `config`'s retention and
    /// deduplication window for new topics; opens (or makes) the streams
    /// of dead letters and replays.
    pub(super) async fn open(
        cluster: &NatsCluster,
        config: EventsConfig,
        servers: &str,
    ) -> Result<NatsEvents, Error> {
        let js = cluster.jetstream().clone();
        let replicas = cluster.replicas();
        for (name, subject) in [(DEAD, DEAD_SUBJECT), (REPLAY, REPLAY_SUBJECT)] {
            let wanted = stream::Config {
                name: name.to_owned(),
                subjects: vec![format!("{subject}>")],
                num_replicas: replicas,
                ..Default::default()
            };
            let stream = js.get_or_create_stream(wanted.clone()).await.map_err(|e| {
                unavailable(
                    &format!("cannot open the stream `{name}` in NATS at {servers}"),
                    e,
                )
            })?;
            check_stream(&stream, &wanted, servers)?;
        }
        let ttl = cluster.lease_ttl();
        let subscribers_kv = open_bucket(
            &js,
            kv::Config {
                bucket: SUBSCRIBERS.to_owned(),
                description: "weft: the event subscribers of every host".to_owned(),
                history: 1,
                max_age: ttl * 3,
                storage: jetstream::stream::StorageType::Memory,
                num_replicas: replicas,
                ..Default::default()
            },
            servers,
        )
        .await?;
        let max_payload = js.client().server_info().max_payload;
        let (stop, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            js,
            replicas,
            servers: servers.to_owned(),
            config,
            topics: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            subscribers: Mutex::new(HashMap::new()),
            subscribers_kv,
            host: cluster.host_name().to_owned(),
            max_payload,
            stop,
        });
        // Every third of the ack wait, what this host's handlers hold is
        // renewed; every third of the lease, its subscribers.
        tokio::spawn(every(
            Arc::downgrade(&inner),
            ACK_WAIT / 3,
            keep_in_progress,
        ));
        tokio::spawn(every(Arc::downgrade(&inner), ttl / 3, |inner| async move {
            inner.put_subscribers().await;
        }));
        Ok(NatsEvents { inner })
    }
}

impl Inner {
    /// The settings of a topic's stream.
    fn topic_config(&self, topic: &str) -> stream::Config {
        stream::Config {
            name: stream_name(topic),
            description: Some(format!("weft: the events of `{topic}`")),
            subjects: vec![topic_subject(topic)],
            max_age: self.config.max_age.unwrap_or_default(),
            max_bytes: self
                .config
                .max_bytes
                .and_then(|b| i64::try_from(b).ok())
                .unwrap_or(-1),
            duplicate_window: self.config.dedup_window,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// The stream of `topic`, made on first use.
    async fn topic(&self, topic: &str) -> Result<Arc<Opened>, Error> {
        if let Some(opened) = self.topics.lock().get(topic) {
            return Ok(opened.clone());
        }
        validate_topic(topic)?;
        let wanted = self.topic_config(topic);
        let stream = self
            .js
            .get_or_create_stream(wanted.clone())
            .await
            .map_err(|e| {
                unavailable(
                    &format!(
                        "cannot open the stream of the topic `{topic}` in NATS at {}",
                        self.servers
                    ),
                    e,
                )
            })?;
        check_stream(&stream, &wanted, &self.servers)?;
        let opened = Arc::new(Opened {
            stream,
            subject: topic_subject(topic),
        });
        self.topics.lock().insert(topic.to_owned(), opened.clone());
        Ok(opened)
    }

    /// The stream of `topic` if it exists (for reading), without making it.
    async fn existing_topic(&self, topic: &str) -> Result<Option<Stream>, Error> {
        validate_topic(topic)?;
        if let Some(opened) = self.topics.lock().get(topic) {
            return Ok(Some(opened.stream.clone()));
        }
        match self.js.get_stream(stream_name(topic)).await {
            Ok(stream) => Ok(Some(stream)),
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::GetStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(unavailable(&format!("cannot read the topic `{topic}`"), e)),
        }
    }
}

/// The error for a stream of weft's name with other settings than weft's
/// (its retention may differ: hosts may keep events for different times):
/// nothing is changed.
fn check_stream(stream: &Stream, wanted: &stream::Config, servers: &str) -> Result<(), Error> {
    let differences = stream_differences(&stream.cached_info().config, wanted, false);
    foreign(&format!("stream `{}`", wanted.name), servers, &differences)
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

/// Runs `round` every `period` while the log lives and has not stopped.
async fn every<F, Fut>(inner: std::sync::Weak<Inner>, period: Duration, round: F)
where
    F: Fn(Arc<Inner>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if *inner.stop.borrow() {
            return;
        }
        round(inner).await;
    }
}

/// Tells JetStream that this host's deliveries are still being worked on
/// (handled, or waiting for a retry), so that only a host that is gone
/// loses them to another.
async fn keep_in_progress(inner: Arc<Inner>) {
    let messages: Vec<Message> = inner
        .pending
        .lock()
        .values()
        .map(|p| p.message.clone())
        .collect();
    drop(inner);
    for message in messages {
        if let Err(e) = message.ack_with(AckKind::Progress).await {
            tracing::debug!(error = %e, "cannot tell JetStream an event is in progress");
        }
    }
}

/// The durable consumer of a group: made on first subscribe, with the
/// group's settings; one of that name with other settings (another mode)
/// is an error.
async fn open_group(
    stream: &Stream,
    sub: &Subscription,
    group: &str,
    broadcast_idle: Duration,
) -> Result<PullConsumer, Error> {
    let (mode, field) = match &sub.mode {
        DeliveryMode::Pool => ("pool", String::new()),
        DeliveryMode::Broadcast => ("broadcast", String::new()),
        DeliveryMode::Ordered { field } => ("ordered", field.clone()),
    };
    let name = encode_id(group);
    let metadata: HashMap<String, String> = [
        ("weft_service", sub.service.clone()),
        ("weft_handler", sub.handler.clone()),
        ("weft_mode", mode.to_owned()),
        ("weft_field", field),
        (
            "weft_instance",
            if matches!(sub.mode, DeliveryMode::Broadcast) {
                sub.instance.clone()
            } else {
                String::new()
            },
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = consumer::pull::Config {
        durable_name: Some(name.clone()),
        description: Some(format!(
            "weft: the consumer group {group} of `{}`",
            sub.topic
        )),
        ack_policy: AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        // A new pool or ordered group starts at the oldest retained event;
        // a broadcast group (one instance) at the end, as on one host.
        deliver_policy: if matches!(sub.mode, DeliveryMode::Broadcast) {
            DeliverPolicy::New
        } else {
            DeliverPolicy::All
        },
        // One event unacknowledged at a time across an ordered group.
        max_ack_pending: if matches!(sub.mode, DeliveryMode::Ordered { .. }) {
            1
        } else {
            10_000
        },
        inactive_threshold: if matches!(sub.mode, DeliveryMode::Broadcast) {
            broadcast_idle
        } else {
            Duration::ZERO
        },
        metadata: metadata.clone(),
        ..Default::default()
    };
    let consumer: PullConsumer =
        stream
            .get_or_create_consumer(&name, config)
            .await
            .map_err(|e| {
                unavailable(
                    &format!("cannot open the consumer group {group} of `{}`", sub.topic),
                    e,
                )
            })?;
    let have = &consumer.cached_info().config;
    if have.metadata.get("weft_mode") != metadata.get("weft_mode")
        || have.metadata.get("weft_field") != metadata.get("weft_field")
        || have.ack_policy != AckPolicy::Explicit
    {
        return Err(Error::invalid_argument(
            "mode",
            format!(
                "the consumer group {group} of `{}` exists in NATS with other settings (mode {:?}, \
                 field {:?}, ack policy {:?}), and this handler subscribes as {mode}{}; \
                 weft leaves it as it is. Give the handler another name, or delete the \
                 consumer (`nats consumer rm {} {name}`) once no instance of the old one runs",
                sub.topic,
                have.metadata
                    .get("weft_mode")
                    .map(String::as_str)
                    .unwrap_or("none"),
                have.metadata
                    .get("weft_field")
                    .map(String::as_str)
                    .unwrap_or(""),
                have.ack_policy,
                metadata
                    .get("weft_field")
                    .filter(|f| !f.is_empty())
                    .map(|f| format!(" by `{f}`"))
                    .unwrap_or_default(),
                stream_name(&sub.topic),
            ),
        ));
    }
    Ok(consumer)
}

/// The consumer of a group's replayed dead letters.
async fn open_replays(js: &jetstream::Context, group_key: &str) -> Result<PullConsumer, Error> {
    let stream = js
        .get_stream(REPLAY)
        .await
        .map_err(|e| unavailable("cannot open the stream of replays", e))?;
    let name = encode_id(group_key);
    stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: format!("{REPLAY_SUBJECT}{name}"),
                ack_policy: AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| unavailable("cannot open a consumer of replays", e))
}

/// What a subscription hands out: its instance, topic and group, and
/// where its deliveries go.
#[derive(Clone)]
struct Subscriber {
    instance: String,
    topic: String,
    group: String,
    /// `service.handler`: with the instance, topic and event id, what an
    /// acknowledgement names.
    base: String,
    max_attempts: u32,
    tx: mpsc::Sender<Result<Delivery, Error>>,
}

impl Inner {
    /// Hands `message` to `to` as a delivery, holding `credit` until it is
    /// acknowledged; false once the subscriber is gone.
    async fn deliver(
        &self,
        to: &Subscriber,
        message: Message,
        replayed: bool,
        credit: tokio::sync::OwnedSemaphorePermit,
    ) -> bool {
        let Ok(info) = message.info() else {
            tracing::warn!(topic = %to.topic, "skipping an event without JetStream metadata");
            return true;
        };
        let headers = message.headers.as_ref();
        let (id, published_ms) = if replayed {
            (
                header(headers, EVENT_ID)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(info.stream_sequence),
                header(headers, PUBLISHED)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| millis(info.published)),
            )
        } else {
            (info.stream_sequence, millis(info.published))
        };
        let attempt = u32::try_from(info.delivered).unwrap_or(u32::MAX).max(1);
        let delivery = Delivery {
            topic: to.topic.clone(),
            id,
            payload: payload(&message.payload),
            attempt,
            published_ms,
        };
        let key = (to.instance.clone(), to.topic.clone(), to.base.clone(), id);
        self.pending.lock().insert(
            key.clone(),
            Pending {
                message,
                _credit: credit,
                delivery: delivery.clone(),
                to: to.clone(),
            },
        );
        if to.tx.send(Ok(delivery)).await.is_err() {
            self.release(&key).await;
            return false;
        }
        true
    }

    /// Gives a delivery back to JetStream, which hands it to another
    /// instance at once.
    async fn release(&self, key: &PendingKey) {
        let pending = self.pending.lock().remove(key);
        if let Some(p) = pending
            && let Err(e) = p.message.ack_with(AckKind::Nak(None)).await
        {
            tracing::debug!(error = %e, "cannot give an event back to JetStream");
        }
    }

    /// Pulls a subscriber's group (and the group's replays) as long as the
    /// subscriber reads, at most `max_in_flight` unacknowledged.
    async fn pull(
        self: Arc<Self>,
        to: Subscriber,
        events: PullConsumer,
        replays: PullConsumer,
        max_in_flight: u32,
    ) {
        let credit = Arc::new(Semaphore::new(max_in_flight.max(1) as usize));
        let mut stop = self.stop.subscribe();
        'pull: loop {
            let first = tokio::select! {
                permit = credit.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = to.tx.closed() => break,
                () = stopped(&mut stop) => break,
            };
            let mut permits = vec![first];
            while let Ok(p) = credit.clone().try_acquire_owned() {
                permits.push(p);
            }
            // Replays first, without waiting; then the topic, waiting a
            // little for events to come.
            for (consumer, replayed) in [(&replays, true), (&events, false)] {
                if permits.is_empty() {
                    break;
                }
                let batch = if replayed {
                    consumer
                        .fetch()
                        .max_messages(permits.len())
                        .messages()
                        .await
                } else {
                    consumer
                        .batch()
                        .max_messages(permits.len())
                        .expires(PULL_WAIT)
                        .messages()
                        .await
                };
                let mut batch = match batch {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(topic = %to.topic, group = %to.group, error = %e, "cannot pull events from JetStream; trying again");
                        tokio::select! {
                            () = tokio::time::sleep(PULL_WAIT) => {}
                            () = stopped(&mut stop) => break 'pull,
                        }
                        continue 'pull;
                    }
                };
                loop {
                    let next = tokio::select! {
                        next = batch.next() => next,
                        () = to.tx.closed() => break 'pull,
                        () = stopped(&mut stop) => break 'pull,
                    };
                    match next {
                        Some(Ok(message)) => {
                            let Some(permit) = permits.pop() else {
                                // More than asked for: back to JetStream.
                                let _ = message.ack_with(AckKind::Nak(None)).await;
                                continue;
                            };
                            if !self.deliver(&to, message, replayed, permit).await {
                                break 'pull;
                            }
                        }
                        Some(Err(e)) => {
                            tracing::debug!(topic = %to.topic, error = %e, "a pull from JetStream ended early");
                            break;
                        }
                        None => break,
                    }
                }
            }
        }
        // The subscriber is gone: what it had goes to others now.
        let keys: Vec<PendingKey> = self
            .pending
            .lock()
            .keys()
            .filter(|k| k.0 == to.instance && k.1 == to.topic && k.2 == to.base)
            .cloned()
            .collect();
        for key in keys {
            self.release(&key).await;
        }
        let gone = {
            let mut subscribers = self.subscribers.lock();
            match subscribers.get_mut(&(to.topic.clone(), to.group.clone())) {
                Some(list) => {
                    if let Some(i) = list.iter().position(|i| *i == to.instance) {
                        list.remove(i);
                    }
                    !list.contains(&to.instance)
                }
                None => true,
            }
        };
        if gone {
            let key = self.subscriber_key(&to.topic, &to.group, &to.instance);
            if let Err(e) = self.subscribers_kv.delete(&key).await {
                tracing::debug!(error = %e, "cannot take a subscriber off the cluster");
            }
        }
    }

    /// Stores a dead letter; resolves once JetStream has it.
    async fn dead_letter(&self, letter: &DeadLetter) -> Result<(), Error> {
        let subject = format!(
            "{DEAD_SUBJECT}{}.{}",
            encode_id(&letter.topic),
            encode_id(&letter.group)
        );
        let body = serde_json::to_vec(letter)
            .map_err(|e| Error::internal(format!("cannot encode a dead letter: {e}")))?;
        self.js
            .publish(subject, body.into())
            .await
            .map_err(|e| unavailable("cannot store a dead letter", e))?
            .await
            .map_err(|e| unavailable("cannot store a dead letter", e))?;
        Ok(())
    }

    /// Every dead letter with its sequence in `WEFT_DEAD`, of `topic` or
    /// of all.
    async fn dead_letters(&self, topic: Option<&str>) -> Result<Vec<(u64, DeadLetter)>, Error> {
        let stream = self
            .js
            .get_stream(DEAD)
            .await
            .map_err(|e| unavailable("cannot read the dead letters", e))?;
        let filter = match topic {
            Some(t) => format!("{DEAD_SUBJECT}{}.>", encode_id(t)),
            None => format!("{DEAD_SUBJECT}>"),
        };
        read_all(&stream, &filter)
            .await?
            .into_iter()
            .map(|(seq, message)| {
                serde_json::from_slice::<DeadLetter>(&message.payload)
                    .map(|l| (seq, l))
                    .map_err(|e| Error::internal(format!("an unreadable dead letter ({seq}): {e}")))
            })
            .collect()
    }
}

/// Every message of `stream` on `filter` there is now, oldest first, with
/// its sequence.
async fn read_all(stream: &Stream, filter: &str) -> Result<Vec<(u64, async_nats::Message)>, Error> {
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("cannot read from JetStream", e))?;
    let mut pending = consumer.cached_info().num_pending;
    let mut out = Vec::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| unavailable("cannot read from JetStream", e))?;
    while pending > 0 {
        let next = tokio::time::timeout(REQUEST_TIMEOUT, messages.next())
            .await
            .map_err(|_| Error::unavailable("JetStream did not answer in time"))?;
        let Some(message) = next else { break };
        let message = message.map_err(|e| unavailable("cannot read from JetStream", e))?;
        let info = message
            .info()
            .map_err(|e| unavailable("a message without JetStream metadata", e))?;
        pending = info.pending;
        out.push((info.stream_sequence, message.message.clone()));
    }
    Ok(out)
}

impl EventLog for NatsEvents {
    fn publish(&self, args: PublishArgs) -> BoxFuture<'static, Result<Published, Error>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let opened = inner.topic(&args.topic).await?;
            let body = serde_json::to_vec(&args.payload).map_err(|e| {
                Error::invalid_argument("payload", format!("cannot encode the event: {e}"))
            })?;
            if body.len() > inner.max_payload {
                return Err(Error::resource_exhausted(format!(
                    "the event is {} bytes, over the {} bytes NATS takes in one message \
                     (its max_payload); send less, or raise max_payload in nats-server's config",
                    body.len(),
                    inner.max_payload
                )));
            }
            let body = bytes::Bytes::from(body);
            let message = || {
                let mut publish = Publish::build().payload(body.clone());
                if let Some(key) = &args.idempotency_key {
                    publish = publish.message_id(key).header(KEY, key.as_str());
                }
                if let Some(publisher) = &args.publisher {
                    publish = publish.header(PUBLISHER, publisher.as_str());
                }
                publish
            };
            let js = &inner.js;
            let send = |publish: Publish, subject: String| async move {
                js.send_publish(subject, publish)
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())
            };
            let ack = match send(message(), opened.subject.clone()).await {
                Ok(ack) => ack,
                // NATS may have lost the stream (a restart without its
                // store): make it again, and publish once more.
                Err(_) => {
                    inner.topics.lock().remove(&args.topic);
                    let opened = inner.topic(&args.topic).await?;
                    send(message(), opened.subject.clone()).await.map_err(|e| {
                        Error::unavailable(format!("cannot publish to `{}`: {e}", args.topic))
                    })?
                }
            };
            Ok(Published {
                id: ack.sequence,
                duplicate: ack.duplicate,
            })
        })
    }

    fn subscribe(&self, sub: Subscription) -> BoxFuture<'static, Result<Deliveries, Error>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let opened = inner.topic(&sub.topic).await?;
            let group = group_name(&sub);
            let events =
                open_group(&opened.stream, &sub, &group, inner.config.broadcast_idle).await?;
            let replays = open_replays(&inner.js, &format!("{}.{group}", sub.topic)).await?;
            let (tx, rx) = mpsc::channel(sub.max_in_flight.max(1) as usize);
            inner
                .subscribers
                .lock()
                .entry((sub.topic.clone(), group.clone()))
                .or_default()
                .push(sub.instance.clone());
            let key = inner.subscriber_key(&sub.topic, &group, &sub.instance);
            if let Err(e) = inner.subscribers_kv.put(&key, bytes::Bytes::new()).await {
                tracing::debug!(error = %e, "cannot write a subscriber to the cluster");
            }
            let to = Subscriber {
                instance: sub.instance.clone(),
                topic: sub.topic.clone(),
                group,
                base: format!("{}.{}", sub.service, sub.handler),
                max_attempts: sub.max_attempts.max(1),
                tx,
            };
            tokio::spawn(inner.clone().pull(to, events, replays, sub.max_in_flight));
            let mut rx = rx;
            Ok(futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed())
        })
    }

    fn ack(&self, ack: Ack) -> BoxFuture<'static, Result<(), Error>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let key = (
                ack.instance.clone(),
                ack.topic.clone(),
                format!("{}.{}", ack.service, ack.handler),
                ack.id,
            );
            let Some(mut p) = inner.pending.lock().remove(&key) else {
                return Err(Error::not_found(format!(
                    "no delivery of event {} of `{}` to {} is waiting for an acknowledgement \
                     (acknowledged already, or given to another instance after its subscription ended)",
                    ack.id, ack.topic, ack.instance
                )));
            };
            let Some(error) = ack.error else {
                return p
                    .message
                    .double_ack()
                    .await
                    .map_err(|e| unavailable("cannot acknowledge an event in JetStream", e));
            };
            if p.delivery.attempt >= p.to.max_attempts {
                let letter = DeadLetter {
                    topic: ack.topic.clone(),
                    id: ack.id,
                    group: p.to.group.clone(),
                    attempts: p.delivery.attempt,
                    error,
                    time_ms: now_ms(),
                    replaying: false,
                };
                inner.dead_letter(&letter).await?;
                return p
                    .message
                    .double_ack()
                    .await
                    .map_err(|e| unavailable("cannot acknowledge a dead-lettered event", e));
            }
            // Held (in progress) through its backoff, so that no other
            // event of an ordered group overtakes it; then handed out
            // again here.
            let delay = BACKOFF.delay(p.delivery.attempt);
            p.delivery.attempt += 1;
            let (delivery, to) = (p.delivery.clone(), p.to.clone());
            inner.pending.lock().insert(key.clone(), p);
            let retry = inner.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let still = retry.pending.lock().contains_key(&key);
                if still && to.tx.send(Ok(delivery)).await.is_err() {
                    retry.release(&key).await;
                }
            });
            Ok(())
        })
    }

    fn topics(&self) -> BoxFuture<'static, Result<Vec<TopicInfo>, Error>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            let names: Vec<String> = inner
                .js
                .stream_names()
                .try_collect()
                .await
                .map_err(|e| unavailable("cannot list the topics", e))?;
            let dead = inner.dead_letters(None).await?;
            let mut topics = Vec::new();
            for name in names.into_iter().filter(|n| n.starts_with(TOPIC_STREAM)) {
                let mut stream = match inner.js.get_stream(&name).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(stream = %name, error = %e, "a topic's stream went away");
                        continue;
                    }
                };
                let info = stream
                    .info()
                    .await
                    .map_err(|e| unavailable("cannot read a topic", e))?
                    .clone();
                let Some(topic) = info
                    .config
                    .subjects
                    .first()
                    .and_then(|s| s.strip_prefix(TOPIC_SUBJECT))
                    .map(str::to_owned)
                else {
                    continue;
                };
                let consumers: Vec<consumer::Info> = stream
                    .consumers()
                    .try_collect()
                    .await
                    .map_err(|e| unavailable("cannot list a topic's groups", e))?;
                let mut subscribers = inner.cluster_subscribers(&topic).await;
                let mut groups = Vec::new();
                for c in consumers {
                    let meta = &c.config.metadata;
                    let Some(service) = meta.get("weft_service") else {
                        continue;
                    };
                    let handler = meta.get("weft_handler").cloned().unwrap_or_default();
                    let instance = meta.get("weft_instance").filter(|i| !i.is_empty()).cloned();
                    let mode = match meta.get("weft_mode").map(String::as_str) {
                        Some("broadcast") => DeliveryMode::Broadcast,
                        Some("ordered") => DeliveryMode::Ordered {
                            field: meta.get("weft_field").cloned().unwrap_or_default(),
                        },
                        _ => DeliveryMode::Pool,
                    };
                    let group = match &instance {
                        Some(i) => format!("{service}.{handler}@{i}"),
                        None => format!("{service}.{handler}"),
                    };
                    let subscribers = subscribers.remove(&group).unwrap_or_default();
                    groups.push(GroupInfo {
                        dead: dead
                            .iter()
                            .filter(|(_, l)| l.topic == topic && l.group == group)
                            .count() as u64,
                        group,
                        service: service.clone(),
                        handler,
                        instance,
                        mode,
                        position: c.ack_floor.stream_sequence,
                        backlog: c.num_pending + c.num_ack_pending as u64,
                        in_flight: c.num_ack_pending,
                        subscribers,
                    });
                }
                groups.sort_by(|a, b| a.group.cmp(&b.group));
                topics.push(TopicInfo {
                    rate_per_min: published_since(&stream, &info, Duration::from_secs(60)).await,
                    topic,
                    events: info.state.messages,
                    first_id: info.state.first_sequence,
                    last_id: info.state.last_sequence,
                    bytes: info.state.bytes,
                    groups,
                });
            }
            topics.sort_by(|a, b| a.topic.cmp(&b.topic));
            Ok(topics)
        })
    }

    fn tail(
        &self,
        topic: &str,
        after: Option<u64>,
        n: u64,
        follow: bool,
    ) -> BoxFuture<'static, Result<Tail, Error>> {
        let (inner, topic) = (self.inner.clone(), topic.to_owned());
        Box::pin(async move {
            let Some(mut stream) = inner.existing_topic(&topic).await? else {
                return Err(Error::not_found(format!(
                    "no topic `{topic}`: nothing was published to it (`weft events ls` lists topics)"
                )));
            };
            let state = stream
                .info()
                .await
                .map_err(|e| unavailable("cannot read a topic", e))?
                .state
                .clone();
            let last = state.last_sequence;
            // Never before the oldest event retention kept.
            let start = match after {
                Some(after) => after + 1,
                None => last.saturating_sub(n) + 1,
            }
            .max(state.first_sequence);
            let consumer = stream
                .create_consumer(consumer::pull::OrderedConfig {
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: start.max(1),
                    },
                    ..Default::default()
                })
                .await
                .map_err(|e| unavailable("cannot read a topic", e))?;
            let messages = consumer
                .messages()
                .await
                .map_err(|e| unavailable("cannot read a topic", e))?;
            let mut stop = inner.stop.subscribe();
            let events = messages
                .map(|m| {
                    let m = m.map_err(|e| unavailable("cannot read a topic", e))?;
                    let info = m
                        .info()
                        .map_err(|e| unavailable("a message without JetStream metadata", e))?;
                    Ok(TailEvent {
                        id: info.stream_sequence,
                        published_ms: millis(info.published),
                        idempotency_key: header(m.headers.as_ref(), KEY),
                        payload: payload(&m.payload),
                    })
                })
                .take_until(async move { stopped(&mut stop).await });
            if follow {
                return Ok(events.boxed());
            }
            if start > last {
                return Ok(futures::stream::empty().boxed());
            }
            // Without follow, up to the last event there was (or until
            // none comes for a while: retention may take events meanwhile).
            let events: Tail = events.boxed();
            Ok(
                futures::stream::unfold(Some(events), move |state| async move {
                    let mut events = state?;
                    match tokio::time::timeout(REQUEST_TIMEOUT, events.next()).await {
                        Ok(Some(Ok(e))) => {
                            let more = (e.id < last).then_some(events);
                            Some((Ok(e), more))
                        }
                        Ok(Some(Err(e))) => Some((Err(e), None)),
                        Ok(None) | Err(_) => None,
                    }
                })
                .boxed(),
            )
        })
    }

    fn dead(&self, topic: Option<&str>) -> BoxFuture<'static, Result<Vec<DeadLetter>, Error>> {
        let (inner, topic) = (self.inner.clone(), topic.map(str::to_owned));
        Box::pin(async move {
            if let Some(t) = &topic {
                validate_topic(t)?;
            }
            let mut letters: Vec<DeadLetter> = inner
                .dead_letters(topic.as_deref())
                .await?
                .into_iter()
                .map(|(_, l)| l)
                .collect();
            letters.sort_by(|a, b| a.topic.cmp(&b.topic).then(a.id.cmp(&b.id)));
            Ok(letters)
        })
    }

    fn replay(&self, topic: &str, id: Option<u64>) -> BoxFuture<'static, Result<usize, Error>> {
        let (inner, topic) = (self.inner.clone(), topic.to_owned());
        Box::pin(async move {
            let Some(stream) = inner.existing_topic(&topic).await? else {
                return Err(Error::not_found(format!("no topic `{topic}`")));
            };
            let dead_stream = inner
                .js
                .get_stream(DEAD)
                .await
                .map_err(|e| unavailable("cannot read the dead letters", e))?;
            let letters: Vec<(u64, DeadLetter)> = inner
                .dead_letters(Some(&topic))
                .await?
                .into_iter()
                .filter(|(_, l)| id.is_none_or(|id| l.id == id))
                .collect();
            if letters.is_empty() {
                return Err(Error::not_found(match id {
                    Some(i) => format!(
                        "event {i} of topic `{topic}` is not a dead letter (or is being replayed \
                         already); `weft events dead {topic}` lists them"
                    ),
                    None => format!("topic `{topic}` has no dead letters to replay"),
                }));
            }
            let mut replayed = 0;
            for (seq, letter) in letters {
                let event = stream.get_raw_message(letter.id).await.map_err(|e| {
                    unavailable(
                        &format!(
                            "cannot read event {} of `{topic}` (gone with retention?)",
                            letter.id
                        ),
                        e,
                    )
                })?;
                let mut headers = HeaderMap::new();
                headers.insert(EVENT_ID, letter.id.to_string().as_str());
                headers.insert(PUBLISHED, millis(event.time).to_string().as_str());
                let subject = format!(
                    "{REPLAY_SUBJECT}{}",
                    encode_id(&format!("{topic}.{}", letter.group))
                );
                inner
                    .js
                    .publish_with_headers(subject, headers, event.payload)
                    .await
                    .map_err(|e| unavailable("cannot replay a dead letter", e))?
                    .await
                    .map_err(|e| unavailable("cannot replay a dead letter", e))?;
                dead_stream
                    .delete_message(seq)
                    .await
                    .map_err(|e| unavailable("cannot remove a replayed dead letter", e))?;
                replayed += 1;
            }
            Ok(replayed)
        })
    }

    fn stopping(&self) {
        self.inner.stop.send_replace(true);
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.stop.send_replace(true);
            // What this host still holds goes to other hosts at once.
            let keys: Vec<PendingKey> = inner.pending.lock().keys().cloned().collect();
            for key in keys {
                inner.release(&key).await;
            }
        })
    }
}

/// How many events of `stream` were published within `within` of now.
async fn published_since(stream: &Stream, info: &stream::Info, within: Duration) -> u64 {
    if info.state.messages == 0 {
        return 0;
    }
    let since = time::OffsetDateTime::now_utc() - within;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartTime { start_time: since },
            ..Default::default()
        })
        .await;
    match consumer {
        Ok(c) => c.cached_info().num_pending,
        Err(_) => 0,
    }
}

impl Inner {
    /// The key of one of this host's subscribers in `weft_subscribers`.
    fn subscriber_key(&self, topic: &str, group: &str, instance: &str) -> String {
        format!(
            "{}.{}.{}.{}",
            encode_id(&self.host),
            encode_id(topic),
            encode_id(group),
            encode_id(instance)
        )
    }

    /// Writes this host's subscribers (as they are now) to the bucket.
    async fn put_subscribers(&self) {
        let keys: Vec<String> = self
            .subscribers
            .lock()
            .iter()
            .flat_map(|((topic, group), instances)| {
                instances
                    .iter()
                    .map(|i| self.subscriber_key(topic, group, i))
                    .collect::<Vec<_>>()
            })
            .collect();
        for key in keys {
            if let Err(e) = self.subscribers_kv.put(&key, bytes::Bytes::new()).await {
                tracing::debug!(error = %e, "cannot write a subscriber to the cluster");
            }
        }
    }

    /// Every host's subscribers of `topic`, by group.
    async fn cluster_subscribers(&self, topic: &str) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        let Ok(keys) = self.subscribers_kv.keys().await else {
            return out;
        };
        let keys: Vec<String> = keys.filter_map(|k| async { k.ok() }).collect().await;
        for key in keys {
            let parts: Vec<&str> = key.split('.').collect();
            let [_, t, group, instance] = parts.as_slice() else {
                continue;
            };
            if decode_id(t).as_deref() != Some(topic) {
                continue;
            }
            let (Some(group), Some(instance)) = (decode_id(group), decode_id(instance)) else {
                continue;
            };
            out.entry(group).or_default().push(instance);
        }
        for list in out.values_mut() {
            list.sort();
            list.dedup();
        }
        out
    }
}
