use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use weft_core::{Code, Error};
use weft_wire::{
    Codec, CodecSet, DEFAULT_MAX_FRAME_SIZE, Decoded, Frame, FrameDecoder, FrameKind, Preface,
    Request, ServerHello, WireError, negotiate,
};

use crate::client::READ_CHUNK;
use crate::io::Stream;
use crate::writer::{Flush, SendError, Writer};
use crate::{Address, Listener};

/// How long a client may take to send its preface.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection may take to flush what is queued for a slow reader.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// What a request gets once the connection is draining.
const SHUTTING_DOWN: &str = "the instance is shutting down; retry";

/// The server side of one call: the dispatch table of a service implements it.
///
/// ```
/// use bytes::Bytes;
/// use weft_transport::{Handler, PeerInfo, Reply};
/// use weft_wire::{Codec, Request};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     fn call(&self, request: Request, _codec: Codec, _peer: &PeerInfo) -> Reply {
///         Reply::Unary(Box::pin(async move { Ok(request.payload) }))
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Called on the connection's reader task for every request: must return at once
    /// (do the work in the returned future). A unary future is polled once right away on
    /// the reader task, and answered at once if it is ready; otherwise it goes on as a
    /// task of its own, as a stream always does. So a handler must not block in its first
    /// poll any more than anywhere else. The future is dropped when the caller cancels,
    /// the deadline in `request.headers.timeout` passes, or the connection dies.
    fn call(&self, request: Request, codec: Codec, peer: &PeerInfo) -> Reply;

    /// The connection `peer.conn_id` closed (the host uses this to evict an instance whose
    /// process died).
    fn disconnected(&self, _peer: &PeerInfo) {}
}

/// What a [`Handler`] answers a request with.
pub enum Reply {
    /// One payload (or an error).
    Unary(BoxFuture<'static, Result<Bytes, Error>>),
    /// A server stream: each payload is sent as it is produced; an error ends the stream.
    Stream(BoxStream<'static, Result<Bytes, Error>>),
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Reply::Unary(_) => "Reply::Unary(..)",
            Reply::Stream(_) => "Reply::Stream(..)",
        })
    }
}

/// Who is on the other end of a server connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    /// Unique (in this process) id of the connection.
    pub conn_id: u64,
    /// The remote socket address, e.g. `"127.0.0.1:51234"`, `"unix:/path"` or `"memory"`.
    pub remote: String,
    /// The mesh credential the client presented in its preface.
    pub credential: Option<String>,
}

/// How to serve connections.
///
/// ```
/// use std::sync::Arc;
/// let opts = weft_transport::ServerOptions {
///     authenticate: Some(Arc::new(|credential: Option<&str>| match credential {
///         Some("mesh-token") => Ok(()),
///         _ => Err("wrong or missing mesh credential; set WEFT_TOKEN".to_owned()),
///     })),
///     ..Default::default()
/// };
/// # drop(opts);
/// ```
#[derive(Clone)]
pub struct ServerOptions {
    /// The payload codecs accepted. Default: all.
    pub codecs: CodecSet,
    /// The largest frame accepted; the smaller of both sides' limits applies.
    /// Default: [`weft_wire::DEFAULT_MAX_FRAME_SIZE`]; with less than
    /// [`weft_wire::MIN_MAX_FRAME_SIZE`] every client is rejected, told why.
    pub max_frame_size: u32,
    /// Checks the client's mesh credential; `Err(reason)` rejects the connection with that
    /// reason (which should say what to do). `None` accepts everyone.
    #[allow(clippy::type_complexity)]
    pub authenticate: Option<Arc<dyn Fn(Option<&str>) -> Result<(), String> + Send + Sync>>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            codecs: CodecSet::ALL,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            authenticate: None,
        }
    }
}

impl fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerOptions")
            .field("codecs", &self.codecs)
            .field("max_frame_size", &self.max_frame_size)
            .field("authenticate", &self.authenticate.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// State shared by a connection's reader and its call tasks.
struct ServerConn {
    writer: Arc<Writer>,
    codec: Codec,
    calls: Mutex<InFlight>,
    /// Signalled when the last call finishes while draining.
    drained: Notify,
}

#[derive(Default)]
struct InFlight {
    /// Running call tasks by call id, with a sequence number so a finishing task never
    /// removes a newer task that reused its id. The handle is `None` while the task is
    /// being spawned (outside the lock: a runtime that is shutting down drops the task,
    /// and with it its `Finish`, inside `spawn`).
    tasks: HashMap<u64, (u64, Option<AbortHandle>)>,
    next_seq: u64,
    draining: bool,
}

/// Removes a call task's entry when the task ends, however it ends.
struct Finish {
    conn: Arc<ServerConn>,
    id: u64,
    seq: u64,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let mut calls = self.conn.calls.lock();
        if matches!(calls.tasks.get(&self.id), Some((seq, _)) if *seq == self.seq) {
            calls.tasks.remove(&self.id);
        }
        let drained = calls.draining && calls.tasks.is_empty();
        drop(calls);
        if drained {
            self.conn.drained.notify_one();
        }
    }
}

/// Aborts a call task taken out of [`InFlight::tasks`]; never under its lock, because
/// aborting may drop the task, whose `Finish` takes the lock.
fn abort(entry: Option<(u64, Option<AbortHandle>)>) {
    if let Some((_, Some(task))) = entry {
        task.abort();
    }
}

fn panicked() -> Error {
    Error::internal("the handler panicked; see the service's logs")
}

impl ServerConn {
    fn send_error(&self, id: u64, err: &Error, flush: Flush) {
        let payload = weft_core::codec::encode(self.codec, err).unwrap_or_default();
        let _ = self.writer.send(Frame::Error { id, payload }, flush);
    }

    /// Sends an answer frame; one over the frame limit becomes an error for the caller.
    /// Returns whether the frame was sent.
    fn send_answer(&self, frame: Frame, flush: Flush) -> bool {
        let id = frame.id();
        match self.writer.send(frame, flush) {
            Ok(()) => true,
            Err(SendError::Encode(WireError::FrameTooLarge { len, max })) => {
                self.send_error(
                    id,
                    &Error::resource_exhausted(format!(
                        "the reply of {len} bytes exceeds the {max}-byte frame limit; return less data (page or stream it) or raise max_frame_size on both sides"
                    )),
                    flush,
                );
                false
            }
            Err(SendError::Encode(e)) => {
                self.send_error(
                    id,
                    &Error::internal(format!("cannot encode the reply: {e}")),
                    flush,
                );
                false
            }
            Err(SendError::Closed(_)) => false,
        }
    }

    fn send_result(&self, id: u64, result: Result<Bytes, Error>, flush: Flush) {
        match result {
            Ok(payload) => {
                self.send_answer(Frame::Response { id, payload }, flush);
            }
            Err(e) => self.send_error(id, &e, flush),
        }
    }

    /// How soon an answer from a call task must leave: at once when it is the only call
    /// running, else with the others' answers.
    fn task_flush(&self) -> Flush {
        if self.calls.lock().tasks.len() <= 1 {
            Flush::Now
        } else {
            Flush::Soon
        }
    }

    /// Starts answering `request`; called by the reader, which flushes the writer after
    /// each batch of frames it read.
    fn on_request(self: &Arc<Self>, request: Request, handler: &dyn Handler, peer: &PeerInfo) {
        let id = request.id;
        let older = {
            let mut calls = self.calls.lock();
            if calls.draining {
                drop(calls);
                return self.send_error(id, &Error::not_run(SHUTTING_DOWN), Flush::Held);
            }
            calls.tasks.remove(&id)
        };
        // The client reused the id of a call in flight: it no longer waits for that one.
        abort(older);
        let timeout = request.headers.timeout;
        let reply = match handler.call(request, self.codec, peer) {
            // Most handlers complete without waiting for anything: answer them here, with
            // the rest of the batch, instead of spawning a task each. A pending future
            // goes on in its task, which polls it again with its own waker.
            Reply::Unary(mut fut) => {
                let mut cx = std::task::Context::from_waker(Waker::noop());
                match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
                    Ok(Poll::Ready(result)) => return self.send_result(id, result, Flush::Held),
                    Ok(Poll::Pending) => Reply::Unary(fut),
                    Err(_) => return self.send_error(id, &panicked(), Flush::Held),
                }
            }
            stream @ Reply::Stream(_) => stream,
        };
        // The entry exists before the task does, so its `Finish` always finds it.
        let seq = {
            let mut calls = self.calls.lock();
            let seq = calls.next_seq;
            calls.next_seq += 1;
            let older = calls.tasks.insert(id, (seq, None));
            drop(calls);
            abort(older);
            seq
        };
        let task = tokio::spawn(run_call(
            Finish {
                conn: Arc::clone(self),
                id,
                seq,
            },
            reply,
            timeout,
        ));
        let mut calls = self.calls.lock();
        match calls.tasks.get_mut(&id) {
            Some((s, handle)) if *s == seq => *handle = Some(task.abort_handle()),
            // Cancelled, replaced or aborted while it was spawned (or already done).
            _ => {
                drop(calls);
                task.abort();
            }
        }
    }

    fn cancel(&self, id: u64) {
        let task = self.calls.lock().tasks.remove(&id);
        abort(task);
    }

    fn abort_all(&self) {
        let tasks: Vec<_> = self.calls.lock().tasks.drain().collect();
        for (_, task) in tasks {
            abort(Some(task));
        }
    }

    async fn answer(&self, id: u64, reply: Reply) {
        match reply {
            Reply::Unary(fut) => {
                let result = AssertUnwindSafe(fut)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| Err(panicked()));
                self.send_result(id, result, self.task_flush());
            }
            Reply::Stream(mut items) => loop {
                self.writer.writable().await;
                match AssertUnwindSafe(items.next()).catch_unwind().await {
                    Ok(Some(Ok(payload))) => {
                        if !self.send_answer(Frame::StreamItem { id, payload }, self.task_flush()) {
                            return;
                        }
                    }
                    Ok(Some(Err(e))) => return self.send_error(id, &e, self.task_flush()),
                    Ok(None) => {
                        let _ = self.writer.send(Frame::StreamEnd { id }, self.task_flush());
                        return;
                    }
                    Err(_) => return self.send_error(id, &panicked(), self.task_flush()),
                }
            },
        }
    }
}

async fn run_call(finish: Finish, reply: Reply, timeout: Option<Duration>) {
    let conn = &finish.conn;
    let id = finish.id;
    match timeout {
        None => conn.answer(id, reply).await,
        Some(t) => {
            if tokio::time::timeout(t, conn.answer(id, reply))
                .await
                .is_err()
            {
                conn.send_error(
                    id,
                    &Error::deadline_exceeded(format!(
                        "the call did not complete within its {t:?} deadline; the handler was stopped"
                    )),
                    conn.task_flush(),
                );
            }
        }
    }
}

fn remote_of(stream: &Stream) -> String {
    match (stream, stream.peer_address()) {
        (Stream::Memory(_), _) => "memory".into(),
        (_, Address::Tcp(hostport)) => hostport,
        (_, Address::Unix(path)) => format!("unix:{}", path.display()),
    }
}

/// Serves one accepted connection until the client leaves, the stream breaks, or
/// `shutdown` resolves and the calls in flight have finished.
///
/// `initial` holds bytes already read from the stream (a host sniffs the first bytes to
/// tell the wire protocol from HTTP). Fails when the handshake fails (a non-weft client,
/// a rejected credential or codec) or the client sends a corrupt byte stream; a go-away
/// with the reason is sent in the latter case.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use bytes::BytesMut;
/// use weft_transport::{memory_pair, serve_connection, Handler, PeerInfo, Reply, ServerOptions};
///
/// struct Echo;
/// impl Handler for Echo {
///     fn call(&self, r: weft_wire::Request, _: weft_wire::Codec, _: &PeerInfo) -> Reply {
///         Reply::Unary(Box::pin(async move { Ok(r.payload) }))
///     }
/// }
///
/// let (_client, server) = memory_pair();
/// let served = serve_connection(server, BytesMut::new(), Arc::new(Echo), ServerOptions::default(), async {});
/// // The shutdown future is already resolved: nothing is served.
/// served.await.unwrap();
/// # }
/// ```
pub async fn serve_connection(
    stream: Stream,
    initial: BytesMut,
    handler: Arc<dyn Handler>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let remote = remote_of(&stream);
    let mut stream = stream;
    let mut buf = initial;
    tokio::pin!(shutdown);

    let preface = tokio::select! {
        () = &mut shutdown => return Ok(()),
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_preface(&mut stream, &mut buf, &remote)) => match r {
            Ok(r) => r?,
            Err(_) => return Err(Error::deadline_exceeded(format!(
                "the client {remote} sent no weft preface within {HANDSHAKE_TIMEOUT:?}; closed the connection"
            ))),
        },
    };
    let (hello, refusal) = match opts
        .authenticate
        .as_ref()
        .map_or(Ok(()), |auth| auth(preface.credential.as_deref()))
    {
        Err(reason) => (
            ServerHello::Rejected {
                reason: reason.clone(),
            },
            Some(Error::unauthenticated(format!(
                "rejected the connection from {remote}: {reason}"
            ))),
        ),
        Ok(()) => {
            let hello = negotiate(&preface, opts.codecs, opts.max_frame_size);
            let refusal = match &hello {
                ServerHello::Rejected { reason } => Some(Error::new(
                    Code::InvalidArgument,
                    format!("rejected the connection from {remote}: {reason}"),
                )),
                ServerHello::Accepted { .. } => None,
            };
            (hello, refusal)
        }
    };
    let mut out = BytesMut::new();
    hello.encode(&mut out);
    let write_failed = |e: std::io::Error| {
        Error::unavailable(format!(
            "the client {remote} left during the handshake: {e}"
        ))
    };
    stream.write_all(&out).await.map_err(write_failed)?;
    if let Some(refusal) = refusal {
        let _ = stream.shutdown().await;
        return Err(refusal);
    }
    let ServerHello::Accepted {
        codec,
        max_frame_size,
        ..
    } = hello
    else {
        unreachable!("a rejection returned above")
    };

    let peer = PeerInfo {
        conn_id: NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed),
        remote,
        credential: preface.credential,
    };
    let (mut rd, wr) = stream.into_split();
    let conn = Arc::new(ServerConn {
        writer: Writer::new(wr, max_frame_size),
        codec,
        calls: Mutex::new(InFlight::default()),
        drained: Notify::new(),
    });
    let mut decoder = FrameDecoder::new(max_frame_size);
    let mut last_id = 0u64;
    let mut going_away = false;

    let outcome = 'conn: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Decoded::Frame(frame))) => match frame {
                    Frame::Request(request) => {
                        last_id = last_id.max(request.id);
                        conn.on_request(request, &*handler, &peer);
                    }
                    Frame::Cancel { id } => conn.cancel(id),
                    Frame::Ping { data } => {
                        let _ = conn.writer.send(Frame::Pong { data }, Flush::Held);
                    }
                    Frame::Pong { .. } | Frame::GoAway { .. } => {}
                    other => {
                        tracing::debug!(remote = %peer.remote, kind = ?other.kind(), "ignoring an answer frame sent by a client");
                    }
                },
                Ok(Some(Decoded::Oversized { kind, id, len, max })) => {
                    if kind == FrameKind::Request as u8 {
                        last_id = last_id.max(id);
                        conn.send_error(
                            id,
                            &Error::resource_exhausted(format!(
                                "request of {len} bytes exceeds the {max}-byte frame limit; send a smaller payload or raise max_frame_size on both sides"
                            )),
                            Flush::Held,
                        );
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => {
                    let reason = e.to_string();
                    let _ = conn.writer.send(
                        Frame::GoAway {
                            last_id,
                            reason: reason.clone(),
                        },
                        Flush::Now,
                    );
                    break 'conn Err(Error::new(
                        Code::InvalidArgument,
                        format!("closed the connection from {}: {reason}", peer.remote),
                    ));
                }
                Err(e) => {
                    if let Some(id) = e.frame_id().filter(|id| *id != 0) {
                        let err = match e {
                            WireError::Malformed { .. } => {
                                Error::new(Code::InvalidArgument, e.to_string())
                            }
                            _ => Error::internal(e.to_string()),
                        };
                        conn.send_error(id, &err, Flush::Held);
                    }
                }
            }
        }
        // One write for every answer the batch produced.
        conn.writer.flush();
        if going_away && conn.calls.lock().tasks.is_empty() {
            break Ok(());
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        tokio::select! {
            biased;
            () = &mut shutdown, if !going_away => {
                going_away = true;
                conn.calls.lock().draining = true;
                let _ = conn.writer.send(Frame::GoAway { last_id, reason: SHUTTING_DOWN.into() }, Flush::Now);
            }
            () = conn.drained.notified(), if going_away => {}
            r = rd.read_buf(&mut buf) => match r {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(remote = %peer.remote, "read failed: {e}");
                    break Ok(());
                }
            },
        }
    };
    // Calls still running have nobody to answer to.
    conn.abort_all();
    if tokio::time::timeout(CLOSE_TIMEOUT, conn.writer.close())
        .await
        .is_err()
    {
        conn.writer.abort();
    }
    handler.disconnected(&peer);
    outcome
}

async fn read_preface(
    stream: &mut Stream,
    buf: &mut BytesMut,
    remote: &str,
) -> Result<Preface, Error> {
    loop {
        match Preface::decode(buf) {
            Ok(Some(preface)) => return Ok(preface),
            Ok(None) => {}
            Err(e @ WireError::CredentialNotUtf8) => {
                // The preface was read whole: the client can be told why.
                let mut out = BytesMut::new();
                ServerHello::Rejected {
                    reason: e.to_string(),
                }
                .encode(&mut out);
                let _ = stream.write_all(&out).await;
                let _ = stream.shutdown().await;
                return Err(Error::unauthenticated(format!(
                    "rejected the connection from {remote}: {e}"
                )));
            }
            Err(e) => {
                return Err(Error::new(
                    Code::InvalidArgument,
                    format!("the client {remote} failed the handshake: {e}"),
                ));
            }
        }
        match stream.read_buf(buf).await {
            Ok(0) => {
                return Err(Error::unavailable(format!(
                    "the client {remote} closed the connection before sending a weft preface"
                )));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(Error::unavailable(format!(
                    "reading the preface from {remote} failed: {e}"
                )));
            }
        }
    }
}

/// Serves every connection of `listener` until `shutdown` resolves; then stops
/// accepting, sends a go-away on every connection, lets the calls in flight finish (new
/// requests get [`Unavailable`](weft_core::Code::Unavailable): "the instance is shutting
/// down; retry"), and returns once every connection is closed.
///
/// ```no_run
/// # async fn f(handler: std::sync::Arc<dyn weft_transport::Handler>) -> std::io::Result<()> {
/// use weft_transport::{serve, Listener, ServerOptions};
///
/// let listener = Listener::bind(&"127.0.0.1:0".parse().unwrap()).await?;
/// serve(listener, handler, ServerOptions::default(), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
pub async fn serve(
    listener: Listener,
    handler: Arc<dyn Handler>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let mut stopped = stopped.clone();
                    let (handler, opts) = (Arc::clone(&handler), opts.clone());
                    conns.spawn(async move {
                        let shutdown = async move {
                            let _ = stopped.wait_for(|stop| *stop).await;
                        };
                        if let Err(e) = serve_connection(stream, BytesMut::new(), handler, opts, shutdown).await {
                            tracing::debug!("connection ended: {e}");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}
