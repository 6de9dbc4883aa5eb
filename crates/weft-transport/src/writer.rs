//! The write path shared by both sides of a connection.
//!
//! Callers encode their frame straight into a shared buffer under a short lock. Whoever
//! finds no flush in progress becomes the flusher and writes the buffer with a
//! non-blocking `write` syscall on its own thread, then goes on writing whatever other
//! callers queued meanwhile, so concurrent frames leave in one syscall. The write is
//! synchronous, so no `await` can cancel it half-way. Only when the socket is full (or
//! after a few rounds, so one caller is not kept writing for everyone forever) is the rest
//! handed to a spawned task that waits for the socket to drain: the common case costs no
//! task hop at all.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use tokio::sync::Notify;
use weft_wire::{Frame, WireError};

use crate::io::WriteIo;

/// Rounds an inline flusher writes before it hands the rest to a task.
const INLINE_ROUNDS: usize = 8;
/// Queued bytes above which [`Writer::writable`] waits (server streams use it for
/// backpressure).
const HIGH_WATER: usize = 1024 * 1024;

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
    queued: BytesMut,
    /// Bytes the inline flusher could not write, for the task that takes over.
    handoff: BytesMut,
    /// Someone holds the flusher role; new frames only need queueing.
    flushing: bool,
    /// The write side is gone (io error or closed); why, for error messages.
    failed: Option<String>,
    /// A waiter is parked on `progress`.
    wanted: bool,
    /// The task that took over the last flush, so [`Writer::abort`] can stop it.
    task: Option<tokio::task::AbortHandle>,
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
    /// Must be called inside a tokio runtime (the slow path spawns onto it).
    pub(crate) fn new(io: WriteIo, max_frame_size: u32) -> Arc<Writer> {
        Arc::new(Writer {
            state: Mutex::new(WriteState::default()),
            io: Mutex::new(io),
            progress: Notify::new(),
            max_frame_size,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Queues `frame` and, unless a flush is in progress, writes it now.
    pub(crate) fn send(self: &Arc<Self>, frame: &Frame) -> Result<(), SendError> {
        let out = {
            let mut st = self.state.lock();
            if let Some(why) = &st.failed {
                return Err(SendError::Closed(why.clone()));
            }
            frame
                .encode(&mut st.queued, self.max_frame_size)
                .map_err(SendError::Encode)?;
            if st.flushing {
                return Ok(());
            }
            st.flushing = true;
            std::mem::take(&mut st.queued)
        };
        self.flush_inline(out);
        Ok(())
    }

    fn flush_inline(self: &Arc<Self>, mut out: BytesMut) {
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
            if st.queued.is_empty() {
                if out.capacity() > st.queued.capacity() {
                    out.clear();
                    st.queued = out;
                }
                st.flushing = false;
                return self.signal(st);
            }
            std::mem::swap(&mut out, &mut st.queued);
        }
        self.hand_off(out);
    }

    fn hand_off(self: &Arc<Self>, out: BytesMut) {
        let mut st = self.state.lock();
        st.handoff = out;
        st.task = Some(
            self.runtime
                .spawn(Arc::clone(self).flush_task())
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
        st.queued = BytesMut::new();
        if let Some(task) = st.task.take() {
            task.abort();
        }
        self.signal(st);
    }

    async fn flush_task(self: Arc<Self>) {
        let mut out = std::mem::take(&mut self.state.lock().handoff);
        loop {
            while !out.is_empty() {
                match poll_fn(|cx| self.io.lock().poll_write(cx, &out)).await {
                    Ok(0) => return self.fail(&io::ErrorKind::WriteZero.into()),
                    Ok(n) => out.advance(n),
                    Err(e) => return self.fail(&e),
                }
            }
            let mut st = self.state.lock();
            if st.queued.is_empty() {
                st.flushing = false;
                return self.signal(st);
            }
            std::mem::swap(&mut out, &mut st.queued);
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
        st.queued = BytesMut::new();
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
        self.wait_until(|st| st.queued.len() < HIGH_WATER).await;
    }

    /// Flushes everything queued, then shuts the write side down; later sends fail.
    pub(crate) async fn close(&self) {
        self.wait_until(|st| !st.flushing && st.queued.is_empty())
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
fn write_nonblocking(io: &mut WriteIo, out: &mut BytesMut) -> io::Result<bool> {
    while !out.is_empty() {
        match io.try_write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    out.clear();
    Ok(true)
}
