//! Delivering to instances: a subscription joins (or starts) its consumer
//! group, and acknowledgements go to the group that delivered.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::stream::StreamExt;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use weft_core::Error;
use weft_core::name::validate_topic;
use weft_host_api::wire::{Ack, DeliveryMode, Subscription};

use super::group::{Core, GroupRecord, group_name};
use super::log::SegmentLog;
use super::runner::{info, run_group};
use super::shared::group_key;
use super::shared::{GroupHandle, Msg};
use super::topic::Topic;
use crate::backend::Deliveries;

impl SegmentLog {
    /// Starts a group's task and lists it in `groups` (the locked map, so
    /// that checking for a group and starting it is one step).
    pub(super) fn spawn_group(
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
    pub(super) fn join(&self, sub: Subscription) -> Result<Deliveries, Error> {
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
                Some((Ok(d), (rx, release)))
            })
            .boxed(),
        )
    }

    /// Hands the outcome of a delivery to the group that delivered it;
    /// the group answers on the receiver once it has recorded it.
    pub(super) fn send_ack(&self, ack: Ack) -> Result<oneshot::Receiver<Result<(), Error>>, Error> {
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
        Ok(rx)
    }
}
