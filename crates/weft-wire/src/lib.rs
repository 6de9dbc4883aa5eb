//! The weft wire protocol: pure encoding and decoding, no IO.
//!
//! A connection opens with a client [`Preface`] (magic, version, codecs, frame size limit,
//! mesh credential), answered by a [`ServerHello`] (see [`negotiate`]). Then both sides
//! exchange length-prefixed [`Frame`]s, split from the byte stream by a [`FrameDecoder`].
//!
//! ```
//! use std::time::Duration;
//! use bytes::{Bytes, BytesMut};
//! use weft_wire::{Decoded, Frame, FrameDecoder, Request, DEFAULT_MAX_FRAME_SIZE};
//!
//! let mut request = Request::new(1, "greeter", "hello", Bytes::from_static(b"{\"name\":\"Ada\"}"));
//! request.headers.timeout = Some(Duration::from_millis(250));
//! let frame = Frame::Request(request);
//!
//! let mut buf = BytesMut::new();
//! frame.encode(&mut buf, DEFAULT_MAX_FRAME_SIZE)?;
//!
//! let mut decoder = FrameDecoder::new(DEFAULT_MAX_FRAME_SIZE);
//! assert_eq!(decoder.decode(&mut buf)?, Some(Decoded::Frame(frame)));
//! assert_eq!(decoder.decode(&mut buf)?, None); // nothing left: wait for more bytes
//! # Ok::<(), weft_wire::WireError>(())
//! ```
//!
//! Decoding never panics; a bad frame with a readable length is skipped and reported with
//! its id ([`WireError::frame_id`]) so the connection can go on, and a frame over the size
//! limit is reported as [`Decoded::Oversized`] and its body discarded.

mod codec;
mod decode;
mod error;
mod frame;
mod handshake;

pub use codec::{Codec, CodecSet};
pub use decode::{Decoded, FrameDecoder};
pub use error::WireError;
pub use frame::{Caller, Frame, FrameKind, Headers, Request};
pub use handshake::{Preface, ServerHello, negotiate};

/// The first four bytes of every weft connection, in both directions.
///
/// `0xF7` is not ASCII, so it can never begin an HTTP request: a host can sniff these bytes
/// to serve weft and HTTP on one port.
pub const MAGIC: [u8; 4] = [0xF7, b'W', b'F', b'T'];

/// The protocol version this crate speaks.
pub const PROTOCOL_VERSION: u8 = 1;

/// The default frame size limit: 16 MiB (value of a frame's length prefix).
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16 * 1024 * 1024;

/// The smallest frame size limit a connection may have: 1 KiB.
///
/// Every frame carries a 10-byte header (kind, flags, id), and a request adds its service,
/// entrypoint and headers, so with a smaller limit even an empty call could not be sent.
/// [`negotiate`] rejects a [`Preface`] offering less (and a server configured with less),
/// saying so, rather than accepting a connection on which every call would fail.
///
/// ```
/// use weft_wire::{negotiate, CodecSet, Preface, ServerHello, MIN_MAX_FRAME_SIZE};
///
/// let preface = Preface::new(CodecSet::ALL).with_max_frame_size(MIN_MAX_FRAME_SIZE - 1);
/// assert!(matches!(
///     negotiate(&preface, CodecSet::ALL, 1 << 20),
///     ServerHello::Rejected { .. }
/// ));
/// ```
pub const MIN_MAX_FRAME_SIZE: u32 = 1024;
