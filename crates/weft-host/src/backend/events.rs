//! The event log as the rest of the host uses it: publishing, consumer
//! groups (subscribe, acknowledge), and what `weft events` shows and does
//! (topics with their groups, the tail of a topic, dead letters, replay).
//!
//! The host holds an `Arc<dyn EventLog>`; the wire service and the HTTP
//! API never know which log is behind it. Every method hands back owned
//! data, futures and streams, so that a log whose state lives in another
//! process (a JetStream stream and its consumers) fits as well as the
//! embedded one, the per-topic segment files in the data dir
//! ([`crate::events::SegmentLog`]).

use std::fmt;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use weft_core::Error;
use weft_host_api::events::{DeadLetter, TailEvent, TopicInfo};
use weft_host_api::wire::{Ack, Delivery, PublishArgs, Published, Subscription};

/// The deliveries of one subscription, until it is dropped (which releases
/// what it had in flight) or the log ends it; an error ends it too.
pub(crate) type Deliveries = BoxStream<'static, Result<Delivery, Error>>;

/// The events of a topic, oldest first, as `weft events tail` shows them.
pub(crate) type Tail = BoxStream<'static, Result<TailEvent, Error>>;

/// Durable topics, consumer groups and dead letters.
pub(crate) trait EventLog: Send + Sync + fmt::Debug {
    /// Stores an event on its topic (created on first use) and resolves
    /// once the event is durable, with its id; a publish whose idempotency
    /// key was seen within the deduplication window resolves with the
    /// first one's id, marked a duplicate.
    fn publish(&self, args: PublishArgs) -> BoxFuture<'static, Result<Published, Error>>;

    /// Subscribes one instance's handler: joins its consumer group (one per
    /// service, handler and topic; per instance for broadcast), or starts
    /// it. Resolves to the group's deliveries to this instance, at most
    /// `max_in_flight` of them unacknowledged.
    fn subscribe(&self, sub: Subscription) -> BoxFuture<'static, Result<Deliveries, Error>>;

    /// Records the outcome of a delivery (an error message when the handler
    /// failed) and resolves once the group has it.
    fn ack(&self, ack: Ack) -> BoxFuture<'static, Result<(), Error>>;

    /// Every topic with its consumer groups, by name.
    fn topics(&self) -> BoxFuture<'static, Result<Vec<TopicInfo>, Error>>;

    /// The events of `topic` after `after` (without it, the last `n`),
    /// then, with `follow`, every new one until the log stops.
    fn tail(
        &self,
        topic: &str,
        after: Option<u64>,
        n: u64,
        follow: bool,
    ) -> BoxFuture<'static, Result<Tail, Error>>;

    /// Dead letters, of one topic or of all, oldest first per topic.
    fn dead(&self, topic: Option<&str>) -> BoxFuture<'static, Result<Vec<DeadLetter>, Error>>;

    /// Delivers dead letters of `topic` to their groups again: the one with
    /// `id`, or every one. Resolves to how many.
    fn replay(&self, topic: &str, id: Option<u64>) -> BoxFuture<'static, Result<usize, Error>>;

    /// The host is stopping: ends follows and subscriptions, so that the
    /// connections carrying them can drain.
    fn stopping(&self);

    /// Stops every consumer group (each keeps its position first) and lets
    /// go of what the log holds open.
    fn close(&self) -> BoxFuture<'static, ()>;
}
