//! Notifications: messages for people, stored before they are answered.

use std::sync::Arc;

use weft_core::{Error, Notification};

use crate::backend::NotificationBackend;
use crate::time::now_ms;

/// The host's notifications, kept by its backend.
#[derive(Debug, Clone)]
pub(crate) struct Notifications {
    backend: Arc<dyn NotificationBackend>,
}

impl Notifications {
    pub(crate) fn new(backend: Arc<dyn NotificationBackend>) -> Self {
        Notifications { backend }
    }

    /// Stores a notification and returns it with its id.
    pub(crate) async fn notify(
        &self,
        mut notification: Notification,
    ) -> Result<Notification, Error> {
        if notification.time_ms == 0 {
            notification.time_ms = now_ms();
        }
        let stored = self.backend.add(notification).await?;
        tracing::info!(
            id = stored.id,
            severity = %stored.severity,
            service = %stored.service,
            message = %stored.message,
            "notification"
        );
        Ok(stored)
    }

    /// Notifications with an id above `after`, oldest first; with `limit`,
    /// only the newest `limit` of them.
    pub(crate) async fn list(
        &self,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Notification>, Error> {
        self.backend.list(after, limit).await
    }
}
