use bytes::{Buf, BufMut, BytesMut};

use crate::{
    Codec, CodecSet, DEFAULT_MAX_FRAME_SIZE, MAGIC, MIN_MAX_FRAME_SIZE, PROTOCOL_VERSION, WireError,
};

/// Bytes of a preface before the credential: magic, version, codecs, max frame size, credential length.
const PREFACE_FIXED_LEN: usize = 4 + 1 + 1 + 4 + 2;
/// Bytes of a server hello up to and including the status byte.
const HELLO_PREFIX_LEN: usize = 4 + 1 + 1;
const STATUS_ACCEPTED: u8 = 0;
const STATUS_REJECTED: u8 = 1;

/// The first bytes a client sends on a connection.
///
/// Layout: `MAGIC(4) version(u8) codecs(u8) max_frame_size(u32 BE) credential_len(u16 BE) credential(utf8)`.
/// An empty credential is the same as none: `Some("")` decodes as `None`.
///
/// ```
/// use bytes::BytesMut;
/// use weft_wire::{CodecSet, Preface};
///
/// let preface = Preface::new(CodecSet::ALL).with_credential("mesh-token");
/// let mut buf = BytesMut::new();
/// preface.encode(&mut buf);
/// assert_eq!(Preface::decode(&mut buf).unwrap(), Some(preface));
/// assert!(buf.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preface {
    /// The protocol version the client speaks.
    pub version: u8,
    /// The payload codecs the client accepts.
    pub codecs: CodecSet,
    /// The largest frame the client accepts (value of a frame's length prefix).
    pub max_frame_size: u32,
    /// The mesh credential, if any.
    pub credential: Option<String>,
}

impl Preface {
    /// A preface for [`PROTOCOL_VERSION`] offering `codecs`, with
    /// [`DEFAULT_MAX_FRAME_SIZE`] and no credential.
    pub fn new(codecs: CodecSet) -> Self {
        Preface {
            version: PROTOCOL_VERSION,
            codecs,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            credential: None,
        }
    }

    /// Sets the mesh credential.
    pub fn with_credential(mut self, credential: impl Into<String>) -> Self {
        self.credential = Some(credential.into());
        self
    }

    /// Sets the largest frame this side accepts.
    pub fn with_max_frame_size(mut self, max_frame_size: u32) -> Self {
        self.max_frame_size = max_frame_size;
        self
    }

    /// The number of bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        PREFACE_FIXED_LEN + self.credential.as_deref().map_or(0, str::len)
    }

    /// Appends the preface to `dst`.
    ///
    /// # Panics
    ///
    /// If the credential is longer than 65535 bytes; use [`try_encode`](Self::try_encode)
    /// when the credential is not known to be short.
    pub fn encode(&self, dst: &mut BytesMut) {
        if let Err(err) = self.try_encode(dst) {
            panic!("{err}");
        }
    }

    /// Appends the preface to `dst`, or fails with [`WireError::CredentialTooLong`]
    /// without writing anything.
    pub fn try_encode(&self, dst: &mut BytesMut) -> Result<(), WireError> {
        let credential = self.credential.as_deref().unwrap_or("");
        let credential_len =
            u16::try_from(credential.len()).map_err(|_| WireError::CredentialTooLong)?;
        dst.reserve(self.encoded_len());
        dst.put_slice(&MAGIC);
        dst.put_u8(self.version);
        dst.put_u8(self.codecs.bits());
        dst.put_u32(self.max_frame_size);
        dst.put_u16(credential_len);
        dst.put_slice(credential.as_bytes());
        Ok(())
    }

    /// Decodes a preface from the front of `src`.
    ///
    /// Returns `Ok(None)` when more bytes are needed (nothing is consumed), and consumes
    /// exactly the preface on success. A preface with another protocol version still
    /// decodes, so the server can answer it with a clear rejection (see [`negotiate`]).
    /// Fails fast with [`WireError::BadMagic`] as soon as the bytes received differ from
    /// [`MAGIC`]. A credential that is not UTF-8 fails with [`WireError::CredentialNotUtf8`]
    /// after the whole preface was consumed, so a server can answer it with a rejection.
    pub fn decode(src: &mut BytesMut) -> Result<Option<Preface>, WireError> {
        check_magic(src)?;
        if src.len() < PREFACE_FIXED_LEN {
            return Ok(None);
        }
        let credential_len = usize::from(u16::from_be_bytes([src[10], src[11]]));
        if src.len() < PREFACE_FIXED_LEN + credential_len {
            return Ok(None);
        }
        src.advance(4);
        let version = src.get_u8();
        let codecs = CodecSet::from_bits(src.get_u8());
        let max_frame_size = src.get_u32();
        src.advance(2);
        let raw = src.split_to(credential_len);
        let credential = if raw.is_empty() {
            None
        } else {
            Some(String::from_utf8(raw.to_vec()).map_err(|_| WireError::CredentialNotUtf8)?)
        };
        Ok(Some(Preface {
            version,
            codecs,
            max_frame_size,
            credential,
        }))
    }
}

/// The server's answer to a [`Preface`].
///
/// Layout: `MAGIC(4) version(u8) status(u8: 0 accepted, 1 rejected)`, then if accepted
/// `codec(u8) max_frame_size(u32 BE)`, if rejected `reason_len(u16 BE) reason(utf8)`.
///
/// ```
/// use bytes::BytesMut;
/// use weft_wire::{Codec, ServerHello};
///
/// let hello = ServerHello::Accepted { version: 1, codec: Codec::Json, max_frame_size: 1 << 20 };
/// let mut buf = BytesMut::new();
/// hello.encode(&mut buf);
/// assert_eq!(ServerHello::decode(&mut buf).unwrap(), Some(hello));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHello {
    /// The connection is open: frames follow.
    Accepted {
        /// The protocol version both sides will speak.
        version: u8,
        /// The payload codec both sides will use.
        codec: Codec,
        /// The frame size limit both sides will enforce (the smaller of the two offers).
        max_frame_size: u32,
    },
    /// The server refuses the connection and will close it.
    Rejected {
        /// Why, in words meant for the operator; says what to do.
        reason: String,
    },
}

impl ServerHello {
    /// The number of bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        HELLO_PREFIX_LEN
            + match self {
                ServerHello::Accepted { .. } => 1 + 4,
                ServerHello::Rejected { reason } => 2 + truncated(reason).len(),
            }
    }

    /// Appends the hello to `dst`. A rejection reason longer than 65535 bytes is truncated
    /// (at a character boundary).
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.put_slice(&MAGIC);
        match self {
            ServerHello::Accepted {
                version,
                codec,
                max_frame_size,
            } => {
                dst.put_u8(*version);
                dst.put_u8(STATUS_ACCEPTED);
                dst.put_u8(codec.id());
                dst.put_u32(*max_frame_size);
            }
            ServerHello::Rejected { reason } => {
                let reason = truncated(reason);
                dst.put_u8(PROTOCOL_VERSION);
                dst.put_u8(STATUS_REJECTED);
                // `truncated` guarantees the length fits.
                dst.put_u16(reason.len() as u16);
                dst.put_slice(reason.as_bytes());
            }
        }
    }

    /// Decodes a hello from the front of `src`: `Ok(None)` when more bytes are needed
    /// (nothing is consumed); consumes exactly the hello on success.
    pub fn decode(src: &mut BytesMut) -> Result<Option<ServerHello>, WireError> {
        check_magic(src)?;
        if src.len() < HELLO_PREFIX_LEN {
            return Ok(None);
        }
        let version = src[4];
        match src[5] {
            STATUS_ACCEPTED => {
                if src.len() < HELLO_PREFIX_LEN + 5 {
                    return Ok(None);
                }
                let codec = Codec::from_id(src[6]).ok_or(WireError::InvalidHandshake {
                    reason: "server chose a codec this side does not know",
                })?;
                src.advance(HELLO_PREFIX_LEN + 1);
                let max_frame_size = src.get_u32();
                Ok(Some(ServerHello::Accepted {
                    version,
                    codec,
                    max_frame_size,
                }))
            }
            STATUS_REJECTED => {
                if src.len() < HELLO_PREFIX_LEN + 2 {
                    return Ok(None);
                }
                let reason_len = usize::from(u16::from_be_bytes([src[6], src[7]]));
                if src.len() < HELLO_PREFIX_LEN + 2 + reason_len {
                    return Ok(None);
                }
                src.advance(HELLO_PREFIX_LEN + 2);
                let raw = src.split_to(reason_len);
                // The reason is only shown to people: a bad byte should not hide it.
                let reason = String::from_utf8_lossy(&raw).into_owned();
                Ok(Some(ServerHello::Rejected { reason }))
            }
            _ => Err(WireError::InvalidHandshake {
                reason: "server hello has an unknown status byte",
            }),
        }
    }
}

/// Decides a server's answer to `preface`, for a server accepting `ours` codecs and frames
/// of up to `our_max_frame_size` bytes.
///
/// Rejects a different protocol version, disjoint codec sets, or a frame size limit (the
/// client's or `our_max_frame_size`) below [`MIN_MAX_FRAME_SIZE`] with a reason that says
/// what to do; otherwise accepts with the [preferred](CodecSet::preferred) common codec and
/// the smaller of the two frame size limits. The credential is not checked here.
///
/// ```
/// use weft_wire::{negotiate, Codec, CodecSet, Preface, ServerHello};
///
/// let preface = Preface::new(CodecSet::only(Codec::Json)).with_max_frame_size(2048);
/// assert_eq!(
///     negotiate(&preface, CodecSet::ALL, 4096),
///     ServerHello::Accepted { version: 1, codec: Codec::Json, max_frame_size: 2048 },
/// );
///
/// let zero = Preface::new(CodecSet::ALL).with_max_frame_size(0);
/// let ServerHello::Rejected { reason } = negotiate(&zero, CodecSet::ALL, 4096) else {
///     panic!("a frame size limit of 0 is refused");
/// };
/// assert!(reason.contains("frame size limit of 0 bytes"));
/// ```
pub fn negotiate(preface: &Preface, ours: CodecSet, our_max_frame_size: u32) -> ServerHello {
    if preface.version != PROTOCOL_VERSION {
        return ServerHello::Rejected {
            reason: format!(
                "protocol version {} is not supported; this endpoint speaks version {PROTOCOL_VERSION}: upgrade the older side",
                preface.version
            ),
        };
    }
    if preface.max_frame_size < MIN_MAX_FRAME_SIZE {
        return ServerHello::Rejected {
            reason: format!(
                "the client offers a frame size limit of {} bytes, below the minimum of {MIN_MAX_FRAME_SIZE} bytes that a call needs; raise the client's max_frame_size (the default is {DEFAULT_MAX_FRAME_SIZE})",
                preface.max_frame_size
            ),
        };
    }
    if our_max_frame_size < MIN_MAX_FRAME_SIZE {
        return ServerHello::Rejected {
            reason: format!(
                "this endpoint is configured with a frame size limit of {our_max_frame_size} bytes, below the minimum of {MIN_MAX_FRAME_SIZE} bytes that a call needs; its operator must raise its max_frame_size (the default is {DEFAULT_MAX_FRAME_SIZE})"
            ),
        };
    }
    match ours.preferred(preface.codecs) {
        Some(codec) => ServerHello::Accepted {
            version: PROTOCOL_VERSION,
            codec,
            max_frame_size: preface.max_frame_size.min(our_max_frame_size),
        },
        None => ServerHello::Rejected {
            reason: format!(
                "no common payload codec: the client offers {} and this endpoint accepts {}; enable a shared codec on one side",
                preface.codecs, ours
            ),
        },
    }
}

/// Fails if the bytes present so far differ from [`MAGIC`], so a non-weft peer is
/// rejected as soon as its first byte arrives rather than after a timeout.
fn check_magic(src: &BytesMut) -> Result<(), WireError> {
    let n = src.len().min(MAGIC.len());
    if src[..n] != MAGIC[..n] {
        return Err(WireError::BadMagic {
            found: src[..n].to_vec(),
        });
    }
    Ok(())
}

fn truncated(reason: &str) -> &str {
    let max = usize::from(u16::MAX);
    if reason.len() <= max {
        return reason;
    }
    let mut end = max;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(p: &Preface) -> BytesMut {
        let mut b = BytesMut::new();
        p.encode(&mut b);
        b
    }

    #[test]
    fn preface_layout_is_exact() {
        let p = Preface::new(CodecSet::ALL)
            .with_credential("ab")
            .with_max_frame_size(0x0102_0304);
        let b = encoded(&p);
        assert_eq!(
            &b[..],
            &[
                0xF7, b'W', b'F', b'T', 1, 0b110, 1, 2, 3, 4, 0, 2, b'a', b'b'
            ]
        );
        assert_eq!(b.len(), p.encoded_len());
    }

    #[test]
    fn preface_round_trips_and_consumes_only_itself() {
        for p in [
            Preface::new(CodecSet::only(Codec::Json)),
            Preface::new(CodecSet::ALL).with_credential("tökén"),
        ] {
            let mut b = encoded(&p);
            b.extend_from_slice(b"next");
            assert_eq!(Preface::decode(&mut b).unwrap(), Some(p));
            assert_eq!(&b[..], b"next");
        }
    }

    #[test]
    fn preface_byte_by_byte_needs_all_bytes() {
        let p = Preface::new(CodecSet::ALL).with_credential("secret");
        let full = encoded(&p);
        let mut b = BytesMut::new();
        for (i, byte) in full.iter().enumerate() {
            b.extend_from_slice(&[*byte]);
            let r = Preface::decode(&mut b).unwrap();
            if i + 1 < full.len() {
                assert_eq!(r, None, "decoded early at byte {i}");
                assert_eq!(b.len(), i + 1, "consumed bytes while incomplete");
            } else {
                assert_eq!(r, Some(p.clone()));
            }
        }
    }

    #[test]
    fn other_versions_still_decode() {
        let mut p = Preface::new(CodecSet::ALL);
        p.version = 7;
        let mut b = encoded(&p);
        assert_eq!(Preface::decode(&mut b).unwrap().unwrap().version, 7);
    }

    #[test]
    fn bad_magic_is_fatal_and_says_http() {
        let mut b = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        let err = Preface::decode(&mut b).unwrap_err();
        assert!(err.is_fatal());
        let msg = err.to_string();
        assert!(
            msg.contains("peer is not speaking the weft protocol"),
            "{msg}"
        );
        assert!(msg.contains("HTTP"), "{msg}");

        // Detected from the first byte, without waiting for more.
        let mut b = BytesMut::from(&b"P"[..]);
        assert!(matches!(
            Preface::decode(&mut b),
            Err(WireError::BadMagic { .. })
        ));

        let mut b = BytesMut::from(&[0xF7, b'W', 0x00, 0x01][..]);
        let err = ServerHello::decode(&mut b).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("peer is not speaking the weft protocol"),
            "{msg}"
        );
        assert!(!msg.contains("HTTP"), "{msg}");
    }

    #[test]
    fn credential_errors() {
        let mut b = encoded(&Preface::new(CodecSet::ALL).with_credential("ab"));
        let n = b.len();
        b[n - 1] = 0xFF;
        b.extend_from_slice(b"next");
        let err = Preface::decode(&mut b).unwrap_err();
        assert!(matches!(err, WireError::CredentialNotUtf8), "{err:?}");
        assert!(err.is_fatal());
        assert!(err.to_string().contains("not valid UTF-8"), "{err}");
        // The whole preface is consumed, so the server can answer after it.
        assert_eq!(&b[..], b"next");

        let p = Preface::new(CodecSet::ALL).with_credential("x".repeat(70_000));
        let mut b = BytesMut::new();
        assert!(matches!(
            p.try_encode(&mut b),
            Err(WireError::CredentialTooLong)
        ));
        assert!(b.is_empty());
    }

    #[test]
    fn hello_round_trips_byte_by_byte() {
        for h in [
            ServerHello::Accepted {
                version: 1,
                codec: Codec::MsgPack,
                max_frame_size: 12345,
            },
            ServerHello::Rejected {
                reason: "go away ✋".into(),
            },
            ServerHello::Rejected { reason: "".into() },
        ] {
            let mut full = BytesMut::new();
            h.encode(&mut full);
            assert_eq!(full.len(), h.encoded_len());
            let mut b = BytesMut::new();
            for (i, byte) in full.iter().enumerate() {
                b.extend_from_slice(&[*byte]);
                let r = ServerHello::decode(&mut b).unwrap();
                if i + 1 < full.len() {
                    assert_eq!(r, None);
                } else {
                    assert_eq!(r.as_ref(), Some(&h));
                    assert!(b.is_empty());
                }
            }
        }
    }

    #[test]
    fn hello_rejects_unknown_status_and_codec() {
        let mut b = BytesMut::from(&[0xF7, b'W', b'F', b'T', 1, 9][..]);
        assert!(ServerHello::decode(&mut b).unwrap_err().is_fatal());
        let mut b = BytesMut::from(&[0xF7, b'W', b'F', b'T', 1, 0, 99, 0, 0, 0, 1][..]);
        assert!(ServerHello::decode(&mut b).unwrap_err().is_fatal());
    }

    #[test]
    fn long_rejection_reason_is_truncated_on_char_boundary() {
        let h = ServerHello::Rejected {
            reason: "é".repeat(40_000),
        };
        let mut b = BytesMut::new();
        h.encode(&mut b);
        let Some(ServerHello::Rejected { reason }) = ServerHello::decode(&mut b).unwrap() else {
            panic!("expected a rejection");
        };
        assert_eq!(reason.len(), 65534);
        assert!(reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn negotiate_cases() {
        let json = CodecSet::only(Codec::Json);
        let mp = CodecSet::only(Codec::MsgPack);

        let both = Preface::new(CodecSet::ALL).with_max_frame_size(4000);
        assert_eq!(
            negotiate(&both, CodecSet::ALL, 2000),
            ServerHello::Accepted {
                version: PROTOCOL_VERSION,
                codec: Codec::MsgPack,
                max_frame_size: 2000
            }
        );
        assert_eq!(
            negotiate(&both, json, 5000),
            ServerHello::Accepted {
                version: PROTOCOL_VERSION,
                codec: Codec::Json,
                max_frame_size: 4000
            }
        );

        let ServerHello::Rejected { reason } = negotiate(&Preface::new(json), mp, 4000) else {
            panic!("disjoint codecs must be rejected");
        };
        assert!(
            reason.contains("{json}") && reason.contains("{msgpack}"),
            "{reason}"
        );

        let mut old = Preface::new(CodecSet::ALL);
        old.version = 2;
        let ServerHello::Rejected { reason } = negotiate(&old, CodecSet::ALL, 4000) else {
            panic!("other versions must be rejected");
        };
        assert_eq!(
            reason,
            "protocol version 2 is not supported; this endpoint speaks version 1: upgrade the older side"
        );
    }

    #[test]
    fn frame_size_limits_below_the_minimum_are_refused() {
        for small in [0, 1, MIN_MAX_FRAME_SIZE - 1] {
            let p = Preface::new(CodecSet::ALL).with_max_frame_size(small);
            let ServerHello::Rejected { reason } = negotiate(&p, CodecSet::ALL, 1 << 20) else {
                panic!("a client limit of {small} must be refused");
            };
            assert!(
                reason.contains(&format!(
                    "the client offers a frame size limit of {small} bytes"
                )) && reason.contains(&format!("minimum of {MIN_MAX_FRAME_SIZE} bytes"))
                    && reason.contains("raise the client's max_frame_size"),
                "{reason}"
            );

            let p = Preface::new(CodecSet::ALL);
            let ServerHello::Rejected { reason } = negotiate(&p, CodecSet::ALL, small) else {
                panic!("a server limit of {small} must be refused");
            };
            assert!(
                reason.contains(&format!(
                    "this endpoint is configured with a frame size limit of {small} bytes"
                )),
                "{reason}"
            );
        }
        let p = Preface::new(CodecSet::ALL).with_max_frame_size(MIN_MAX_FRAME_SIZE);
        assert_eq!(
            negotiate(&p, CodecSet::ALL, MIN_MAX_FRAME_SIZE),
            ServerHello::Accepted {
                version: PROTOCOL_VERSION,
                codec: Codec::MsgPack,
                max_frame_size: MIN_MAX_FRAME_SIZE
            }
        );
    }
}
