use std::fmt;

/// A payload codec. Payloads are opaque to this crate; the codec only says how the
/// endpoints encode them, and is negotiated once per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// JSON: the default, interoperable with anything.
    Json,
    /// MessagePack: smaller and faster; preferred when both sides accept it.
    MsgPack,
}

impl Codec {
    /// The codec's id on the wire (`Json` = 1, `MsgPack` = 2).
    ///
    /// ```
    /// use weft_wire::Codec;
    /// assert_eq!(Codec::from_id(Codec::MsgPack.id()), Some(Codec::MsgPack));
    /// ```
    pub fn id(self) -> u8 {
        match self {
            Codec::Json => 1,
            Codec::MsgPack => 2,
        }
    }

    /// The codec with wire id `id`, if this side knows it.
    pub fn from_id(id: u8) -> Option<Codec> {
        match id {
            1 => Some(Codec::Json),
            2 => Some(Codec::MsgPack),
            _ => None,
        }
    }

    /// A short lowercase name: `"json"` or `"msgpack"`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            Codec::MsgPack => "msgpack",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of codecs, as offered in a [`Preface`](crate::Preface): a bitmask where codec `c`
/// is bit `1 << c.id()`. Unknown bits received from a newer peer are kept but ignored.
///
/// ```
/// use weft_wire::{Codec, CodecSet};
/// let client = CodecSet::ALL;
/// let server = CodecSet::only(Codec::Json);
/// assert_eq!(server.preferred(client), Some(Codec::Json));
/// assert_eq!(CodecSet::ALL.preferred(CodecSet::ALL), Some(Codec::MsgPack));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecSet(u8);

impl CodecSet {
    /// Every codec this crate knows.
    pub const ALL: CodecSet = CodecSet((1 << 1) | (1 << 2));

    /// The empty set.
    pub const EMPTY: CodecSet = CodecSet(0);

    /// A set holding only `codec`.
    pub fn only(codec: Codec) -> Self {
        CodecSet(1 << codec.id())
    }

    /// Whether `codec` is in the set.
    pub fn contains(self, codec: Codec) -> bool {
        self.0 & (1 << codec.id()) != 0
    }

    /// Adds `codec` to the set.
    pub fn insert(&mut self, codec: Codec) {
        self.0 |= 1 << codec.id();
    }

    /// Whether the set holds no codec this side knows.
    pub fn is_empty(self) -> bool {
        self.0 & CodecSet::ALL.0 == 0
    }

    /// The codec to use with a peer offering `theirs`: MessagePack (smaller, faster) if
    /// both sides have it, else JSON if both have it, else `None`.
    pub fn preferred(self, theirs: CodecSet) -> Option<Codec> {
        let common = CodecSet(self.0 & theirs.0);
        [Codec::MsgPack, Codec::Json]
            .into_iter()
            .find(|c| common.contains(*c))
    }

    /// The raw bitmask.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// A set from a raw bitmask (unknown bits are kept, and ignored by every query).
    pub fn from_bits(bits: u8) -> Self {
        CodecSet(bits)
    }

    /// The known codecs in the set, in id order.
    pub fn iter(self) -> impl Iterator<Item = Codec> {
        [Codec::Json, Codec::MsgPack]
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl Default for CodecSet {
    /// [`CodecSet::ALL`].
    fn default() -> Self {
        CodecSet::ALL
    }
}

impl fmt::Display for CodecSet {
    /// Formats as `{json, msgpack}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, c) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(c.name())?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_none() {
        for c in [Codec::Json, Codec::MsgPack] {
            assert_eq!(Codec::from_id(c.id()), Some(c));
        }
        assert_eq!(Codec::Json.id(), 1);
        assert_eq!(Codec::MsgPack.id(), 2);
        assert_eq!(Codec::from_id(0), None);
        assert_eq!(Codec::from_id(3), None);
        assert_eq!(Codec::Json.name(), "json");
        assert_eq!(Codec::MsgPack.name(), "msgpack");
    }

    #[test]
    fn set_operations() {
        let mut s = CodecSet::from_bits(0);
        assert!(s.is_empty());
        s.insert(Codec::Json);
        assert!(s.contains(Codec::Json));
        assert!(!s.contains(Codec::MsgPack));
        assert_eq!(s.bits(), 0b10);
        s.insert(Codec::MsgPack);
        assert_eq!(s, CodecSet::ALL);
        assert_eq!(CodecSet::ALL.bits(), 0b110);
        assert_eq!(s.to_string(), "{json, msgpack}");
        // Unknown bits are carried but do not count as codecs.
        assert!(CodecSet::from_bits(0b1000_0001).is_empty());
    }

    #[test]
    fn preferred_picks_msgpack_then_json_then_none() {
        let json = CodecSet::only(Codec::Json);
        let mp = CodecSet::only(Codec::MsgPack);
        assert_eq!(CodecSet::ALL.preferred(CodecSet::ALL), Some(Codec::MsgPack));
        assert_eq!(CodecSet::ALL.preferred(json), Some(Codec::Json));
        assert_eq!(mp.preferred(CodecSet::ALL), Some(Codec::MsgPack));
        assert_eq!(json.preferred(mp), None);
        assert_eq!(
            CodecSet::from_bits(0xF8).preferred(CodecSet::from_bits(0xF8)),
            None
        );
    }
}
