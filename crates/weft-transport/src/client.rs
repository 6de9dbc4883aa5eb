use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use weft_core::Error;
use weft_wire::{
    Codec, CodecSet, DEFAULT_MAX_FRAME_SIZE, Decoded, Frame, FrameDecoder, Headers,
    MIN_MAX_FRAME_SIZE, PROTOCOL_VERSION, Preface, Request, ServerHello, WireError,
};

use crate::Address;
use crate::io::{ReadIo, Stream};
use crate::writer::{Flush, SendError, Writer};

/// Bytes read per syscall at least; the read buffer grows by this much when full.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// How to open a [`Connection`].
///
/// ```
/// use std::time::Duration;
/// let opts = weft_transport::ConnectOptions {
///     credential: Some("mesh-token".into()),
///     ping_interval: Some(Duration::from_secs(10)),
///     ..Default::default()
/// };
/// # drop(opts);
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The payload codecs this side accepts; the server picks one. Default: all.
    pub codecs: CodecSet,
    /// The largest frame this side accepts; the smaller of both sides' limits applies.
    /// Default: [`weft_wire::DEFAULT_MAX_FRAME_SIZE`]; a connect with less than
    /// [`weft_wire::MIN_MAX_FRAME_SIZE`] fails before dialling.
    pub max_frame_size: u32,
    /// The mesh credential sent in the preface.
    pub credential: Option<String>,
    /// How long dialling plus the handshake may take. Default: 5 s.
    pub connect_timeout: Duration,
    /// Send a ping this often and close the connection when one goes unanswered until the
    /// next; `None` (the default) sends none.
    pub ping_interval: Option<Duration>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            codecs: CodecSet::ALL,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            credential: None,
            connect_timeout: Duration::from_secs(5),
            ping_interval: None,
        }
    }
}

/// One multiplexed client connection to a peer. Cheap to clone (`Arc` inside).
///
/// Calls are sent eagerly by [`call`](Connection::call) and answered by a reader task that
/// wakes the caller directly. The connection stays open while a clone or an unfinished
/// call exists.
///
/// ```no_run
/// # async fn f() -> Result<(), weft_core::Error> {
/// use weft_transport::{Connection, ConnectOptions};
/// use weft_wire::Headers;
///
/// let addr = "127.0.0.1:7400".parse()?;
/// let conn = Connection::connect(&addr, &ConnectOptions::default()).await?;
/// let reply = conn.call(Headers::new("greeter", "hello"), "{}".into()).await?;
/// # drop(reply); Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    inner: Arc<ConnInner>,
}

/// What the clones share; dropping the last one stops the connection's tasks.
struct ConnInner {
    shared: Arc<Shared>,
    tasks: Vec<AbortHandle>,
}

impl Drop for ConnInner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.shared.writer.abort();
    }
}

/// State used by the callers and the reader task.
struct Shared {
    peer: Address,
    codec: Codec,
    writer: Arc<Writer>,
    calls: Mutex<Calls>,
    /// Mirrors `calls.closed.is_some()` for lock-free checks.
    closed: AtomicBool,
    closed_notify: Notify,
    last_pong: AtomicU64,
    /// Tells the deadline task that `calls.timer_at` moved earlier.
    rearm: Notify,
}

struct Calls {
    slots: HashMap<u64, Slot, BuildHasherDefault<IdHasher>>,
    next_id: u64,
    /// Set once no new call may start; the error new calls get.
    closed: Option<Error>,
    /// When the deadline task wakes next to expire calls: no later than the earliest
    /// deadline of a call in flight. One timer for the connection instead of one per call:
    /// deadlines mostly come in increasing order, so it rarely moves.
    timer_at: Option<Instant>,
}

/// Hashes call ids (sequential integers) with one multiply: SipHash is needless work
/// here, and the identity would put every id in the same control-byte group.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

enum Slot {
    Unary {
        result: Option<Result<Bytes, Error>>,
        waker: Option<Waker>,
        deadline: Option<Instant>,
    },
    Stream {
        items: VecDeque<Result<Bytes, Error>>,
        ended: bool,
        waker: Option<Waker>,
    },
}

enum Event {
    Response(Bytes),
    Item(Bytes),
    End,
    Failed(Error),
}

impl Slot {
    fn finished(&self) -> bool {
        match self {
            Slot::Unary { result, .. } => result.is_some(),
            Slot::Stream { ended, .. } => *ended,
        }
    }

    /// Records `event`; returns the waker to wake once the lock is released.
    fn deliver(&mut self, event: Event) -> Option<Waker> {
        if self.finished() {
            return None;
        }
        match self {
            Slot::Unary { result, waker, .. } => {
                *result = Some(match event {
                    Event::Response(p) | Event::Item(p) => Ok(p),
                    Event::End => Err(Error::internal(
                        "the server answered a unary call with an empty stream; the handler returned the wrong kind of reply",
                    )),
                    Event::Failed(e) => Err(e),
                });
                waker.take()
            }
            Slot::Stream {
                items,
                ended,
                waker,
            } => {
                match event {
                    Event::Item(p) => items.push_back(Ok(p)),
                    Event::Response(p) => {
                        items.push_back(Ok(p));
                        *ended = true;
                    }
                    Event::End => *ended = true,
                    Event::Failed(e) => {
                        items.push_back(Err(e));
                        *ended = true;
                    }
                }
                waker.take()
            }
        }
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.inner.shared;
        f.debug_struct("Connection")
            .field("peer", &s.peer)
            .field("codec", &s.codec)
            .field("outstanding", &self.outstanding())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Dials `addr` and performs the handshake, within `opts.connect_timeout`.
    ///
    /// Fails with [`Unavailable`](weft_core::Code::Unavailable) naming the address and
    /// what to do when the peer cannot be reached, rejects the handshake (with the
    /// server's reason) or does not speak weft; with
    /// [`InvalidArgument`](weft_core::Code::InvalidArgument), before dialling, when
    /// `opts.max_frame_size` is below [`weft_wire::MIN_MAX_FRAME_SIZE`].
    pub async fn connect(addr: &Address, opts: &ConnectOptions) -> Result<Connection, Error> {
        // Which stage the timeout cut short: a peer that accepts but never
        // answers the handshake is stopped or hung, not absent.
        let connected = AtomicBool::new(false);
        let dial = async {
            let stream = crate::io::connect(addr)
                .await
                .map_err(|e| connect_error(addr, &e))?;
            connected.store(true, Ordering::Relaxed);
            handshake_with(stream, opts, addr.clone()).await
        };
        match tokio::time::timeout(opts.connect_timeout, dial).await {
            Ok(r) => r,
            Err(_) if connected.load(Ordering::Relaxed) => Err(Error::unavailable(format!(
                "{addr} accepted the connection but did not answer weft's handshake within {:?}: \
                 the process there is stopped, hung or too busy to answer (a host: `weft hosts`; \
                 an instance: `weft ls` and `weft logs`)",
                opts.connect_timeout
            ))),
            Err(_) => Err(Error::unavailable(format!(
                "connecting to {addr} timed out after {:?}: nothing answered at that address (a \
                 firewall, or a machine that is down); for a host, set WEFT_HOST to its address",
                opts.connect_timeout
            ))),
        }
    }

    /// Performs the client handshake on an already connected stream (within
    /// `opts.connect_timeout`) and starts the connection's reader task.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use weft_transport::{memory_pair, Connection, ConnectOptions};
    /// let (client, _server) = memory_pair();
    /// // Nobody serves `_server` here, so the handshake times out.
    /// let opts = ConnectOptions { connect_timeout: std::time::Duration::from_millis(10), ..Default::default() };
    /// assert!(Connection::handshake(client, &opts).await.is_err());
    /// # }
    /// ```
    pub async fn handshake(stream: Stream, opts: &ConnectOptions) -> Result<Connection, Error> {
        let peer = stream.peer_address();
        match tokio::time::timeout(
            opts.connect_timeout,
            handshake_with(stream, opts, peer.clone()),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Error::unavailable(format!(
                "the handshake with {peer} timed out after {:?}; is it a weft endpoint?",
                opts.connect_timeout
            ))),
        }
    }

    /// The payload codec negotiated with the peer.
    pub fn codec(&self) -> Codec {
        self.inner.shared.codec
    }

    /// The peer's address (`unix://memory` for an in-memory stream).
    pub fn peer(&self) -> &Address {
        &self.inner.shared.peer
    }

    /// Sends a request with a fresh call id, now; the future resolves with the response
    /// payload, or with the error the server answered (decoded with the connection codec).
    ///
    /// Dropping the future before it resolves sends a cancel for the call, which stops the
    /// handler. The future has no deadline of its own: wrap it in `tokio::time::timeout`
    /// (and set `headers.timeout` so the server gives up too). If the connection dies the
    /// future resolves with [`Unavailable`](weft_core::Code::Unavailable) naming the peer.
    pub fn call(&self, headers: Headers, payload: Bytes) -> ResponseFuture {
        self.call_unary(headers, payload, None)
    }

    /// [`call`](Self::call) with a deadline: once `deadline` passes without an answer, the
    /// future resolves with [`DeadlineExceeded`](weft_core::Code::DeadlineExceeded) and a
    /// cancel for the call is sent. Cheaper than a timeout around [`call`](Self::call):
    /// the connection keeps one timer for all its calls. Set `headers.timeout` too, so
    /// that the server gives up as well.
    ///
    /// ```no_run
    /// # async fn f(conn: weft_transport::Connection) -> Result<(), weft_core::Error> {
    /// use std::time::Duration;
    /// use weft_wire::Headers;
    ///
    /// let budget = Duration::from_secs(2);
    /// let mut headers = Headers::new("greeter", "hello");
    /// headers.timeout = Some(budget);
    /// let deadline = tokio::time::Instant::now() + budget;
    /// let reply = conn.call_with_deadline(headers, "{}".into(), deadline).await?;
    /// # drop(reply); Ok(()) }
    /// ```
    pub fn call_with_deadline(
        &self,
        headers: Headers,
        payload: Bytes,
        deadline: Instant,
    ) -> ResponseFuture {
        self.call_unary(headers, payload, Some(deadline))
    }

    fn call_unary(
        &self,
        headers: Headers,
        payload: Bytes,
        deadline: Option<Instant>,
    ) -> ResponseFuture {
        let slot = Slot::Unary {
            result: None,
            waker: None,
            deadline,
        };
        match self.start(headers, payload, slot) {
            Ok(id) => ResponseFuture {
                conn: Some(Arc::clone(&self.inner)),
                id,
                failed: None,
            },
            Err(e) => ResponseFuture {
                conn: None,
                id: 0,
                failed: Some(e),
            },
        }
    }

    /// Starts a server-streaming call: the stream yields each item until the server ends
    /// it, or yields the server's error and ends. Dropping it early sends a cancel.
    ///
    /// Items the caller has not taken yet are buffered without limit; consume the stream
    /// promptly (the server itself stops producing while its socket is full).
    pub fn call_stream(&self, headers: Headers, payload: Bytes) -> ResponseStream {
        let slot = Slot::Stream {
            items: VecDeque::new(),
            ended: false,
            waker: None,
        };
        match self.start(headers, payload, slot) {
            Ok(id) => ResponseStream {
                conn: Some(Arc::clone(&self.inner)),
                id,
                failed: None,
            },
            Err(e) => ResponseStream {
                conn: None,
                id: 0,
                failed: Some(e),
            },
        }
    }

    fn start(&self, headers: Headers, payload: Bytes, slot: Slot) -> Result<u64, Error> {
        let shared = &self.inner.shared;
        let (id, flush, rearm) = {
            let mut calls = shared.calls.lock();
            if let Some(e) = &calls.closed {
                return Err(e.clone());
            }
            let id = calls.next_id;
            calls.next_id += 1;
            let mut rearm = false;
            if let Slot::Unary {
                deadline: Some(d), ..
            } = &slot
                && calls.timer_at.is_none_or(|t| *d < t)
            {
                calls.timer_at = Some(*d);
                rearm = true;
            }
            // The slot exists before the request leaves, so the answer always finds it.
            calls.slots.insert(id, slot);
            (id, flush_for(calls.slots.len()), rearm)
        };
        if rearm {
            shared.rearm.notify_one();
        }
        let frame = Frame::Request(Request {
            id,
            headers,
            payload,
        });
        match shared.writer.send(frame, flush) {
            Ok(()) => Ok(id),
            Err(e) => {
                shared.calls.lock().slots.remove(&id);
                Err(match e {
                    SendError::Encode(WireError::FrameTooLarge { len, max }) => {
                        Error::resource_exhausted(format!(
                            "request of {len} bytes exceeds the {max}-byte frame limit of the connection to {}; send a smaller payload or raise max_frame_size on both sides",
                            shared.peer
                        ))
                    }
                    SendError::Encode(e) => {
                        Error::new(weft_core::Code::InvalidArgument, e.to_string())
                    }
                    SendError::Closed(why) => shared.lost_error(&why),
                })
            }
        }
    }

    /// The number of calls in flight on this connection, for load balancing.
    pub fn outstanding(&self) -> usize {
        self.inner.shared.calls.lock().slots.len()
    }

    /// Whether the connection accepts no new calls: it died, or the peer sent a go-away.
    pub fn is_closed(&self) -> bool {
        self.inner.shared.closed.load(Ordering::Acquire) || self.inner.shared.writer.is_failed()
    }

    /// Whether both are the same connection (clones of one).
    pub(crate) fn same(&self, other: &Connection) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Resolves once [`is_closed`](Self::is_closed) is true.
    pub async fn closed(&self) {
        let shared = &self.inner.shared;
        loop {
            let notified = shared.closed_notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closed() {
                return;
            }
            // A failed write is noticed by the reader too, which then closes the connection.
            notified.await;
        }
    }
}

/// How soon a frame must leave when `in_flight` calls (this one included) share the
/// connection: alone, at once (latency); among others, with theirs (one write for many).
fn flush_for(in_flight: usize) -> Flush {
    if in_flight <= 1 {
        Flush::Now
    } else {
        Flush::Soon
    }
}

fn connect_error(addr: &Address, e: &std::io::Error) -> Error {
    use std::io::ErrorKind;
    let hint = "is the weft host or instance that should be there running? (for a host, set WEFT_HOST to its address)";
    Error::unavailable(match e.kind() {
        ErrorKind::ConnectionRefused => {
            format!("cannot connect to {addr}: connection refused; {hint}")
        }
        ErrorKind::NotFound if matches!(addr, Address::Unix(_)) => {
            format!("cannot connect to {addr}: no socket at that path; {hint}")
        }
        _ => format!("cannot connect to {addr}: {e}; {hint}"),
    })
}

async fn handshake_with(
    mut stream: Stream,
    opts: &ConnectOptions,
    peer: Address,
) -> Result<Connection, Error> {
    if opts.max_frame_size < MIN_MAX_FRAME_SIZE {
        return Err(Error::new(
            weft_core::Code::InvalidArgument,
            format!(
                "max_frame_size {} is below the minimum of {MIN_MAX_FRAME_SIZE} bytes that a call needs; raise it (the default is {DEFAULT_MAX_FRAME_SIZE})",
                opts.max_frame_size
            ),
        ));
    }
    let mut preface = Preface::new(opts.codecs).with_max_frame_size(opts.max_frame_size);
    preface.credential = opts.credential.clone();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    preface
        .try_encode(&mut buf)
        .map_err(|e| Error::new(weft_core::Code::InvalidArgument, e.to_string()))?;
    let io_failed = |e: std::io::Error| {
        Error::unavailable(format!(
            "the connection to {peer} failed during the handshake: {e}; is it a weft endpoint?"
        ))
    };
    stream.write_all(&buf).await.map_err(io_failed)?;
    buf.clear();
    let hello = loop {
        match ServerHello::decode(&mut buf) {
            Ok(Some(hello)) => break hello,
            Ok(None) => {}
            Err(e) => {
                return Err(Error::unavailable(format!(
                    "{peer} did not answer with the weft protocol: {e}"
                )));
            }
        }
        if stream.read_buf(&mut buf).await.map_err(io_failed)? == 0 {
            return Err(Error::unavailable(format!(
                "{peer} closed the connection during the handshake; is it a weft endpoint, and does it accept this client?"
            )));
        }
    };
    let (codec, max_frame_size) = match hello {
        ServerHello::Accepted {
            version,
            codec,
            max_frame_size,
        } => {
            if version != PROTOCOL_VERSION {
                return Err(Error::unavailable(format!(
                    "{peer}: {}",
                    WireError::UnsupportedVersion { version }
                )));
            }
            if max_frame_size < MIN_MAX_FRAME_SIZE {
                return Err(Error::unavailable(format!(
                    "{peer} accepted the connection with a frame size limit of {max_frame_size} bytes, below the minimum of {MIN_MAX_FRAME_SIZE}; the peer's weft implementation is broken"
                )));
            }
            if !opts.codecs.contains(codec) {
                return Err(Error::unavailable(format!(
                    "{peer} chose the {codec} codec, which this client did not offer; the peer's weft implementation is broken"
                )));
            }
            (codec, max_frame_size)
        }
        ServerHello::Rejected { reason } => {
            return Err(Error::unavailable(format!(
                "{peer} rejected the connection: {reason}"
            )));
        }
    };
    let (rd, wr) = stream.into_split();
    let shared = Arc::new(Shared {
        peer,
        codec,
        writer: Writer::new(wr, max_frame_size),
        calls: Mutex::new(Calls {
            slots: HashMap::default(),
            next_id: 1,
            closed: None,
            timer_at: None,
        }),
        closed: AtomicBool::new(false),
        closed_notify: Notify::new(),
        last_pong: AtomicU64::new(0),
        rearm: Notify::new(),
    });
    let decoder = FrameDecoder::new(max_frame_size);
    let mut tasks = vec![
        tokio::spawn(read_loop(Arc::clone(&shared), rd, buf, decoder)).abort_handle(),
        tokio::spawn(deadline_loop(Arc::clone(&shared))).abort_handle(),
    ];
    if let Some(every) = opts.ping_interval {
        tasks.push(tokio::spawn(ping_loop(Arc::clone(&shared), every)).abort_handle());
    }
    Ok(Connection {
        inner: Arc::new(ConnInner { shared, tasks }),
    })
}

/// Reads frames and hands each answer to its caller, waking the caller directly.
async fn read_loop(
    shared: Arc<Shared>,
    mut rd: ReadIo,
    mut buf: BytesMut,
    mut decoder: FrameDecoder,
) {
    let why = 'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Decoded::Frame(frame))) => shared.on_frame(frame),
                Ok(Some(Decoded::Oversized { id, len, max, .. })) => shared.deliver(
                    id,
                    Event::Failed(Error::resource_exhausted(format!(
                        "the answer of {len} bytes exceeds the {max}-byte frame limit; raise max_frame_size on both sides"
                    ))),
                ),
                Ok(None) => break,
                Err(e) if e.is_fatal() => break 'read format!("the peer sent a corrupt frame: {e}"),
                Err(e) => {
                    if let Some(id) = e.frame_id() {
                        shared.deliver(id, Event::Failed(Error::internal(e.to_string())));
                    }
                }
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break "the peer closed the connection".to_owned(),
            Ok(_) => {}
            Err(e) => break format!("read failed: {e}"),
        }
    };
    shared.shutdown(&why);
}

/// Fails the calls whose deadline passed, sleeping until the earliest one in between.
async fn deadline_loop(shared: Arc<Shared>) {
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    let mut armed = None;
    loop {
        let at = shared.calls.lock().timer_at;
        let Some(at) = at else {
            shared.rearm.notified().await;
            continue;
        };
        if armed != Some(at) {
            sleep.as_mut().reset(at);
            armed = Some(at);
        }
        tokio::select! {
            () = &mut sleep => {
                armed = None;
                shared.expire(Instant::now());
            }
            () = shared.rearm.notified() => {}
        }
    }
}

async fn ping_loop(shared: Arc<Shared>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut sent = 0u64;
    loop {
        ticks.tick().await;
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        if sent > 0 && shared.last_pong.load(Ordering::Acquire) != sent {
            shared.shutdown(&format!("the peer did not answer a ping within {every:?}"));
            return;
        }
        sent += 1;
        if shared
            .writer
            .send(Frame::Ping { data: sent }, Flush::Now)
            .is_err()
        {
            return;
        }
    }
}

impl Shared {
    fn on_frame(&self, frame: Frame) {
        match frame {
            Frame::Response { id, payload } => self.deliver(id, Event::Response(payload)),
            Frame::StreamItem { id, payload } => self.deliver(id, Event::Item(payload)),
            Frame::StreamEnd { id } => self.deliver(id, Event::End),
            Frame::Error { id, payload } => {
                let err =
                    weft_core::codec::decode::<Error>(self.codec, &payload).unwrap_or_else(|e| {
                        Error::internal(format!(
                            "{} answered with an error that cannot be decoded: {}",
                            self.peer,
                            e.message()
                        ))
                    });
                self.deliver(id, Event::Failed(err));
            }
            Frame::Ping { data } => {
                let _ = self.writer.send(Frame::Pong { data }, Flush::Now);
            }
            Frame::Pong { data } => self.last_pong.store(data, Ordering::Release),
            Frame::GoAway { last_id, reason } => self.go_away(last_id, &reason),
            Frame::Request(_) | Frame::Cancel { .. } => {
                tracing::debug!(peer = %self.peer, "ignoring a request-side frame sent by the server");
            }
        }
    }

    /// Fails every unary call whose deadline is `now` or earlier and cancels it on the
    /// server; sets when to look again.
    fn expire(self: &Arc<Self>, now: Instant) {
        let mut expired = Vec::new();
        let mut wakers = Vec::new();
        {
            let mut calls = self.calls.lock();
            let mut next: Option<Instant> = None;
            for (id, slot) in calls.slots.iter_mut() {
                let Slot::Unary {
                    deadline: Some(deadline),
                    result: None,
                    ..
                } = slot
                else {
                    continue;
                };
                if *deadline <= now {
                    expired.push(*id);
                    let err = Error::deadline_exceeded(format!(
                        "{} did not answer within the call's deadline; the call was cancelled",
                        self.peer
                    ));
                    wakers.extend(slot.deliver(Event::Failed(err)));
                } else {
                    next = Some(next.map_or(*deadline, |n| n.min(*deadline)));
                }
            }
            calls.timer_at = next;
        }
        for w in wakers {
            w.wake();
        }
        let flush = flush_for(expired.len());
        for id in expired {
            if self.writer.send(Frame::Cancel { id }, flush).is_err() {
                break;
            }
        }
    }

    fn deliver(&self, id: u64, event: Event) {
        let waker = self
            .calls
            .lock()
            .slots
            .get_mut(&id)
            .and_then(|slot| slot.deliver(event));
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn lost_error(&self, why: &str) -> Error {
        Error::unavailable(format!(
            "the connection to {} was lost ({why}); the call may or may not have run: retry if it is idempotent",
            self.peer
        ))
    }

    /// Fails every unfinished call for which `fail(id)` is true with `err`, after marking
    /// the connection closed with `closed` (unless already closed).
    fn fail_calls(&self, closed: Error, err: &Error, fail: impl Fn(u64) -> bool) {
        let mut wakers = Vec::new();
        {
            let mut calls = self.calls.lock();
            calls.closed.get_or_insert(closed);
            for (id, slot) in calls.slots.iter_mut() {
                if fail(*id)
                    && let Some(w) = slot.deliver(Event::Failed(err.clone()))
                {
                    wakers.push(w);
                }
            }
        }
        self.closed.store(true, Ordering::Release);
        for w in wakers {
            w.wake();
        }
        self.closed_notify.notify_waiters();
    }

    fn go_away(&self, last_id: u64, reason: &str) {
        let err = Error::not_run(format!(
            "{} is going away ({reason}); the call was not run: retry",
            self.peer
        ));
        self.fail_calls(err.clone(), &err, |id| id > last_id);
    }

    fn shutdown(&self, why: &str) {
        let err = self.lost_error(why);
        let closed = Error::unavailable(format!(
            "the connection to {} is closed ({why}); dial again",
            self.peer
        ));
        self.fail_calls(closed, &err, |_| true);
    }
}

/// The answer to one [`Connection::call`]. Dropping it before it resolves cancels the call.
#[must_use = "the call is cancelled when the future is dropped"]
pub struct ResponseFuture {
    conn: Option<Arc<ConnInner>>,
    id: u64,
    failed: Option<Error>,
}

impl fmt::Debug for ResponseFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Future for ResponseFuture {
    type Output = Result<Bytes, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Err(e));
        }
        let Some(conn) = &self.conn else {
            return Poll::Ready(Err(Error::internal(
                "ResponseFuture polled after it resolved",
            )));
        };
        let mut calls = conn.shared.calls.lock();
        let result = match calls.slots.get_mut(&self.id) {
            Some(Slot::Unary { result, waker, .. }) => match result.take() {
                Some(r) => r,
                None => {
                    match waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => *waker = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            },
            _ => Err(Error::internal(
                "the call's slot disappeared; this is a weft bug",
            )),
        };
        calls.slots.remove(&self.id);
        drop(calls);
        self.conn = None;
        Poll::Ready(result)
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.shared.abandon(self.id);
        }
    }
}

impl Shared {
    /// The caller lost interest in call `id`: free its slot and, if the server may still be
    /// working on it, tell the server to stop.
    fn abandon(self: &Arc<Self>, id: u64) {
        let (slot, in_flight) = {
            let mut calls = self.calls.lock();
            let slot = calls.slots.remove(&id);
            (slot, calls.slots.len() + 1)
        };
        if let Some(slot) = slot
            && !slot.finished()
            && !self.writer.is_failed()
        {
            let _ = self.writer.send(Frame::Cancel { id }, flush_for(in_flight));
        }
    }
}

/// The items of one [`Connection::call_stream`]. Dropping it before it ends cancels the call.
#[must_use = "the call is cancelled when the stream is dropped"]
pub struct ResponseStream {
    conn: Option<Arc<ConnInner>>,
    id: u64,
    failed: Option<Error>,
}

impl fmt::Debug for ResponseStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseStream")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl futures::Stream for ResponseStream {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(conn) = &self.conn else {
            return Poll::Ready(None);
        };
        let mut calls = conn.shared.calls.lock();
        if let Some(Slot::Stream {
            items,
            ended,
            waker,
        }) = calls.slots.get_mut(&self.id)
        {
            if let Some(item) = items.pop_front() {
                return Poll::Ready(Some(item));
            }
            if !*ended {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
        }
        calls.slots.remove(&self.id);
        drop(calls);
        self.conn = None;
        Poll::Ready(None)
    }
}

impl Drop for ResponseStream {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.shared.abandon(self.id);
        }
    }
}
