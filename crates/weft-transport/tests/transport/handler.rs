//! The handler the transport's tests serve: entrypoints that answer,
//! fail, hang, stream, panic or wait to be released, and channels that tell
//! the test what the server did with them.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Notify, mpsc};
use weft_core::Error;
use weft_transport::{Handler, PeerInfo, Reply};
use weft_wire::{Codec, Request};

/// Signals on a channel when dropped: shows that the server dropped a handler future.
struct DropSignal(String, mpsc::UnboundedSender<String>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.1.send(self.0.clone());
    }
}

/// Entrypoints: `echo`, `fail` (application error), `hang` (never answers), `slow`
/// (answers when `release` is notified), `stream` (payload = item count as text),
/// `stream_fail` (two items then an error), `big` (reply of `payload` bytes).
pub(crate) struct TestHandler {
    pub(crate) started: mpsc::UnboundedSender<String>,
    pub(crate) dropped: mpsc::UnboundedSender<String>,
    pub(crate) disconnected: mpsc::UnboundedSender<u64>,
    pub(crate) release: Arc<Notify>,
}

pub(crate) struct Events {
    pub(crate) started: mpsc::UnboundedReceiver<String>,
    pub(crate) dropped: mpsc::UnboundedReceiver<String>,
    pub(crate) disconnected: mpsc::UnboundedReceiver<u64>,
    pub(crate) release: Arc<Notify>,
}

pub(crate) fn handler() -> (Arc<TestHandler>, Events) {
    let (started_tx, started) = mpsc::unbounded_channel();
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let (disc_tx, disconnected) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    (
        Arc::new(TestHandler {
            started: started_tx,
            dropped: dropped_tx,
            disconnected: disc_tx,
            release: Arc::clone(&release),
        }),
        Events {
            started,
            dropped,
            disconnected,
            release,
        },
    )
}

impl Handler for TestHandler {
    fn call(&self, request: Request, _codec: Codec, _peer: &PeerInfo) -> Reply {
        let name = String::from_utf8_lossy(&request.payload).into_owned();
        let payload = request.payload;
        let started = self.started.clone();
        match request.headers.entrypoint.as_str() {
            "echo" => Reply::Unary(Box::pin(async move { Ok(payload) })),
            "fail" => Reply::Unary(Box::pin(async move {
                Err(Error::application("OutOfDice", "no dice left"))
            })),
            "hang" => {
                let guard = DropSignal(name.clone(), self.dropped.clone());
                Reply::Unary(Box::pin(async move {
                    let _guard = guard;
                    let _ = started.send(name);
                    futures::future::pending::<()>().await;
                    Ok(Bytes::new())
                }))
            }
            "slow" => {
                let release = Arc::clone(&self.release);
                Reply::Unary(Box::pin(async move {
                    let notified = release.notified();
                    let _ = started.send(name);
                    notified.await;
                    Ok(payload)
                }))
            }
            "stream" => {
                let n: usize = name.parse().unwrap_or(0);
                Reply::Stream(
                    futures::stream::iter(0..n)
                        .map(|i| Ok(Bytes::from(i.to_string())))
                        .boxed(),
                )
            }
            "stream_fail" => Reply::Stream(
                futures::stream::iter([
                    Ok(Bytes::from_static(b"a")),
                    Ok(Bytes::from_static(b"b")),
                    Err(Error::internal("stream broke")),
                    Ok(Bytes::from_static(b"never")),
                ])
                .boxed(),
            ),
            "yield" => Reply::Unary(Box::pin(async move {
                // Not ready on the first poll: answered from a task of its own.
                tokio::task::yield_now().await;
                Ok(payload)
            })),
            "panic" => Reply::Unary(Box::pin(async move { panic!("the handler broke") })),
            "panic_later" => Reply::Unary(Box::pin(async move {
                tokio::task::yield_now().await;
                panic!("the handler broke later")
            })),
            "big" => {
                let n: usize = name.parse().unwrap_or(0);
                Reply::Unary(Box::pin(async move { Ok(Bytes::from(vec![b'x'; n])) }))
            }
            other => {
                let other = other.to_owned();
                Reply::Unary(Box::pin(async move {
                    Err(Error::not_found(format!("no entrypoint {other}")))
                }))
            }
        }
    }

    fn disconnected(&self, peer: &PeerInfo) {
        let _ = self.disconnected.send(peer.conn_id);
    }
}
