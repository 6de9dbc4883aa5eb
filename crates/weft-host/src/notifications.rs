//! Notifications: messages for people, stored fsync'd as they arrive.

use weft_core::{Error, Notification};

use crate::store::Store;
use crate::time::now_ms;

/// The host's notifications, kept in its store.
#[derive(Debug, Clone)]
pub(crate) struct Notifications {
    store: Store,
}

impl Notifications {
    pub(crate) fn new(store: Store) -> Self {
        Notifications { store }
    }

    /// Stores a notification (fsync'd) and returns it with its id.
    pub(crate) async fn notify(
        &self,
        mut notification: Notification,
    ) -> Result<Notification, Error> {
        if notification.time_ms == 0 {
            notification.time_ms = now_ms();
        }
        let stored = self
            .store
            .blocking(move |s| s.add_notification(notification))
            .await?;
        tracing::info!(
            id = stored.id,
            severity = %stored.severity,
            service = %stored.service,
            message = %stored.message,
            "notification"
        );
        Ok(stored)
    }

    pub(crate) async fn list(
        &self,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Notification>, Error> {
        self.store
            .blocking(move |s| s.notifications(after, limit))
            .await
    }
}
