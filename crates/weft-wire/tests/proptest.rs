//! Property tests: frames round-trip however the bytes are split, and no input makes a
//! decoder panic.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use weft_wire::{
    Caller, Codec, CodecSet, Decoded, Frame, FrameDecoder, Headers, MAGIC, Preface, Request,
    ServerHello, WireError,
};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-z0-9.^-]{0,40}"]
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn caller() -> impl Strategy<Value = Caller> {
    (text(), text(), text()).prop_map(|(service, version, instance)| Caller {
        service,
        version,
        instance,
    })
}

fn headers() -> impl Strategy<Value = Headers> {
    (
        (text(), text(), prop::option::of(text())),
        prop::option::of(any::<u64>().prop_map(Duration::from_micros)),
        prop::option::of(text()),
        prop::option::of(caller().prop_map(std::sync::Arc::new)),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(
            |((service, entrypoint, version), timeout, traceparent, caller, idem, auth)| Headers {
                service,
                entrypoint,
                version,
                timeout,
                traceparent,
                caller,
                idempotency_key: idem,
                auth,
            },
        )
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u64>(), headers(), payload()).prop_map(|(id, headers, payload)| {
            Frame::Request(Request {
                id,
                headers,
                payload,
            })
        }),
        (any::<u64>(), payload()).prop_map(|(id, payload)| Frame::Response { id, payload }),
        (any::<u64>(), payload()).prop_map(|(id, payload)| Frame::Error { id, payload }),
        (any::<u64>(), payload()).prop_map(|(id, payload)| Frame::StreamItem { id, payload }),
        any::<u64>().prop_map(|id| Frame::StreamEnd { id }),
        any::<u64>().prop_map(|id| Frame::Cancel { id }),
        any::<u64>().prop_map(|data| Frame::Ping { data }),
        any::<u64>().prop_map(|data| Frame::Pong { data }),
        (any::<u64>(), text()).prop_map(|(last_id, reason)| Frame::GoAway { last_id, reason }),
    ]
}

/// Feeds `wire` to `decoder` in chunks of the given sizes (cycled), collecting every
/// result until the input is exhausted or a fatal error occurs.
fn feed(
    decoder: &mut FrameDecoder,
    mut wire: BytesMut,
    chunks: &[usize],
) -> Vec<Result<Decoded, WireError>> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut sizes = chunks.iter().cycle();
    loop {
        let n = sizes.next().copied().unwrap_or(1).max(1).min(wire.len());
        buf.extend_from_slice(&wire.split_to(n));
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(d)) => out.push(Ok(d)),
                Err(e) if e.is_fatal() => {
                    out.push(Err(e));
                    return out;
                }
                Err(e) => {
                    assert!(buf.len() < before, "non-fatal error consumed nothing: {e}");
                    out.push(Err(e));
                }
            }
        }
        if wire.is_empty() {
            return out;
        }
    }
}

fn encode_all(frames: &[Frame], max: u32) -> BytesMut {
    let mut wire = BytesMut::new();
    for f in frames {
        f.encode(&mut wire, max).unwrap();
    }
    wire
}

proptest! {
    #[test]
    fn frames_round_trip_however_split(
        frames in prop::collection::vec(frame(), 0..8),
        chunks in prop::collection::vec(1usize..64, 1..8),
    ) {
        let wire = encode_all(&frames, u32::MAX);
        let expected_len: usize = frames.iter().map(Frame::encoded_len).sum();
        prop_assert_eq!(wire.len(), expected_len);
        let mut decoder = FrameDecoder::new(u32::MAX);
        let out: Vec<Decoded> = feed(&mut decoder, wire, &chunks)
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<Decoded> = frames.into_iter().map(Decoded::Frame).collect();
        prop_assert_eq!(out, expected);
    }

    #[test]
    fn oversized_frames_are_reported_and_the_rest_decodes(
        frames in prop::collection::vec(frame(), 0..8),
        max in 10u32..300,
        chunks in prop::collection::vec(1usize..64, 1..8),
    ) {
        let wire = encode_all(&frames, u32::MAX);
        let mut decoder = FrameDecoder::new(max);
        let out = feed(&mut decoder, wire, &chunks);
        prop_assert_eq!(out.len(), frames.len());
        for (got, frame) in out.into_iter().zip(frames) {
            let len = (frame.encoded_len() - 4) as u64;
            let got = got.unwrap();
            if len > u64::from(max) {
                let expected = Decoded::Oversized { kind: frame.kind() as u8, id: frame.id(), len, max };
                prop_assert_eq!(got, expected);
            } else {
                prop_assert_eq!(got, Decoded::Frame(frame));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_frame_decoder(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        max in prop_oneof![Just(u32::MAX), 0u32..128],
        chunks in prop::collection::vec(1usize..64, 1..8),
    ) {
        feed(&mut FrameDecoder::new(max), BytesMut::from(&bytes[..]), &chunks);
    }

    #[test]
    fn mutated_frames_never_panic_the_frame_decoder(
        frames in prop::collection::vec(frame(), 1..4),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        truncate in any::<prop::sample::Index>(),
    ) {
        let mut wire = encode_all(&frames, u32::MAX);
        for (at, byte) in mutations {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        let keep = truncate.index(wire.len() + 1);
        wire.truncate(keep);
        feed(&mut FrameDecoder::new(u32::MAX), wire, &[7]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_handshake_decoders(
        magic in any::<bool>(),
        bytes in prop::collection::vec(any::<u8>(), 0..96),
    ) {
        let mut input = BytesMut::new();
        if magic {
            input.extend_from_slice(&MAGIC);
        }
        input.extend_from_slice(&bytes);
        for end in 0..=input.len() {
            let mut a = BytesMut::from(&input[..end]);
            if let Ok(None) = Preface::decode(&mut a) {
                prop_assert_eq!(a.len(), end, "preface consumed bytes while incomplete");
            }
            let mut b = BytesMut::from(&input[..end]);
            if let Ok(None) = ServerHello::decode(&mut b) {
                prop_assert_eq!(b.len(), end, "hello consumed bytes while incomplete");
            }
        }
    }

    #[test]
    fn preface_round_trips(
        version in any::<u8>(),
        codecs in any::<u8>(),
        max_frame_size in any::<u32>(),
        credential in prop::option::of(".{1,30}"),
    ) {
        let preface = Preface { version, codecs: CodecSet::from_bits(codecs), max_frame_size, credential };
        let mut buf = BytesMut::new();
        preface.encode(&mut buf);
        prop_assert_eq!(buf.len(), preface.encoded_len());
        prop_assert_eq!(Preface::decode(&mut buf).unwrap(), Some(preface));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn server_hello_round_trips(
        version in any::<u8>(),
        json in any::<bool>(),
        max_frame_size in any::<u32>(),
        reason in prop::option::of(".{0,30}"),
    ) {
        let hello = match reason {
            Some(reason) => ServerHello::Rejected { reason },
            None => ServerHello::Accepted {
                version,
                codec: if json { Codec::Json } else { Codec::MsgPack },
                max_frame_size,
            },
        };
        let mut buf = BytesMut::new();
        hello.encode(&mut buf);
        prop_assert_eq!(buf.len(), hello.encoded_len());
        prop_assert_eq!(ServerHello::decode(&mut buf).unwrap(), Some(hello));
        prop_assert!(buf.is_empty());
    }
}
