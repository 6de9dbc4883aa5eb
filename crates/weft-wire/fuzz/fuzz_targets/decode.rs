//! Feeds arbitrary bytes, in chunks of input-chosen sizes, to the frame decoder and the
//! handshake decoders. Any panic is a bug.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weft_wire::{FrameDecoder, Preface, ServerHello};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the frame size limit, the next few the chunk sizes; the rest
    // is the stream.
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at(rest.len().min(4));
    let max = match limit {
        0..=63 => u32::from(limit),
        64..=127 => u32::from(limit) * 64,
        _ => u32::MAX,
    };

    let mut decoder = FrameDecoder::new(max);
    let mut buf = BytesMut::new();
    let mut input = stream;
    let mut chunk = 0;
    'feed: while !input.is_empty() {
        let size = usize::from(sizes.get(chunk % sizes.len().max(1)).copied().unwrap_or(1)).max(1);
        chunk += 1;
        let (now, later) = input.split_at(size.min(input.len()));
        input = later;
        buf.extend_from_slice(now);
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(None) => break,
                Ok(Some(_)) => {}
                Err(e) if e.is_fatal() => break 'feed,
                Err(e) => assert!(buf.len() < before, "non-fatal error consumed nothing: {e}"),
            }
        }
    }

    for end in 0..=stream.len().min(300) {
        let mut a = BytesMut::from(&stream[..end]);
        if let Ok(None) = Preface::decode(&mut a) {
            assert_eq!(a.len(), end);
        }
        let mut b = BytesMut::from(&stream[..end]);
        if let Ok(None) = ServerHello::decode(&mut b) {
            assert_eq!(b.len(), end);
        }
    }
});
