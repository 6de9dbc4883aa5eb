//! A consumer group's bookkeeping: which events are delivered to which
//! subscription, which are acknowledged, which wait for a retry, and the
//! committed position. Pure state: the actor in `mod.rs` feeds it messages,
//! the clock and the topic, and persists what it says changed.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use weft_core::Error;
use weft_core::backoff::Backoff;
use weft_host_api::wire::{Delivery, DeliveryMode};
// A dead letter is stored as `weft events dead` shows it.
pub(crate) use weft_host_api::events::DeadLetter;

use super::topic::{Event, Topic};

/// The first retry waits this long; each further one twice as long.
const BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Retries never wait longer than this.
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// After `n` failed attempts, attempt `n + 1` waits `BACKOFF.delay(n)`.
const BACKOFF: Backoff = Backoff::new(BACKOFF_BASE, BACKOFF_MAX);

/// Where a group reads events from; [`Topic`] in the host, a vector in tests.
pub(crate) trait Source {
    /// The oldest retained id.
    fn first_id(&self) -> u64;
    /// The last durable id.
    fn last_id(&self) -> u64;
    /// The event `id`, if retained.
    fn read(&self, id: u64) -> Result<Option<Arc<Event>>, Error>;
}

impl Source for Topic {
    fn first_id(&self) -> u64 {
        Topic::first_id(self)
    }
    fn last_id(&self) -> u64 {
        Topic::last_id(self)
    }
    fn read(&self, id: u64) -> Result<Option<Arc<Event>>, Error> {
        Topic::read(self, id)
    }
}

/// A group's durable state, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GroupRecord {
    pub(crate) topic: String,
    pub(crate) service: String,
    pub(crate) handler: String,
    /// Set for broadcast groups: one group per instance.
    #[serde(default)]
    pub(crate) instance: Option<String>,
    pub(crate) mode: DeliveryMode,
    pub(crate) max_attempts: u32,
    /// Every id up to this one is acknowledged or dead-lettered.
    pub(crate) position: u64,
    /// Ids above the position that are done too.
    #[serde(default)]
    pub(crate) done_above: Vec<u64>,
    /// Dead letters being delivered again.
    #[serde(default)]
    pub(crate) replaying: Vec<u64>,
}

/// One subscribe stream of the group.
#[derive(Debug)]
pub(crate) struct Sub {
    pub(crate) instance: String,
    pub(crate) max_in_flight: u32,
    pub(crate) in_flight: u32,
    pub(crate) tx: mpsc::UnboundedSender<Delivery>,
}

#[derive(Debug)]
struct Flight {
    sub: u64,
    attempt: u32,
}

#[derive(Debug, Clone)]
struct Retry {
    /// The attempt the next delivery is.
    attempt: u32,
}

/// How one event ended for the group.
#[derive(Debug)]
enum Outcome {
    Acked,
    /// Not retained any more (retention removed it).
    Gone,
    Dead {
        attempts: u32,
        error: String,
    },
}

/// A consumer group.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) record: GroupRecord,
    done_above: BTreeSet<u64>,
    /// The next id never looked at.
    next: u64,
    in_flight: HashMap<u64, Flight>,
    /// Ready to deliver now, lowest id first.
    due: BTreeMap<u64, Retry>,
    /// Waiting for their backoff.
    timers: BTreeMap<(Instant, u64), Retry>,
    /// Ordered mode: which id holds each key, and the reverse.
    holders: HashMap<String, u64>,
    held: HashMap<u64, String>,
    /// Ordered mode: events whose key is held by an earlier one.
    parked: HashMap<u64, String>,
    parked_by_key: HashMap<String, VecDeque<u64>>,
    replaying: BTreeSet<u64>,
    subs: BTreeMap<u64, Sub>,
    last_pick: u64,
    /// The record changed and must be stored.
    pub(crate) dirty: bool,
    /// Dead letters to store (new ones, or replays that failed again).
    pub(crate) dead_out: Vec<DeadLetter>,
    /// Replayed dead letters that were acknowledged: remove them.
    pub(crate) replayed_ok: Vec<u64>,
    /// Dead letters of this group not being replayed.
    pub(crate) dead_count: u64,
}

/// The ordering key of an event: the payload's `field` as a string (other
/// JSON values by their JSON text; a missing field counts as `null`).
pub(crate) fn order_key(payload: &serde_json::Value, field: &str) -> String {
    match payload.get(field) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => "null".to_owned(),
    }
}

impl Core {
    /// A group resuming from its stored record.
    pub(crate) fn new(record: GroupRecord, dead_count: u64) -> Core {
        let done_above: BTreeSet<u64> = record
            .done_above
            .iter()
            .copied()
            .filter(|&id| id > record.position)
            .collect();
        let replaying: BTreeSet<u64> = record.replaying.iter().copied().collect();
        let due = replaying
            .iter()
            .map(|&id| (id, Retry { attempt: 1 }))
            .collect();
        Core {
            next: record.position + 1,
            done_above,
            in_flight: HashMap::new(),
            due,
            timers: BTreeMap::new(),
            holders: HashMap::new(),
            held: HashMap::new(),
            parked: HashMap::new(),
            parked_by_key: HashMap::new(),
            replaying,
            subs: BTreeMap::new(),
            last_pick: 0,
            dirty: false,
            dead_out: Vec::new(),
            replayed_ok: Vec::new(),
            dead_count,
            record,
        }
    }

    /// The group's name: `service.handler`, plus `@instance` for broadcast.
    pub(crate) fn name(&self) -> String {
        group_name(&self.record)
    }

    /// The record to store, brought up to date.
    pub(crate) fn snapshot(&mut self) -> GroupRecord {
        self.record.done_above = self.done_above.iter().copied().collect();
        self.record.replaying = self.replaying.iter().copied().collect();
        self.record.clone()
    }

    pub(crate) fn subscribe(&mut self, id: u64, sub: Sub) {
        self.subs.insert(id, sub);
    }

    /// The instances subscribed, one entry per subscribe stream.
    pub(crate) fn instances(&self) -> Vec<String> {
        self.subs.values().map(|s| s.instance.clone()).collect()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Events not yet done: the backlog.
    pub(crate) fn backlog(&self, last_id: u64) -> u64 {
        last_id
            .saturating_sub(self.record.position)
            .saturating_sub(self.done_above.len() as u64)
    }

    /// When the next retry is due.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// A subscription ended: what it had in flight is delivered again, to
    /// another subscription, at once (it counts as an attempt).
    pub(crate) fn unsubscribe(&mut self, id: u64, now: Instant) {
        let instance = self.subs.remove(&id).map(|s| s.instance);
        let lost: Vec<(u64, u32)> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.sub == id)
            .map(|(&e, f)| (e, f.attempt))
            .collect();
        if !lost.is_empty() {
            tracing::info!(
                topic = %self.record.topic,
                group = %self.name(),
                instance = instance.as_deref().unwrap_or("?"),
                events = lost.len(),
                "a subscription ended with events in flight; delivering them again"
            );
        }
        for (event, attempt) in lost {
            self.in_flight.remove(&event);
            self.fail(
                event,
                attempt,
                "the instance disconnected before acknowledging it".to_owned(),
                now,
                false,
            );
        }
    }

    /// An acknowledgement (`error: None`) or a failure report. Returns
    /// whether the id meant something to the group.
    pub(crate) fn ack(
        &mut self,
        id: u64,
        error: Option<String>,
        now: Instant,
        last_id: u64,
    ) -> bool {
        if let Some(f) = self.in_flight.remove(&id) {
            if let Some(s) = self.subs.get_mut(&f.sub) {
                s.in_flight = s.in_flight.saturating_sub(1);
            }
            match error {
                None => self.finish(id, Outcome::Acked),
                Some(e) => self.fail(id, f.attempt, e, now, true),
            }
            return true;
        }
        if error.is_some() || id == 0 || id > last_id {
            return false;
        }
        // A late acknowledgement of an event that is waiting to be delivered
        // again (its instance lost the connection, or the host restarted
        // meanwhile): the work was done.
        let waiting = self.due.remove(&id).is_some() || {
            let key = self.timers.keys().find(|(_, e)| *e == id).copied();
            key.is_some_and(|k| self.timers.remove(&k).is_some())
        };
        if waiting {
            self.finish(id, Outcome::Acked);
            return true;
        }
        if let Some(key) = self.parked.remove(&id) {
            if let Some(q) = self.parked_by_key.get_mut(&key) {
                q.retain(|&e| e != id);
            }
            self.finish(id, Outcome::Acked);
            return true;
        }
        if id >= self.next && !self.done_above.contains(&id) {
            self.finish(id, Outcome::Acked);
            return true;
        }
        false
    }

    /// Delivers a dead letter of this group again.
    pub(crate) fn replay(&mut self, id: u64) -> bool {
        if self.replaying.contains(&id) || self.in_flight.contains_key(&id) {
            return false;
        }
        self.replaying.insert(id);
        self.due.insert(id, Retry { attempt: 1 });
        self.dead_count = self.dead_count.saturating_sub(1);
        self.dirty = true;
        true
    }

    fn fail(&mut self, id: u64, attempt: u32, error: String, now: Instant, wait: bool) {
        if attempt >= self.record.max_attempts.max(1) {
            self.finish(
                id,
                Outcome::Dead {
                    attempts: attempt,
                    error,
                },
            );
            return;
        }
        let retry = Retry {
            attempt: attempt + 1,
        };
        if wait {
            self.timers
                .insert((now + BACKOFF.delay(attempt), id), retry);
        } else {
            self.due.insert(id, retry);
        }
    }

    fn finish(&mut self, id: u64, outcome: Outcome) {
        let replay = self.replaying.remove(&id);
        if let Outcome::Dead { attempts, error } = &outcome {
            self.dead_out.push(DeadLetter {
                topic: self.record.topic.clone(),
                id,
                group: self.name(),
                attempts: *attempts,
                error: error.clone(),
                time_ms: crate::time::now_ms(),
                replaying: false,
            });
            self.dead_count += 1;
        } else if replay {
            self.replayed_ok.push(id);
        }
        if replay {
            self.dirty = true;
        }
        if id > self.record.position {
            self.done_above.insert(id);
            while self.done_above.remove(&(self.record.position + 1)) {
                self.record.position += 1;
            }
            self.next = self.next.max(self.record.position + 1);
            self.dirty = true;
        }
        if let Some(key) = self.held.remove(&id) {
            self.holders.remove(&key);
            let mut emptied = false;
            if let Some(q) = self.parked_by_key.get_mut(&key) {
                if let Some(next) = q.pop_front() {
                    self.parked.remove(&next);
                    self.holders.insert(key.clone(), next);
                    self.held.insert(next, key.clone());
                    self.due.insert(next, Retry { attempt: 1 });
                }
                emptied = q.is_empty();
            }
            if emptied {
                self.parked_by_key.remove(&key);
            }
        }
    }

    /// The subscription to give the next event to: the one with the most
    /// free credit, ties broken round robin.
    fn pick(&mut self) -> Option<u64> {
        let mut best: Option<(u64, u32)> = None;
        let after = self.subs.range(self.last_pick + 1..);
        let before = self.subs.range(..=self.last_pick);
        for (&id, s) in after.chain(before) {
            let free = s.max_in_flight.max(1).saturating_sub(s.in_flight);
            if free > 0 && best.is_none_or(|(_, f)| free > f) {
                best = Some((id, free));
            }
        }
        let (id, _) = best?;
        self.last_pick = id;
        Some(id)
    }

    /// Hands out every event it can: retries that are due first, then new
    /// events, as far as the subscriptions' credit allows.
    pub(crate) fn pump(&mut self, now: Instant, src: &dyn Source) {
        while let Some((&(at, id), _)) = self.timers.first_key_value() {
            if at > now {
                break;
            }
            if let Some(r) = self.timers.remove(&(at, id)) {
                self.due.insert(id, r);
            }
        }
        let first = src.first_id();
        if self.record.position + 1 < first {
            tracing::warn!(
                topic = %self.record.topic,
                group = %self.name(),
                skipped = first - 1 - self.record.position,
                "retention removed events this group had not handled yet; it goes on from the oldest retained one"
            );
            self.record.position = first - 1;
            let position = self.record.position;
            self.done_above.retain(|&id| id > position);
            self.next = self.next.max(first);
            self.dirty = true;
        }
        let last = src.last_id();
        loop {
            if !self.due.is_empty() || self.next <= last {
                // Only look further with someone to give it to.
            } else {
                break;
            }
            let Some(sub) = self.pick() else { break };
            let (id, attempt, event) = if let Some((id, r)) = self.due.pop_first() {
                (id, r.attempt, None)
            } else {
                let id = self.next;
                self.next += 1;
                if id <= self.record.position || self.done_above.contains(&id) {
                    continue;
                }
                let event = match src.read(id) {
                    Ok(Some(e)) => e,
                    Ok(None) => {
                        self.finish(id, Outcome::Gone);
                        continue;
                    }
                    Err(e) => {
                        self.finish(
                            id,
                            Outcome::Dead {
                                attempts: 0,
                                error: e.message().to_owned(),
                            },
                        );
                        continue;
                    }
                };
                if let DeliveryMode::Ordered { field } = &self.record.mode {
                    let key = order_key(&event.payload, field);
                    if self.holders.contains_key(&key) {
                        self.parked.insert(id, key.clone());
                        self.parked_by_key.entry(key).or_default().push_back(id);
                        continue;
                    }
                    self.holders.insert(key.clone(), id);
                    self.held.insert(id, key);
                }
                (id, 1, Some(event))
            };
            let event = match event {
                Some(e) => e,
                None => match src.read(id) {
                    Ok(Some(e)) => e,
                    Ok(None) => {
                        self.finish(id, Outcome::Gone);
                        continue;
                    }
                    Err(e) => {
                        self.finish(
                            id,
                            Outcome::Dead {
                                attempts: attempt,
                                error: e.message().to_owned(),
                            },
                        );
                        continue;
                    }
                },
            };
            let delivery = Delivery {
                topic: self.record.topic.clone(),
                id,
                payload: event.payload.clone(),
                attempt,
                published_ms: event.published_ms,
            };
            let Some(s) = self.subs.get_mut(&sub) else {
                self.due.insert(id, Retry { attempt });
                continue;
            };
            if s.tx.send(delivery).is_err() {
                // The stream is gone; its unsubscribe is on its way.
                self.subs.remove(&sub);
                self.due.insert(id, Retry { attempt });
                continue;
            }
            s.in_flight += 1;
            self.in_flight.insert(id, Flight { sub, attempt });
        }
    }
}

/// The name of a group: `service.handler`, plus `@instance` for broadcast.
pub(crate) fn group_name(r: &GroupRecord) -> String {
    match &r.instance {
        Some(i) => format!("{}.{}@{i}", r.service, r.handler),
        None => format!("{}.{}", r.service, r.handler),
    }
}

#[cfg(test)]
mod tests {
    use parking_lot::Mutex;
    use serde_json::json;

    use super::*;

    #[derive(Default)]
    struct Vec_(Mutex<Vec<Arc<Event>>>);

    impl Vec_ {
        fn push(&self, payload: serde_json::Value) {
            let mut v = self.0.lock();
            let id = v.len() as u64 + 1;
            v.push(Arc::new(Event {
                id,
                published_ms: id,
                key: None,
                payload,
            }));
        }
    }

    impl Source for Vec_ {
        fn first_id(&self) -> u64 {
            1
        }
        fn last_id(&self) -> u64 {
            self.0.lock().len() as u64
        }
        fn read(&self, id: u64) -> Result<Option<Arc<Event>>, Error> {
            Ok(self.0.lock().get(id as usize - 1).cloned())
        }
    }

    fn core(mode: DeliveryMode, max_attempts: u32) -> Core {
        Core::new(
            GroupRecord {
                topic: "t".into(),
                service: "s".into(),
                handler: "h".into(),
                instance: None,
                mode,
                max_attempts,
                position: 0,
                done_above: vec![],
                replaying: vec![],
            },
            0,
        )
    }

    fn sub(core: &mut Core, id: u64, credit: u32) -> mpsc::UnboundedReceiver<Delivery> {
        let (tx, rx) = mpsc::unbounded_channel();
        core.subscribe(
            id,
            Sub {
                instance: format!("i{id}"),
                max_in_flight: credit,
                in_flight: 0,
                tx,
            },
        );
        rx
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> Vec<(u64, u32)> {
        let mut out = vec![];
        while let Ok(d) = rx.try_recv() {
            out.push((d.id, d.attempt));
        }
        out
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(BACKOFF.delay(1), Duration::from_millis(100));
        assert_eq!(BACKOFF.delay(2), Duration::from_millis(200));
        assert_eq!(BACKOFF.delay(40), BACKOFF_MAX);
    }

    #[test]
    fn pool_spreads_by_credit_and_commits_contiguous_acks() {
        let src = Vec_::default();
        for n in 0..6 {
            src.push(json!({ "n": n }));
        }
        let mut g = core(DeliveryMode::Pool, 3);
        let mut a = sub(&mut g, 1, 2);
        let mut b = sub(&mut g, 2, 2);
        let now = Instant::now();
        g.pump(now, &src);
        let (da, db) = (drain(&mut a), drain(&mut b));
        assert_eq!(da.len() + db.len(), 4, "credit 2 each");
        assert!(!da.is_empty() && !db.is_empty());
        assert!(g.ack(2, None, now, 6));
        assert_eq!(g.record.position, 0, "1 is not acked yet");
        assert!(g.ack(1, None, now, 6));
        assert_eq!(g.record.position, 2);
        g.pump(now, &src);
        assert_eq!(drain(&mut a).len() + drain(&mut b).len(), 2);
        assert_eq!(g.backlog(6), 4);
    }

    #[test]
    fn failures_retry_with_backoff_then_dead_letter_and_replay() {
        let src = Vec_::default();
        src.push(json!({}));
        let mut g = core(DeliveryMode::Pool, 2);
        let mut a = sub(&mut g, 1, 5);
        let t0 = Instant::now();
        g.pump(t0, &src);
        assert_eq!(drain(&mut a), vec![(1, 1)]);
        g.ack(1, Some("boom".into()), t0, 1);
        g.pump(t0, &src);
        assert!(drain(&mut a).is_empty(), "waits for the backoff");
        assert_eq!(g.next_timer(), Some(t0 + BACKOFF.delay(1)));
        g.pump(t0 + BACKOFF.delay(1), &src);
        assert_eq!(drain(&mut a), vec![(1, 2)]);
        g.ack(1, Some("boom again".into()), t0, 1);
        assert_eq!(g.dead_out.len(), 1);
        assert_eq!(g.dead_out[0].error, "boom again");
        assert_eq!(g.record.position, 1, "a dead letter lets the group move on");
        assert!(g.replay(1));
        g.pump(t0, &src);
        assert_eq!(drain(&mut a), vec![(1, 1)]);
        g.ack(1, None, t0, 1);
        assert_eq!(g.replayed_ok, vec![1]);
    }

    #[test]
    fn a_disconnect_hands_deliveries_to_another_subscription() {
        let src = Vec_::default();
        src.push(json!({}));
        src.push(json!({}));
        let mut g = core(DeliveryMode::Pool, 5);
        let mut a = sub(&mut g, 1, 10);
        let now = Instant::now();
        g.pump(now, &src);
        assert_eq!(drain(&mut a).len(), 2);
        let mut b = sub(&mut g, 2, 10);
        g.unsubscribe(1, now);
        g.pump(now, &src);
        assert_eq!(drain(&mut b), vec![(1, 2), (2, 2)]);
    }

    #[test]
    fn ordered_holds_back_later_events_of_a_busy_key() {
        let src = Vec_::default();
        for (k, n) in [("a", 1), ("b", 2), ("a", 3), ("a", 4), ("c", 5)] {
            src.push(json!({ "k": k, "n": n }));
        }
        let mut g = core(DeliveryMode::Ordered { field: "k".into() }, 3);
        let mut a = sub(&mut g, 1, 10);
        let mut b = sub(&mut g, 2, 10);
        let now = Instant::now();
        g.pump(now, &src);
        let mut got: Vec<u64> = drain(&mut a)
            .into_iter()
            .chain(drain(&mut b))
            .map(|(id, _)| id)
            .collect();
        got.sort();
        assert_eq!(got, vec![1, 2, 5], "3 and 4 wait for 1");
        g.ack(1, None, now, 5);
        g.pump(now, &src);
        let got: Vec<u64> = drain(&mut a)
            .into_iter()
            .chain(drain(&mut b))
            .map(|(id, _)| id)
            .collect();
        assert_eq!(got, vec![3]);
        g.ack(3, Some("retry me".into()), now, 5);
        g.pump(now + Duration::from_secs(1), &src);
        let got: Vec<(u64, u32)> = drain(&mut a).into_iter().chain(drain(&mut b)).collect();
        assert_eq!(got, vec![(3, 2)], "4 still waits for 3's retry");
    }
}
