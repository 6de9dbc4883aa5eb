//! The group runner: each consumer group runs as a task of its own that
//! owns the group's state; the log talks to it by messages.

use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use weft_core::Error;
use weft_host_api::events::GroupInfo;

use super::config::STORE_POSITION_EVERY;
use super::group::{Core, DeadLetter, Sub, group_name};
use super::shared::{GroupHandle, Inner, Msg};
use super::store::{Op, StateWriter, dead_key};
use super::topic::Topic;

pub(super) fn info(core: &Core, last_id: u64) -> GroupInfo {
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
pub(super) async fn run_group(
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
