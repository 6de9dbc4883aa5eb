//! The write path shared by both sides of a connection.
//!
//! Senders encode their frame into a shared queue under a short lock and say how soon it
//! must leave ([`Flush`]):
//!
//! - on an idle connection ([`Flush::Now`]) the sender becomes the flusher and writes the
//!   queue with a non-blocking `write` on its own thread: one call at a time costs no task
//!   hop;
//! - on a busy one ([`Flush::Soon`]) the frame only joins the queue, and the first such
//!   sender spawns a flush task that yields once, so it runs when the scheduler has run
//!   everything else that was ready (every other caller that had something to send) and
//!   writes it all in one syscall; on a single thread this is the only way frames ever
//!   meet in one write;
//! - the server's reader ([`Flush::Held`]) queues the answers of a whole read batch and
//!   writes them with one [`Writer::flush`] before it reads again.
//!
//! Writes are synchronous, so no `await` can cancel one half-way. Only when the socket is
//! full (or after a few rounds, so one sender is not kept writing for everyone forever) is
//! the rest handed to a task that waits for the socket to drain.
//!
//! Payloads of [`VECTORED_MIN`] bytes or more are not copied into the queue: the frame's
//! head is, and the payload's `Bytes` is queued as it is and written with the rest by one
//! vectored write.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;
use weft_wire::{Frame, WireError};

use crate::io::WriteIo;

/// Rounds an inline flusher writes before it hands the rest to a task.
const INLINE_ROUNDS: usize = 8;
/// Queued bytes above which [`Writer::writable`] waits (server streams use it for
/// backpressure).
const HIGH_WATER: usize = 1024 * 1024;
/// Payloads at least this large are queued by reference instead of being copied.
const VECTORED_MIN: usize = 4096;
/// What the queue of small frames starts with.
const INITIAL_CAPACITY: usize = 16 * 1024;
/// Buffers passed to one vectored write at most (Linux accepts 1024).
const MAX_IOVECS: usize = 64;

/// How soon a frame must leave; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Write from this thread now unless a flush is already in progress.
    Now,
    /// Queue; a flush task writes everything queued once the scheduler has run the other
    /// ready tasks.
    Soon,
    /// Queue only: the sender calls [`Writer::flush`] before it waits for anything.
    Held,
}

#[derive(Debug)]
pub(crate) struct Writer {
    state: Mutex<WriteState>,
    /// Only the holder of the flusher role locks it, so it is never contended; it is a
    /// lock only because the role moves between threads.
    io: Mutex<WriteIo>,
    /// Signalled when queued bytes leave or the writer fails, if someone `wanted` it.
    progress: Notify,
    max_frame_size: u32,
    runtime: tokio::runtime::Handle,
}

#[derive(Debug, Default)]
struct WriteState {
    queue: Queue,
    /// Bytes the inline flusher could not write, for the task that takes over.
    handoff: Out,
    /// Someone holds the flusher role (or a flush task is on its way); new frames only
    /// need queueing.
    flushing: bool,
    /// The write side is gone (io error or closed); why, for error messages.
    failed: Option<String>,
    /// A waiter is parked on `progress`.
    wanted: bool,
    /// The task that took over the last flush, so [`Writer::abort`] can stop it.
    task: Option<tokio::task::AbortHandle>,
}

/// Frames waiting to be written, in order: `parts` first, then `tail`.
#[derive(Debug, Default)]
struct Queue {
    /// Heads of frames with large payloads, those payloads, and the small frames queued
    /// before them.
    parts: VecDeque<Bytes>,
    /// Small frames, encoded back to back.
    tail: BytesMut,
    /// Bytes in `parts`.
    parts_len: usize,
    /// An empty deque whose allocation the next [`take`](Self::take) reuses.
    spare: VecDeque<Bytes>,
}

impl Queue {
    fn len(&self) -> usize {
        self.parts_len + self.tail.len()
    }

    fn is_empty(&self) -> bool {
        self.parts.is_empty() && self.tail.is_empty()
    }

    fn push_part(&mut self, part: Bytes) {
        self.parts_len += part.len();
        self.parts.push_back(part);
    }

    /// Encodes `frame` at the end; nothing is queued when it fails.
    fn push(&mut self, mut frame: Frame, max_frame_size: u32) -> Result<(), WireError> {
        let large = match &frame {
            Frame::Request(r) => r.payload.len() >= VECTORED_MIN,
            Frame::Response { payload, .. }
            | Frame::Error { payload, .. }
            | Frame::StreamItem { payload, .. } => payload.len() >= VECTORED_MIN,
            _ => false,
        };
        if !large {
            return frame.encode(&mut self.tail, max_frame_size);
        }
        // The payload is the last field of every frame that has one: encode the frame
        // without it (which checks the headers as `encode` does), then fix the length
        // prefix to count it.
        let len = frame.encoded_len() - 4;
        let too_large = WireError::FrameTooLarge {
            len: len as u64,
            max: max_frame_size,
        };
        let payload = std::mem::take(payload_of(&mut frame));
        let start = self.tail.len();
        match frame.encode(&mut self.tail, max_frame_size) {
            Ok(()) => {}
            Err(WireError::FrameTooLarge { .. }) => return Err(too_large),
            Err(e) => return Err(e),
        }
        if len > max_frame_size as usize {
            self.tail.truncate(start);
            return Err(too_large);
        }
        // `len <= max_frame_size`, a u32.
        self.tail[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
        let head = self.tail.split().freeze();
        self.push_part(head);
        self.push_part(payload);
        Ok(())
    }

    /// Takes everything queued, leaving the queue empty.
    fn take(&mut self) -> Out {
        let mut parts = if self.parts.is_empty() {
            std::mem::take(&mut self.spare)
        } else {
            std::mem::take(&mut self.parts)
        };
        self.parts_len = 0;
        if !self.tail.is_empty() {
            parts.push_back(self.tail.split().freeze());
        }
        Out { parts }
    }

    /// Keeps the allocation of a written-out [`Out`] for the next [`take`](Self::take).
    fn recycle(&mut self, out: Out) {
        if out.parts.is_empty() && out.parts.capacity() > self.spare.capacity() {
            self.spare = out.parts;
        }
    }
}

fn payload_of(frame: &mut Frame) -> &mut Bytes {
    match frame {
        Frame::Request(r) => &mut r.payload,
        Frame::Response { payload, .. }
        | Frame::Error { payload, .. }
        | Frame::StreamItem { payload, .. } => payload,
        _ => unreachable!("only called for frames with a payload"),
    }
}

/// Bytes on their way to the socket.
#[derive(Debug, Default)]
struct Out {
    parts: VecDeque<Bytes>,
}

impl Out {
    fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    fn append(&mut self, mut more: Out) {
        if self.parts.is_empty() {
            std::mem::swap(&mut self.parts, &mut more.parts);
        } else {
            self.parts.append(&mut more.parts);
        }
    }

    fn slices(&self) -> ([IoSlice<'_>; MAX_IOVECS], usize) {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        for (slot, part) in slices.iter_mut().zip(&self.parts) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        (slices, n)
    }

    fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.parts.pop_front();
        }
    }
}

/// Why a frame could not be sent.
#[derive(Debug)]
pub(crate) enum SendError {
    /// The frame cannot be encoded (too large, header too long); nothing was queued.
    Encode(WireError),
    /// The connection can no longer be written to.
    Closed(String),
}

impl Writer {
    /// Must be called inside a tokio runtime (flush tasks are spawned onto it).
    pub(crate) fn new(io: WriteIo, max_frame_size: u32) -> Arc<Writer> {
        Arc::new(Writer {
            state: Mutex::new(WriteState {
                queue: Queue {
                    tail: BytesMut::with_capacity(INITIAL_CAPACITY),
                    ..Queue::default()
                },
                ..WriteState::default()
            }),
            io: Mutex::new(io),
            progress: Notify::new(),
            max_frame_size,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Queues `frame` and makes sure it leaves as `flush` says.
    pub(crate) fn send(self: &Arc<Self>, frame: Frame, flush: Flush) -> Result<(), SendError> {
        let out = {
            let mut st = self.state.lock();
            if let Some(why) = &st.failed {
                return Err(SendError::Closed(why.clone()));
            }
            st.queue
                .push(frame, self.max_frame_size)
                .map_err(SendError::Encode)?;
            if st.flushing {
                return Ok(());
            }
            match flush {
                Flush::Held => return Ok(()),
                Flush::Soon => {
                    st.flushing = true;
                    self.spawn_flush(&mut st, true);
                    return Ok(());
                }
                Flush::Now => {
                    st.flushing = true;
                    st.queue.take()
                }
            }
        };
        self.flush_inline(out);
        Ok(())
    }

    /// Writes what is queued now, from this thread, unless a flush is in progress.
    pub(crate) fn flush(self: &Arc<Self>) {
        let out = {
            let mut st = self.state.lock();
            if st.flushing || st.queue.is_empty() {
                return;
            }
            st.flushing = true;
            st.queue.take()
        };
        self.flush_inline(out);
    }

    fn flush_inline(self: &Arc<Self>, mut out: Out) {
        for _ in 0..INLINE_ROUNDS {
            let result = {
                let mut io = self.io.lock();
                write_nonblocking(&mut io, &mut out)
            };
            match result {
                Ok(true) => {}
                Ok(false) => return self.hand_off(out),
                Err(e) => return self.fail(&e),
            }
            let mut st = self.state.lock();
            if st.queue.is_empty() {
                st.flushing = false;
                st.queue.recycle(out);
                return self.signal(st);
            }
            let written = std::mem::replace(&mut out, st.queue.take());
            st.queue.recycle(written);
        }
        self.hand_off(out);
    }

    fn hand_off(self: &Arc<Self>, out: Out) {
        let mut st = self.state.lock();
        st.handoff = out;
        self.spawn_flush(&mut st, false);
    }

    /// Starts the task that writes `handoff` and then the queue; the caller holds the
    /// flusher role and passes it on. Under the lock, so [`abort`](Self::abort) sees it.
    fn spawn_flush(self: &Arc<Self>, st: &mut WriteState, defer: bool) {
        st.task = Some(
            self.runtime
                .spawn(Arc::clone(self).flush_task(defer))
                .abort_handle(),
        );
    }

    /// Fails the writer at once, dropping what is queued and stopping a flush that waits
    /// for a peer that no longer reads.
    pub(crate) fn abort(&self) {
        let mut st = self.state.lock();
        st.failed
            .get_or_insert_with(|| "the connection was closed".into());
        st.flushing = true;
        st.queue = Queue::default();
        if let Some(task) = st.task.take() {
            task.abort();
        }
        self.signal(st);
    }

    async fn flush_task(self: Arc<Self>, defer: bool) {
        if defer {
            // Let every task that is ready now run first: what they send joins this write.
            tokio::task::yield_now().await;
        }
        let mut out = {
            let mut st = self.state.lock();
            let mut out = std::mem::take(&mut st.handoff);
            out.append(st.queue.take());
            out
        };
        loop {
            while !out.is_empty() {
                let written = poll_fn(|cx| {
                    let (slices, n) = out.slices();
                    self.io.lock().poll_write_vectored(cx, &slices[..n])
                })
                .await;
                match written {
                    Ok(0) => return self.fail(&io::ErrorKind::WriteZero.into()),
                    Ok(n) => out.advance(n),
                    Err(e) => return self.fail(&e),
                }
            }
            let mut st = self.state.lock();
            if st.queue.is_empty() {
                st.flushing = false;
                st.task = None;
                st.queue.recycle(out);
                return self.signal(st);
            }
            let written = std::mem::replace(&mut out, st.queue.take());
            st.queue.recycle(written);
            self.signal(st);
        }
    }

    /// Wakes waiters if any; consumes the guard so they run with the lock released.
    fn signal(&self, mut st: parking_lot::MutexGuard<'_, WriteState>) {
        let wanted = std::mem::take(&mut st.wanted);
        drop(st);
        if wanted {
            self.progress.notify_waiters();
        }
    }

    fn fail(&self, e: &io::Error) {
        let mut st = self.state.lock();
        if st.failed.is_none() {
            st.failed = Some(format!("write failed: {e}"));
        }
        st.queue = Queue::default();
        // `flushing` stays set: nobody may write any more.
        self.signal(st);
    }

    /// Whether the write side failed or was closed.
    pub(crate) fn is_failed(&self) -> bool {
        self.state.lock().failed.is_some()
    }

    async fn wait_until(&self, ready: impl Fn(&WriteState) -> bool) {
        loop {
            let notified = self.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state.lock();
                if st.failed.is_some() || ready(&st) {
                    return;
                }
                st.wanted = true;
            }
            notified.await;
        }
    }

    /// Waits while more than the high-water mark is queued (backpressure for streams).
    pub(crate) async fn writable(&self) {
        self.wait_until(|st| st.queue.len() < HIGH_WATER).await;
    }

    /// Flushes everything queued, then shuts the write side down; later sends fail.
    pub(crate) async fn close(self: &Arc<Self>) {
        self.flush();
        self.wait_until(|st| !st.flushing && st.queue.is_empty())
            .await;
        {
            let mut st = self.state.lock();
            if st.failed.is_some() {
                return;
            }
            st.failed = Some("the connection was closed".into());
            st.flushing = true;
        }
        let _ = poll_fn(|cx| self.io.lock().poll_shutdown(cx)).await;
    }
}

/// Writes as much of `out` as the socket takes now: `Ok(true)` when all of it went.
fn write_nonblocking(io: &mut WriteIo, out: &mut Out) -> io::Result<bool> {
    while !out.is_empty() {
        let written = if out.parts.len() == 1 {
            io.try_write(&out.parts[0])
        } else {
            let (slices, n) = out.slices();
            io.try_write_vectored(&slices[..n])
        };
        match written {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
