use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use crate::WireError;

/// Bytes of the length prefix.
pub(crate) const LEN_PREFIX: usize = 4;
/// Bytes counted by the length prefix before the body: kind, flags, id.
pub(crate) const MIN_FRAME_LEN: u32 = 1 + 1 + 8;

pub(crate) const TAG_SERVICE: u8 = 1;
pub(crate) const TAG_ENTRYPOINT: u8 = 2;
pub(crate) const TAG_VERSION: u8 = 3;
pub(crate) const TAG_TIMEOUT: u8 = 4;
pub(crate) const TAG_TRACEPARENT: u8 = 5;
pub(crate) const TAG_CALLER_SERVICE: u8 = 6;
pub(crate) const TAG_CALLER_VERSION: u8 = 7;
pub(crate) const TAG_CALLER_INSTANCE: u8 = 8;
pub(crate) const TAG_IDEMPOTENCY_KEY: u8 = 9;
pub(crate) const TAG_AUTH: u8 = 10;

/// A human name for a header tag, for error messages.
pub(crate) fn tag_name(tag: u8) -> &'static str {
    match tag {
        TAG_SERVICE => "service",
        TAG_ENTRYPOINT => "entrypoint",
        TAG_VERSION => "version",
        TAG_TIMEOUT => "timeout",
        TAG_TRACEPARENT => "traceparent",
        TAG_CALLER_SERVICE => "caller service",
        TAG_CALLER_VERSION => "caller version",
        TAG_CALLER_INSTANCE => "caller instance",
        TAG_IDEMPOTENCY_KEY => "idempotency key",
        TAG_AUTH => "auth",
        _ => "(unknown tag)",
    }
}

/// The kind byte of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// [`Frame::Request`].
    Request = 1,
    /// [`Frame::Response`].
    Response = 2,
    /// [`Frame::Error`].
    Error = 3,
    /// [`Frame::StreamItem`].
    StreamItem = 4,
    /// [`Frame::StreamEnd`].
    StreamEnd = 5,
    /// [`Frame::Cancel`].
    Cancel = 6,
    /// [`Frame::Ping`].
    Ping = 7,
    /// [`Frame::Pong`].
    Pong = 8,
    /// [`Frame::GoAway`].
    GoAway = 9,
}

impl FrameKind {
    /// The kind with wire value `kind`, if it is known.
    ///
    /// ```
    /// use weft_wire::FrameKind;
    /// assert_eq!(FrameKind::from_u8(FrameKind::Cancel as u8), Some(FrameKind::Cancel));
    /// assert_eq!(FrameKind::from_u8(0), None);
    /// ```
    pub fn from_u8(kind: u8) -> Option<FrameKind> {
        Some(match kind {
            1 => FrameKind::Request,
            2 => FrameKind::Response,
            3 => FrameKind::Error,
            4 => FrameKind::StreamItem,
            5 => FrameKind::StreamEnd,
            6 => FrameKind::Cancel,
            7 => FrameKind::Ping,
            8 => FrameKind::Pong,
            9 => FrameKind::GoAway,
            _ => return None,
        })
    }
}

/// One unit of the weft protocol after the handshake.
///
/// Layout: `len: u32 BE` (bytes after this field) `kind: u8` `flags: u8` (0, ignored on
/// decode) `id: u64 BE`, then the body. A frame's *size*, as limited by `max_frame_size`,
/// is the value of `len`.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use weft_wire::{Decoded, Frame, FrameDecoder, DEFAULT_MAX_FRAME_SIZE};
///
/// let frame = Frame::Response { id: 7, payload: Bytes::from_static(b"{\"ok\":true}") };
/// let mut buf = BytesMut::new();
/// frame.encode(&mut buf, DEFAULT_MAX_FRAME_SIZE)?;
/// assert_eq!(buf.len(), frame.encoded_len());
///
/// let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE);
/// assert_eq!(decoder.decode(&mut buf)?, Some(Decoded::Frame(frame)));
/// # Ok::<(), weft_wire::WireError>(())
/// ```
#[allow(
    clippy::large_enum_variant,
    reason = "requests are the common frame and already own several heap strings; boxing them would add an allocation per call and change the shape other crates match on"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Starts a call. The body is a header block then the payload.
    Request(Request),
    /// The single successful answer to a unary call.
    Response {
        /// The call's id.
        id: u64,
        /// The codec-encoded result.
        payload: Bytes,
    },
    /// The call failed; ends the call (unary or streaming).
    Error {
        /// The call's id.
        id: u64,
        /// The codec-encoded error object (decoded by `weft-core`, not here).
        payload: Bytes,
    },
    /// One item of a server-streaming response.
    StreamItem {
        /// The call's id.
        id: u64,
        /// The codec-encoded item.
        payload: Bytes,
    },
    /// A server-streaming response finished successfully.
    StreamEnd {
        /// The call's id.
        id: u64,
    },
    /// The caller is no longer interested in the call.
    Cancel {
        /// The call's id.
        id: u64,
    },
    /// Liveness probe; the peer answers with a [`Frame::Pong`] carrying the same data.
    Ping {
        /// Opaque data echoed back.
        data: u64,
    },
    /// Answer to a [`Frame::Ping`].
    Pong {
        /// The ping's data.
        data: u64,
    },
    /// The sender will accept no new calls; calls up to `last_id` are still processed.
    GoAway {
        /// The highest call id the sender will still process.
        last_id: u64,
        /// Why, for operators.
        reason: String,
    },
}

/// A call: the body of [`Frame::Request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The call id, chosen by the caller and unique among its in-flight calls on this connection.
    pub id: u64,
    /// Routing and context headers.
    pub headers: Headers,
    /// The codec-encoded arguments; never decoded by the router.
    pub payload: Bytes,
}

impl Request {
    /// A request for `service`/`entrypoint` with no optional headers.
    pub fn new(
        id: u64,
        service: impl Into<String>,
        entrypoint: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Request {
            id,
            headers: Headers::new(service, entrypoint),
            payload: payload.into(),
        }
    }
}

/// The headers of a [`Request`].
///
/// On the wire they are a block of TLVs `[tag u8][len u16 BE][value]`, with tags 1 service,
/// 2 entrypoint, 3 version, 4 timeout (u64 BE microseconds), 5 traceparent, 6 caller
/// service, 7 caller version, 8 caller instance, 9 idempotency key, 10 auth. Unknown tags
/// are skipped, so newer peers can add headers. Each value is at most 65535 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Headers {
    /// The target service (required).
    pub service: String,
    /// The target entrypoint (required).
    pub entrypoint: String,
    /// An exact version or a semver requirement, e.g. `"1.2.0"` or `"^1.2"`.
    pub version: Option<String>,
    /// The remaining deadline budget. Relative, because clocks differ between hosts;
    /// carried with microsecond precision (finer parts are dropped, huge values saturate).
    pub timeout: Option<Duration>,
    /// The W3C `traceparent`.
    pub traceparent: Option<String>,
    /// Who is calling; sent only if the caller identified itself. Shared,
    /// so that an instance builds its identity once rather than per call,
    /// and a callee keeps the decoded one without copying it.
    pub caller: Option<Arc<Caller>>,
    /// Lets the callee deduplicate retried calls.
    pub idempotency_key: Option<String>,
    /// An end-user auth token, passed through to the callee.
    pub auth: Option<String>,
}

impl Headers {
    /// Headers for `service`/`entrypoint` with every optional header absent.
    pub fn new(service: impl Into<String>, entrypoint: impl Into<String>) -> Self {
        Headers {
            service: service.into(),
            entrypoint: entrypoint.into(),
            ..Headers::default()
        }
    }

    /// Every string header as `(tag, value)`, in encoding order.
    fn strings(&self) -> impl Iterator<Item = (u8, &str)> {
        let caller = self.caller.as_ref();
        [
            (TAG_SERVICE, Some(self.service.as_str())),
            (TAG_ENTRYPOINT, Some(self.entrypoint.as_str())),
            (TAG_VERSION, self.version.as_deref()),
            (TAG_TRACEPARENT, self.traceparent.as_deref()),
            (TAG_CALLER_SERVICE, caller.map(|c| c.service.as_str())),
            (TAG_CALLER_VERSION, caller.map(|c| c.version.as_str())),
            (TAG_CALLER_INSTANCE, caller.map(|c| c.instance.as_str())),
            (TAG_IDEMPOTENCY_KEY, self.idempotency_key.as_deref()),
            (TAG_AUTH, self.auth.as_deref()),
        ]
        .into_iter()
        .filter_map(|(tag, v)| v.map(|v| (tag, v)))
    }

    /// The size of the encoded header block.
    fn block_len(&self) -> usize {
        let strings: usize = self.strings().map(|(_, v)| 3 + v.len()).sum();
        strings + if self.timeout.is_some() { 3 + 8 } else { 0 }
    }

    fn check_lengths(&self) -> Result<(), WireError> {
        match self
            .strings()
            .find(|(_, v)| v.len() > usize::from(u16::MAX))
        {
            Some((tag, _)) => Err(WireError::HeaderTooLong { tag }),
            None => Ok(()),
        }
    }

    fn encode(&self, dst: &mut BytesMut) {
        for (tag, value) in self.strings() {
            dst.put_u8(tag);
            // `check_lengths` ran first.
            dst.put_u16(value.len() as u16);
            dst.put_slice(value.as_bytes());
        }
        if let Some(timeout) = self.timeout {
            dst.put_u8(TAG_TIMEOUT);
            dst.put_u16(8);
            dst.put_u64(u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX));
        }
    }
}

/// The identity of the calling service instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The calling service's name.
    pub service: String,
    /// The calling service's version.
    pub version: String,
    /// The calling instance's id.
    pub instance: String,
}

impl Frame {
    /// The call id: the id field for call frames, 0 for ping/pong, `last_id` for go-away.
    pub fn id(&self) -> u64 {
        match self {
            Frame::Request(r) => r.id,
            Frame::Response { id, .. }
            | Frame::Error { id, .. }
            | Frame::StreamItem { id, .. }
            | Frame::StreamEnd { id }
            | Frame::Cancel { id } => *id,
            Frame::Ping { .. } | Frame::Pong { .. } => 0,
            Frame::GoAway { last_id, .. } => *last_id,
        }
    }

    /// The frame's kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            Frame::Request(_) => FrameKind::Request,
            Frame::Response { .. } => FrameKind::Response,
            Frame::Error { .. } => FrameKind::Error,
            Frame::StreamItem { .. } => FrameKind::StreamItem,
            Frame::StreamEnd { .. } => FrameKind::StreamEnd,
            Frame::Cancel { .. } => FrameKind::Cancel,
            Frame::Ping { .. } => FrameKind::Ping,
            Frame::Pong { .. } => FrameKind::Pong,
            Frame::GoAway { .. } => FrameKind::GoAway,
        }
    }

    /// The body size, given the header block size for a request (computed once by callers).
    fn body_len(&self, block_len: usize) -> usize {
        match self {
            Frame::Request(r) => 4 + block_len + r.payload.len(),
            Frame::Response { payload, .. }
            | Frame::Error { payload, .. }
            | Frame::StreamItem { payload, .. } => payload.len(),
            Frame::StreamEnd { .. } | Frame::Cancel { .. } => 0,
            Frame::Ping { .. } | Frame::Pong { .. } => 8,
            Frame::GoAway { reason, .. } => reason.len(),
        }
    }

    fn block_len(&self) -> usize {
        match self {
            Frame::Request(r) => r.headers.block_len(),
            _ => 0,
        }
    }

    /// The number of bytes [`encode`](Self::encode) writes, length prefix included.
    pub fn encoded_len(&self) -> usize {
        LEN_PREFIX + MIN_FRAME_LEN as usize + self.body_len(self.block_len())
    }

    /// Appends the frame to `dst`.
    ///
    /// Fails without writing anything with [`WireError::FrameTooLarge`] if the frame's size
    /// (its length prefix value) would exceed `max_frame_size`, or with
    /// [`WireError::HeaderTooLong`] if a header value exceeds 65535 bytes.
    pub fn encode(&self, dst: &mut BytesMut, max_frame_size: u32) -> Result<(), WireError> {
        if let Frame::Request(r) = self {
            r.headers.check_lengths()?;
        }
        let block_len = self.block_len();
        let body_len = self.body_len(block_len);
        let len = u64::from(MIN_FRAME_LEN) + body_len as u64;
        if len > u64::from(max_frame_size) {
            return Err(WireError::FrameTooLarge {
                len,
                max: max_frame_size,
            });
        }
        dst.reserve(LEN_PREFIX + len as usize);
        // `len <= max_frame_size`, a u32.
        dst.put_u32(len as u32);
        dst.put_u8(self.kind() as u8);
        dst.put_u8(0);
        dst.put_u64(self.id());
        match self {
            Frame::Request(r) => {
                // The block is part of a frame that fits in a u32.
                dst.put_u32(block_len as u32);
                r.headers.encode(dst);
                dst.put_slice(&r.payload);
            }
            Frame::Response { payload, .. }
            | Frame::Error { payload, .. }
            | Frame::StreamItem { payload, .. } => dst.put_slice(payload),
            Frame::StreamEnd { .. } | Frame::Cancel { .. } => {}
            Frame::Ping { data } | Frame::Pong { data } => dst.put_u64(*data),
            Frame::GoAway { reason, .. } => dst.put_slice(reason.as_bytes()),
        }
        Ok(())
    }
}
