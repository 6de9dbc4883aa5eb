//! A transport server for tests that bring their own handler.

use std::sync::Arc;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use weft_transport::{Address, Handler, Listener, ServerOptions, serve};

use crate::within;

/// [`weft_transport::serve`] on a task, for a handler written by the test
/// (a stand-in host, a service that misbehaves on purpose). Shut down
/// gracefully when dropped.
///
/// ```no_run
/// # async fn example(handler: std::sync::Arc<dyn weft_transport::Handler>) {
/// use weft_test_support::TestServer;
///
/// let server = TestServer::tcp(handler).await;
/// let conn = weft_transport::Connection::connect(server.addr(), &Default::default())
///     .await
///     .unwrap();
/// # drop(conn);
/// server.stop().await;
/// # }
/// ```
#[derive(Debug)]
pub struct TestServer {
    addr: Address,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Serves `handler` on `addr` (a port or socket path of 0 or a fresh
    /// path: the bound address is [`addr`](Self::addr)).
    pub async fn start(addr: &Address, handler: Arc<dyn Handler>, opts: ServerOptions) -> Self {
        let listener = Listener::bind(addr)
            .await
            .unwrap_or_else(|e| panic!("cannot bind {addr}: {e}"));
        let addr = listener.local_address();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, handler, opts, async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Serves `handler` on 127.0.0.1:0 with default options.
    pub async fn tcp(handler: Arc<dyn Handler>) -> Self {
        let any = "127.0.0.1:0".parse().expect("a TCP address");
        Self::start(&any, handler, ServerOptions::default()).await
    }

    /// Where the server listens.
    pub fn addr(&self) -> &Address {
        &self.addr
    }

    /// Whether `serve` has returned.
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Signals shutdown without waiting for it: connections are told to go
    /// away and calls in flight are drained.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down and waits (bounded) until `serve` returned, which must be
    /// without an error.
    pub async fn stop(mut self) {
        self.begin_shutdown();
        if let Some(task) = self.task.take() {
            within("the server to stop", task)
                .await
                .expect("the server task does not panic")
                .expect("the server stops without an error");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}
