use crate::{MAGIC, PROTOCOL_VERSION};

/// Everything that can go wrong while encoding or decoding the weft wire protocol.
///
/// Use [`WireError::is_fatal`] to decide whether the connection must be closed, and
/// [`WireError::frame_id`] to find the call a non-fatal decoding error belongs to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The first bytes of the connection are not [`MAGIC`].
    #[error("{}", bad_magic_message(found))]
    BadMagic {
        /// The bytes that were received where the magic was expected (at most 4).
        found: Vec<u8>,
    },

    /// The peer speaks a protocol version this side does not support.
    ///
    /// The decoders never return this (a preface with another version still decodes, so a
    /// server can answer it with a readable rejection); clients use it after reading a
    /// [`ServerHello`](crate::ServerHello) with an unexpected version.
    #[error(
        "peer speaks weft protocol version {version}, this side speaks version {PROTOCOL_VERSION}; upgrade the older side"
    )]
    UnsupportedVersion {
        /// The version the peer announced.
        version: u8,
    },

    /// A preface or server hello is structurally invalid (magic and lengths were fine).
    #[error(
        "invalid handshake: {reason}; the peer's weft implementation is broken or incompatible"
    )]
    InvalidHandshake {
        /// What was wrong.
        reason: &'static str,
    },

    /// A frame declared a length smaller than the fixed frame header, so the byte stream
    /// cannot be resynchronised.
    #[error(
        "frame length {len} is below the 10-byte minimum (kind, flags, id); the byte stream is corrupt, close the connection"
    )]
    FrameTooShort {
        /// The declared length.
        len: u32,
    },

    /// Encoding a frame would exceed the size limit. Nothing was written.
    #[error(
        "frame of {len} bytes exceeds the {max}-byte limit; send a smaller payload or raise max_frame_size on both sides"
    )]
    FrameTooLarge {
        /// The frame size (the value of the length prefix) the frame would have.
        len: u64,
        /// The limit in force.
        max: u32,
    },

    /// A frame of an unknown kind was received and skipped.
    #[error(
        "unknown frame kind {kind} (call id {id}); the frame was skipped, the peer may speak a newer protocol revision"
    )]
    UnknownFrameKind {
        /// The kind byte received.
        kind: u8,
        /// The frame's id.
        id: u64,
    },

    /// A frame with a valid length but an invalid body was received and skipped.
    #[error(
        "malformed frame (call id {id}): {reason}; the frame was skipped, the peer's encoder is buggy or incompatible"
    )]
    Malformed {
        /// The frame's id.
        id: u64,
        /// What was wrong.
        reason: &'static str,
    },

    /// A header value is longer than the 65535 bytes a header TLV can carry. Nothing was written.
    #[error(
        "header {} is longer than 65535 bytes and cannot be encoded; shorten it",
        crate::frame::tag_name(*tag)
    )]
    HeaderTooLong {
        /// The TLV tag of the header (see [`Headers`](crate::Headers) for the tag numbers).
        tag: u8,
    },

    /// A preface credential is longer than the 65535 bytes the preface can carry. Nothing was written.
    #[error(
        "credential is longer than 65535 bytes and cannot be sent in the preface; use a shorter token"
    )]
    CredentialTooLong,

    /// A preface credential is not valid UTF-8. The whole preface was consumed, so a server
    /// can still answer with a [`ServerHello::Rejected`](crate::ServerHello::Rejected) that
    /// carries this error's message.
    #[error(
        "the mesh credential in the preface is not valid UTF-8; a credential is text: check the token the client was given"
    )]
    CredentialNotUtf8,
}

impl WireError {
    /// `true` when the byte stream can no longer be trusted and the connection must be closed
    /// (bad magic, a frame length below the minimum header, a broken handshake, a version
    /// mismatch); `false` when only one frame was bad and the connection can go on (the
    /// decoder has already skipped that frame's bytes) or when an encode was refused.
    pub fn is_fatal(&self) -> bool {
        match self {
            WireError::BadMagic { .. }
            | WireError::UnsupportedVersion { .. }
            | WireError::InvalidHandshake { .. }
            | WireError::CredentialNotUtf8
            | WireError::FrameTooShort { .. } => true,
            WireError::FrameTooLarge { .. }
            | WireError::UnknownFrameKind { .. }
            | WireError::Malformed { .. }
            | WireError::HeaderTooLong { .. }
            | WireError::CredentialTooLong => false,
        }
    }

    /// The id of the frame a non-fatal decoding error belongs to, so the receiver can answer
    /// that call with an error.
    pub fn frame_id(&self) -> Option<u64> {
        match self {
            WireError::UnknownFrameKind { id, .. } | WireError::Malformed { id, .. } => Some(*id),
            _ => None,
        }
    }
}

impl From<WireError> for std::io::Error {
    fn from(err: WireError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, err)
    }
}

fn bad_magic_message(found: &[u8]) -> String {
    let mut msg = format!(
        "peer is not speaking the weft protocol: expected magic {} but received {}",
        hex(&MAGIC),
        hex(found)
    );
    let looks_ascii = !found.is_empty() && found.iter().all(|b| b.is_ascii_graphic() || *b == b' ');
    if looks_ascii {
        let text = String::from_utf8_lossy(found);
        msg.push_str(&format!(" (\"{text}\")"));
        if [
            "GET", "POS", "PUT", "HEA", "DEL", "OPT", "PAT", "CON", "TRA", "PRI", "HTT",
        ]
        .iter()
        .any(|m| found.starts_with(&m.as_bytes()[..found.len().min(3)]))
        {
            msg.push_str(
                "; this looks like HTTP: point the client at the weft port, or send HTTP to the gateway",
            );
        } else {
            msg.push_str(
                "; this looks like ASCII text, not weft: check the peer's address and port",
            );
        }
    } else {
        msg.push_str("; check the peer's address and port");
    }
    msg
}

fn hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    format!("[{}]", parts.join(" "))
}
