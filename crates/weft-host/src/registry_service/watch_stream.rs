//! The registry's watch stream: a snapshot, then every change.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};
use weft_core::Error;
use weft_core::codec::Codec;
use weft_registry::WatchEvent;

use super::encode;
use crate::state::Shared;

/// Where a watch stream is.
enum Watch {
    /// About to send a snapshot and follow from `rx`, taken with it under
    /// one lock so that no event falls between them.
    Start,
    Following(broadcast::Receiver<WatchEvent>),
}

/// A snapshot, then every registry event; a watcher that falls too far
/// behind gets a fresh snapshot instead of the events it missed.
pub(super) fn watch_registry(
    shared: Arc<Shared>,
    codec: Codec,
    mut stop: watch::Receiver<bool>,
) -> BoxStream<'static, Result<Bytes, Error>> {
    let snapshot = |shared: &Shared| {
        let registry = shared.registry.lock();
        (registry.subscribe(), registry.snapshot())
    };
    stream::unfold(Watch::Start, move |state| {
        let shared = shared.clone();
        async move {
            match state {
                Watch::Start => {
                    let (rx, snap) = snapshot(&shared);
                    Some((encode(codec, &snap), Watch::Following(rx)))
                }
                Watch::Following(mut rx) => match rx.recv().await {
                    Ok(event) => Some((encode(codec, &event), Watch::Following(rx))),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(
                            missed,
                            "a watcher fell behind; sending it a fresh snapshot"
                        );
                        let (rx, snap) = snapshot(&shared);
                        Some((encode(codec, &snap), Watch::Following(rx)))
                    }
                    Err(RecvError::Closed) => None,
                },
            }
        }
    })
    .take_until(async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .boxed()
}
