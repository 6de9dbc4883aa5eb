use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{
    LEN_PREFIX, MIN_FRAME_LEN, TAG_AUTH, TAG_CALLER_INSTANCE, TAG_CALLER_SERVICE,
    TAG_CALLER_VERSION, TAG_ENTRYPOINT, TAG_IDEMPOTENCY_KEY, TAG_SERVICE, TAG_TIMEOUT,
    TAG_TRACEPARENT, TAG_VERSION,
};
use crate::{Caller, Frame, FrameKind, Headers, Request, WireError};

/// Bytes on the wire before a frame's body: length prefix, kind, flags, id.
const HEADER_LEN: usize = LEN_PREFIX + MIN_FRAME_LEN as usize;

/// What [`FrameDecoder::decode`] produced.
#[allow(
    clippy::large_enum_variant,
    reason = "requests are the common frame and already own several heap strings; boxing them would add an allocation per call and change the shape other crates match on"
)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A complete, valid frame.
    Frame(Frame),
    /// A frame whose declared length exceeds the limit. The decoder reports it as soon as
    /// its header (len, kind, flags, id) is read, then silently discards its body as the
    /// bytes arrive, so the connection stays usable and the receiver can answer `id` with
    /// an error.
    Oversized {
        /// The frame's kind byte (possibly unknown).
        kind: u8,
        /// The frame's id.
        id: u64,
        /// The declared frame size (value of the length prefix).
        len: u64,
        /// The limit in force.
        max: u32,
    },
}

/// Splits a byte stream into frames, enforcing a size limit.
///
/// Feed it the connection's read buffer; it consumes exactly the bytes of what it returns.
/// It never panics, whatever the input.
///
/// ```
/// use bytes::BytesMut;
/// use weft_wire::{Decoded, Frame, FrameDecoder};
///
/// let mut buf = BytesMut::new();
/// Frame::Ping { data: 1 }.encode(&mut buf, 1024)?;
/// Frame::Pong { data: 2 }.encode(&mut buf, 1024)?;
///
/// let mut decoder = FrameDecoder::new(1024);
/// let mut frames = Vec::new();
/// while let Some(decoded) = decoder.decode(&mut buf)? {
///     frames.push(decoded);
/// }
/// assert_eq!(frames, [
///     Decoded::Frame(Frame::Ping { data: 1 }),
///     Decoded::Frame(Frame::Pong { data: 2 }),
/// ]);
/// # Ok::<(), weft_wire::WireError>(())
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_size: u32,
    /// Body bytes of an oversized frame still to be dropped; they arrive after the frame
    /// was reported, and must not be mistaken for the next frame.
    discarding: u64,
}

impl FrameDecoder {
    /// A decoder accepting frames of up to `max_frame_size` bytes (value of the length prefix).
    pub fn new(max_frame_size: u32) -> Self {
        FrameDecoder {
            max_frame_size,
            discarding: 0,
        }
    }

    /// The size limit in force.
    pub fn max_frame_size(&self) -> u32 {
        self.max_frame_size
    }

    /// Changes the size limit, e.g. to the value agreed in the handshake.
    pub fn set_max_frame_size(&mut self, max_frame_size: u32) {
        self.max_frame_size = max_frame_size;
    }

    /// Decodes the next frame from the front of `src`.
    ///
    /// `Ok(None)` means more bytes are needed. Consumes exactly the bytes of the frames it
    /// returns (and of the malformed frames it reports); payloads are zero-copy slices of
    /// `src`'s buffer. Never panics on any input.
    ///
    /// A non-fatal error ([`WireError::is_fatal`] is `false`) reports one bad frame that has
    /// been skipped: keep decoding. After a fatal error the stream cannot be trusted.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, WireError> {
        if self.discarding > 0 {
            self.discard(src);
            if self.discarding > 0 {
                return Ok(None);
            }
        }
        if src.len() < LEN_PREFIX {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if len < MIN_FRAME_LEN {
            return Err(WireError::FrameTooShort { len });
        }
        if len > self.max_frame_size {
            if src.len() < HEADER_LEN {
                return Ok(None);
            }
            src.advance(LEN_PREFIX);
            let kind = src.get_u8();
            let _flags = src.get_u8();
            let id = src.get_u64();
            self.discarding = u64::from(len - MIN_FRAME_LEN);
            self.discard(src);
            return Ok(Some(Decoded::Oversized {
                kind,
                id,
                len: u64::from(len),
                max: self.max_frame_size,
            }));
        }
        // `len <= max_frame_size`, so this allocation is bounded by the limit.
        let total = LEN_PREFIX + len as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(LEN_PREFIX);
        let kind = src.get_u8();
        let _flags = src.get_u8();
        let id = src.get_u64();
        let body = src.split_to(len as usize - MIN_FRAME_LEN as usize).freeze();
        parse(kind, id, body).map(|f| Some(Decoded::Frame(f)))
    }

    fn discard(&mut self, src: &mut BytesMut) {
        // Bounded by `src.len()`, so the cast cannot truncate.
        let n = self.discarding.min(src.len() as u64) as usize;
        src.advance(n);
        self.discarding -= n as u64;
    }
}

fn parse(kind: u8, id: u64, mut body: Bytes) -> Result<Frame, WireError> {
    let malformed = |reason| WireError::Malformed { id, reason };
    let Some(kind) = FrameKind::from_u8(kind) else {
        return Err(WireError::UnknownFrameKind { kind, id });
    };
    Ok(match kind {
        FrameKind::Request => {
            if body.len() < 4 {
                return Err(malformed(
                    "request body is too short for its header block length",
                ));
            }
            let block_len = body.get_u32() as usize;
            if block_len > body.len() {
                return Err(malformed("request header block is longer than the frame"));
            }
            let block = body.split_to(block_len);
            Frame::Request(Request {
                id,
                headers: parse_headers(&block).map_err(malformed)?,
                payload: body,
            })
        }
        FrameKind::Response => Frame::Response { id, payload: body },
        FrameKind::Error => Frame::Error { id, payload: body },
        FrameKind::StreamItem => Frame::StreamItem { id, payload: body },
        FrameKind::StreamEnd | FrameKind::Cancel => {
            if !body.is_empty() {
                return Err(malformed(
                    "stream-end and cancel frames must have an empty body",
                ));
            }
            if kind == FrameKind::StreamEnd {
                Frame::StreamEnd { id }
            } else {
                Frame::Cancel { id }
            }
        }
        FrameKind::Ping | FrameKind::Pong => {
            if body.len() != 8 {
                return Err(malformed("ping and pong bodies must be exactly 8 bytes"));
            }
            let data = body.get_u64();
            if kind == FrameKind::Ping {
                Frame::Ping { data }
            } else {
                Frame::Pong { data }
            }
        }
        FrameKind::GoAway => Frame::GoAway {
            last_id: id,
            reason: String::from_utf8(body.to_vec())
                .map_err(|_| malformed("go-away reason is not valid UTF-8"))?,
        },
    })
}

fn parse_headers(mut block: &[u8]) -> Result<Headers, &'static str> {
    let mut headers = Headers::default();
    let mut seen: u16 = 0;
    let (mut caller_service, mut caller_version, mut caller_instance) = (None, None, None);
    while !block.is_empty() {
        if block.len() < 3 {
            return Err("truncated header TLV");
        }
        let tag = block[0];
        let len = usize::from(u16::from_be_bytes([block[1], block[2]]));
        block = &block[3..];
        if block.len() < len {
            return Err("header TLV value runs past the header block");
        }
        let (value, rest) = block.split_at(len);
        block = rest;
        if !(TAG_SERVICE..=TAG_AUTH).contains(&tag) {
            // Unknown tags come from newer peers; skipping keeps them compatible.
            continue;
        }
        if seen & (1 << tag) != 0 {
            // Duplicates could make the router and the callee disagree on, say, `auth`.
            return Err("duplicate header tag");
        }
        seen |= 1 << tag;
        if tag == TAG_TIMEOUT {
            let micros: [u8; 8] = value
                .try_into()
                .map_err(|_| "timeout header must be exactly 8 bytes")?;
            headers.timeout = Some(Duration::from_micros(u64::from_be_bytes(micros)));
            continue;
        }
        let text = std::str::from_utf8(value)
            .map_err(|_| not_utf8(tag))?
            .to_owned();
        match tag {
            TAG_SERVICE => headers.service = text,
            TAG_ENTRYPOINT => headers.entrypoint = text,
            TAG_VERSION => headers.version = Some(text),
            TAG_TRACEPARENT => headers.traceparent = Some(text),
            TAG_CALLER_SERVICE => caller_service = Some(text),
            TAG_CALLER_VERSION => caller_version = Some(text),
            TAG_CALLER_INSTANCE => caller_instance = Some(text),
            TAG_IDEMPOTENCY_KEY => headers.idempotency_key = Some(text),
            _ => headers.auth = Some(text),
        }
    }
    if seen & (1 << TAG_SERVICE) == 0 {
        return Err("request has no service header");
    }
    if seen & (1 << TAG_ENTRYPOINT) == 0 {
        return Err("request has no entrypoint header");
    }
    if let (Some(service), Some(version), Some(instance)) =
        (caller_service, caller_version, caller_instance)
    {
        headers.caller = Some(Arc::new(Caller {
            service,
            version,
            instance,
        }));
    }
    Ok(headers)
}

fn not_utf8(tag: u8) -> &'static str {
    match tag {
        TAG_SERVICE => "service header is not valid UTF-8",
        TAG_ENTRYPOINT => "entrypoint header is not valid UTF-8",
        TAG_VERSION => "version header is not valid UTF-8",
        TAG_TRACEPARENT => "traceparent header is not valid UTF-8",
        TAG_CALLER_SERVICE => "caller service header is not valid UTF-8",
        TAG_CALLER_VERSION => "caller version header is not valid UTF-8",
        TAG_CALLER_INSTANCE => "caller instance header is not valid UTF-8",
        TAG_IDEMPOTENCY_KEY => "idempotency key header is not valid UTF-8",
        _ => "auth header is not valid UTF-8",
    }
}

#[cfg(test)]
mod tests {
    use bytes::BufMut;

    use super::*;

    const MAX: u32 = 1024;

    fn full_request() -> Frame {
        Frame::Request(Request {
            id: u64::MAX - 3,
            headers: Headers {
                service: "billing".into(),
                entrypoint: "charge".into(),
                version: Some("^1.2".into()),
                timeout: Some(Duration::from_micros(1_500_123)),
                traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
                caller: Some(Arc::new(Caller {
                    service: "shop".into(),
                    version: "2.0.1".into(),
                    instance: "shop-7f9c".into(),
                })),
                idempotency_key: Some("order-42".into()),
                auth: Some("Bearer xyz".into()),
            },
            payload: Bytes::from_static(b"{\"amount\":100}"),
        })
    }

    fn every_kind() -> Vec<Frame> {
        vec![
            full_request(),
            Frame::Request(Request::new(1, "", "", Bytes::new())),
            Frame::Response {
                id: 2,
                payload: Bytes::from_static(b"ok"),
            },
            Frame::Error {
                id: 3,
                payload: Bytes::from_static(b"{\"code\":\"not_found\"}"),
            },
            Frame::StreamItem {
                id: 4,
                payload: Bytes::new(),
            },
            Frame::StreamEnd { id: 5 },
            Frame::Cancel { id: 6 },
            Frame::Ping { data: 0xDEAD_BEEF },
            Frame::Pong { data: u64::MAX },
            Frame::GoAway {
                last_id: 99,
                reason: "shutting down ⏻".into(),
            },
        ]
    }

    fn encode(frame: &Frame) -> BytesMut {
        let mut b = BytesMut::new();
        frame.encode(&mut b, MAX).unwrap();
        b
    }

    /// A frame with the given kind, id and raw body.
    fn raw_frame(kind: u8, id: u64, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(10 + body.len() as u32);
        b.put_u8(kind);
        b.put_u8(0);
        b.put_u64(id);
        b.put_slice(body);
        b
    }

    fn request_body(tlvs: &[(u8, &[u8])], payload: &[u8]) -> Vec<u8> {
        let mut block = Vec::new();
        for (tag, v) in tlvs {
            block.put_u8(*tag);
            block.put_u16(v.len() as u16);
            block.put_slice(v);
        }
        let mut body = Vec::new();
        body.put_u32(block.len() as u32);
        body.extend_from_slice(&block);
        body.extend_from_slice(payload);
        body
    }

    fn ping() -> BytesMut {
        encode(&Frame::Ping { data: 77 })
    }

    fn assert_ping_next(d: &mut FrameDecoder, b: &mut BytesMut) {
        assert_eq!(
            d.decode(b).unwrap(),
            Some(Decoded::Frame(Frame::Ping { data: 77 }))
        );
    }

    #[test]
    fn every_kind_round_trips_with_exact_length() {
        for frame in every_kind() {
            let mut b = encode(&frame);
            assert_eq!(b.len(), frame.encoded_len(), "{frame:?}");
            assert_eq!(b[4], frame.kind() as u8);
            let mut d = FrameDecoder::new(MAX);
            assert_eq!(d.decode(&mut b).unwrap(), Some(Decoded::Frame(frame)));
            assert!(b.is_empty());
        }
    }

    #[test]
    fn header_layout_is_exact() {
        let b = encode(&Frame::Cancel { id: 0x0102 });
        assert_eq!(&b[..], &[0, 0, 0, 10, 6, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        let b = encode(&Frame::Request(Request::new(9, "s", "e", &b"P"[..])));
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 23, 1, 0, 0, 0, 0, 0, 0, 0, 0, 9,
            0, 0, 0, 8, 1, 0, 1, b's', 2, 0, 1, b'e',
            b'P',
        ];
        assert_eq!(&b[..], &expected);
    }

    #[test]
    fn ids() {
        assert_eq!(Frame::Ping { data: 5 }.id(), 0);
        assert_eq!(
            Frame::GoAway {
                last_id: 8,
                reason: String::new()
            }
            .id(),
            8
        );
        assert_eq!(full_request().id(), u64::MAX - 3);
    }

    #[test]
    fn payload_is_a_zero_copy_slice_of_the_input() {
        let mut b = encode(&Frame::Response {
            id: 1,
            payload: Bytes::from(vec![7u8; 100]),
        });
        let body_start = b.as_ptr() as usize + 14;
        let Some(Decoded::Frame(Frame::Response { payload, .. })) =
            FrameDecoder::new(MAX).decode(&mut b).unwrap()
        else {
            panic!("expected a response");
        };
        assert_eq!(payload.as_ptr() as usize, body_start);
    }

    #[test]
    fn byte_by_byte_returns_none_until_complete() {
        let mut all = BytesMut::new();
        let frames = every_kind();
        for f in &frames {
            all.extend_from_slice(&encode(f));
        }
        let mut d = FrameDecoder::new(MAX);
        let mut b = BytesMut::new();
        let mut out = Vec::new();
        for byte in all.iter() {
            b.put_u8(*byte);
            if let Some(Decoded::Frame(f)) = d.decode(&mut b).unwrap() {
                assert!(
                    b.is_empty(),
                    "frame returned before all its bytes were consumed"
                );
                out.push(f);
            }
        }
        assert_eq!(out, frames);
    }

    #[test]
    fn unknown_flags_are_ignored() {
        let mut b = ping();
        b[5] = 0xFF;
        assert_ping_next(&mut FrameDecoder::new(MAX), &mut b);
    }

    #[test]
    fn oversized_is_reported_early_then_discarded_across_feeds() {
        let big = Frame::StreamItem {
            id: 31,
            payload: Bytes::from(vec![0xAB; 3000]),
        };
        let mut wire = BytesMut::new();
        big.encode(&mut wire, u32::MAX).unwrap();
        wire.extend_from_slice(&ping());

        let mut d = FrameDecoder::new(MAX);
        let mut b = BytesMut::new();
        // Header not complete yet: nothing to report.
        b.extend_from_slice(&wire.split_to(13));
        assert_eq!(d.decode(&mut b).unwrap(), None);
        b.extend_from_slice(&wire.split_to(100));
        assert_eq!(
            d.decode(&mut b).unwrap(),
            Some(Decoded::Oversized {
                kind: FrameKind::StreamItem as u8,
                id: 31,
                len: 3010,
                max: MAX
            })
        );
        assert!(b.is_empty());
        // The body arrives in pieces, and the last piece carries the next frame's start.
        let tail = 5 + ping().len();
        while wire.len() > tail {
            b.extend_from_slice(&wire.split_to(1000.min(wire.len() - tail)));
            assert_eq!(d.decode(&mut b).unwrap(), None);
            assert!(b.is_empty());
        }
        b.extend_from_slice(&wire);
        assert_ping_next(&mut d, &mut b);
        assert!(b.is_empty());
    }

    #[test]
    fn oversized_then_next_frame_in_one_buffer() {
        let mut b = raw_frame(42, 5, &[1u8; 2000]);
        b.extend_from_slice(&ping());
        let mut d = FrameDecoder::new(MAX);
        assert!(matches!(
            d.decode(&mut b).unwrap(),
            Some(Decoded::Oversized {
                kind: 42,
                id: 5,
                len: 2010,
                ..
            })
        ));
        assert_ping_next(&mut d, &mut b);
    }

    #[test]
    fn encode_refuses_too_large_before_writing() {
        let f = Frame::Response {
            id: 1,
            payload: Bytes::from(vec![0; 100]),
        };
        let mut b = BytesMut::from(&b"keep"[..]);
        let err = f.encode(&mut b, 109).unwrap_err();
        assert!(matches!(
            err,
            WireError::FrameTooLarge { len: 110, max: 109 }
        ));
        assert!(err.to_string().contains("raise max_frame_size"));
        assert!(!err.is_fatal());
        assert_eq!(&b[..], b"keep");
        f.encode(&mut b, 110).unwrap();
    }

    #[test]
    fn header_too_long_is_an_encode_error() {
        let mut r = Request::new(1, "s", "e", Bytes::new());
        r.headers.auth = Some("a".repeat(65_536));
        let mut b = BytesMut::new();
        let err = Frame::Request(r.clone())
            .encode(&mut b, u32::MAX)
            .unwrap_err();
        assert!(matches!(err, WireError::HeaderTooLong { tag: 10 }));
        assert!(err.to_string().contains("auth"));
        assert!(b.is_empty());
        r.headers.auth = Some("a".repeat(65_535));
        Frame::Request(r).encode(&mut b, u32::MAX).unwrap();
    }

    #[test]
    fn timeout_is_micros_and_saturates() {
        let mut r = Request::new(1, "s", "e", Bytes::new());
        r.headers.timeout = Some(Duration::MAX);
        let mut b = BytesMut::new();
        Frame::Request(r).encode(&mut b, MAX).unwrap();
        let Some(Decoded::Frame(Frame::Request(r))) =
            FrameDecoder::new(MAX).decode(&mut b).unwrap()
        else {
            panic!("expected a request");
        };
        assert_eq!(r.headers.timeout, Some(Duration::from_micros(u64::MAX)));
    }

    /// Decodes `bad` followed by a ping; checks `bad` gives a non-fatal error with `id`
    /// mentioning `reason`, and that the ping then decodes.
    fn assert_skipped(bad: BytesMut, id: u64, reason: &str) {
        let mut b = bad;
        b.extend_from_slice(&ping());
        let mut d = FrameDecoder::new(MAX);
        let err = d.decode(&mut b).unwrap_err();
        assert!(!err.is_fatal(), "{err}");
        assert_eq!(err.frame_id(), Some(id), "{err}");
        assert!(err.to_string().contains(reason), "{err}");
        assert_ping_next(&mut d, &mut b);
    }

    #[test]
    fn malformed_frames_are_skipped_with_their_id() {
        assert_skipped(raw_frame(0, 11, b"x"), 11, "unknown frame kind 0");
        assert_skipped(raw_frame(200, 12, b""), 12, "unknown frame kind 200");
        let body = request_body(&[(1, b"s"), (2, b"\xFF\xFE")], b"");
        assert_skipped(
            raw_frame(1, 13, &body),
            13,
            "entrypoint header is not valid UTF-8",
        );
        // The block ends two bytes into a third TLV's 3-byte tag and length.
        let truncated = [0, 0, 0, 10, 1, 0, 1, b's', 2, 0, 1, b'e', 3, 0];
        assert_skipped(raw_frame(1, 14, &truncated), 14, "truncated header TLV");
        let over = [0, 0, 0, 3, 1, 0, 9, b'a'];
        assert_skipped(raw_frame(1, 15, &over), 15, "runs past the header block");
        assert_skipped(raw_frame(1, 16, &[0, 0, 0, 9]), 16, "longer than the frame");
        assert_skipped(raw_frame(1, 17, &[0, 0]), 17, "too short");
        let body = request_body(&[(2, b"e")], b"");
        assert_skipped(raw_frame(1, 18, &body), 18, "no service header");
        let body = request_body(&[(1, b"s")], b"");
        assert_skipped(raw_frame(1, 19, &body), 19, "no entrypoint header");
        let body = request_body(&[(1, b"s"), (2, b"e"), (4, b"1234")], b"");
        assert_skipped(
            raw_frame(1, 20, &body),
            20,
            "timeout header must be exactly 8",
        );
        let body = request_body(&[(1, b"s"), (2, b"e"), (10, b"a"), (10, b"b")], b"");
        assert_skipped(raw_frame(1, 21, &body), 21, "duplicate header");
        assert_skipped(raw_frame(7, 22, &[1, 2, 3]), 22, "exactly 8 bytes");
        assert_skipped(raw_frame(5, 23, &[1]), 23, "empty body");
        assert_skipped(
            raw_frame(9, 24, b"\xC3"),
            24,
            "go-away reason is not valid UTF-8",
        );
    }

    #[test]
    fn unknown_tags_are_skipped_and_partial_caller_is_dropped() {
        let body = request_body(
            &[
                (1, b"svc"),
                (200, b"future header"),
                (2, b"ep"),
                (6, b"caller"),
                (7, b"1.0.0"),
                (0, b""),
            ],
            b"payload",
        );
        let mut b = raw_frame(1, 3, &body);
        let Some(Decoded::Frame(Frame::Request(r))) =
            FrameDecoder::new(MAX).decode(&mut b).unwrap()
        else {
            panic!("expected a request");
        };
        assert_eq!(r.headers, Headers::new("svc", "ep"));
        assert_eq!(&r.payload[..], b"payload");
    }

    #[test]
    fn length_below_header_is_fatal() {
        for len in [0u32, 9] {
            let mut b = BytesMut::new();
            b.put_u32(len);
            b.extend_from_slice(&[0; 20]);
            let err = FrameDecoder::new(MAX).decode(&mut b).unwrap_err();
            assert!(err.is_fatal());
            assert_eq!(err.frame_id(), None);
        }
    }

    #[test]
    fn incomplete_frame_reserves_room_and_consumes_nothing() {
        let mut b = encode(&Frame::Response {
            id: 1,
            payload: Bytes::from(vec![1; 500]),
        });
        b.truncate(100);
        let mut d = FrameDecoder::new(MAX);
        assert_eq!(d.decode(&mut b).unwrap(), None);
        assert_eq!(b.len(), 100);
        assert!(b.capacity() >= 514);
    }
}
