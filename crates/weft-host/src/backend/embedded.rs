//! The embedded backends: the host's own store, on this machine only.

use futures::future::BoxFuture;
use weft_core::{Error, Notification};

use super::NotificationBackend;
use crate::store::Store;

/// Notifications in the host's store, fsync'd as they arrive.
#[derive(Debug)]
pub(super) struct Notifications {
    store: Store,
}

impl Notifications {
    pub(super) fn new(store: Store) -> Self {
        Notifications { store }
    }
}

impl NotificationBackend for Notifications {
    fn add(&self, notification: Notification) -> BoxFuture<'static, Result<Notification, Error>> {
        let store = self.store.clone();
        Box::pin(async move {
            store
                .blocking(move |s| s.add_notification(notification))
                .await
        })
    }

    fn list(
        &self,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> BoxFuture<'static, Result<Vec<Notification>, Error>> {
        let store = self.store.clone();
        Box::pin(async move { store.blocking(move |s| s.notifications(after, limit)).await })
    }
}
