//! What `weft events` shows and does: topics with their groups, the tail
//! of a topic, dead letters, and replaying them.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::stream::StreamExt;
use weft_core::Error;
use weft_core::name::validate_topic;
use weft_host_api::events::{DeadLetter, TailEvent, TopicInfo};

use super::log::SegmentLog;
use super::shared::Msg;
use super::shared::group_key;
use super::topic::Topic;
use crate::backend::Tail;
use crate::time::now_ms;

impl SegmentLog {
    /// Every topic with its groups.
    pub(super) fn topic_infos(&self) -> Vec<TopicInfo> {
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
    pub(super) fn tail_events(
        &self,
        topic: &str,
        after: Option<u64>,
        n: u64,
        follow: bool,
    ) -> Result<Tail, Error> {
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
    pub(super) fn dead_letters(&self, topic: Option<&str>) -> Vec<DeadLetter> {
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
    pub(super) fn replay_dead(&self, topic: &str, id: Option<u64>) -> Result<usize, Error> {
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
}
