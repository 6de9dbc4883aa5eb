//! The on-disk record format of the event log and the recovery scan.
//!
//! A segment file holds records back to back:
//!
//! ```text
//! len u32 LE | crc u32 LE | id u64 LE | published_ms u64 LE | key_len u16 LE | key | payload JSON
//! ```
//!
//! `len` counts the bytes after the CRC; the CRC (CRC-32/ISO-HDLC, the
//! IEEE one of zlib) covers them.
//! A record cut short by a crash, or whose CRC does not match, ends the
//! valid part of a segment: recovery truncates the file there.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// Bytes before a record's body: `len` and `crc`.
pub(crate) const HEADER: usize = 8;

/// The fixed part of a body: id, published_ms, key_len.
const FIXED: usize = 8 + 8 + 2;

/// No record is larger than this; a larger `len` can only be garbage.
pub(crate) const MAX_RECORD: usize = 64 * 1024 * 1024;

/// One stored event as it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// The id in its topic, from 1.
    pub(crate) id: u64,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub(crate) published_ms: u64,
    /// The publisher's idempotency key.
    pub(crate) key: Option<String>,
    /// The payload, as JSON text.
    pub(crate) payload: Vec<u8>,
}

/// CRC-32 (IEEE, the ISO-HDLC variant of zlib and Ethernet) of `bytes`:
/// what segments were always written with, so older files still read.
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

impl Record {
    /// Appends the record's encoding to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) {
        let key = self.key.as_deref().unwrap_or("").as_bytes();
        // Keys are validated shorter than u16::MAX before they get here.
        let key = &key[..key.len().min(usize::from(u16::MAX))];
        let len = FIXED + key.len() + self.payload.len();
        let start = out.len();
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&self.id.to_le_bytes());
        out.extend_from_slice(&self.published_ms.to_le_bytes());
        out.extend_from_slice(&u16::try_from(key.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&self.payload);
        let crc = crc32(&out[start + HEADER..]);
        out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
    }

    /// The record's encoding.
    #[cfg(test)]
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes a body whose CRC already matched; `None` when its fields
    /// are inconsistent.
    fn decode_body(body: &[u8]) -> Option<Record> {
        if body.len() < FIXED {
            return None;
        }
        let id = u64::from_le_bytes(body[0..8].try_into().ok()?);
        let published_ms = u64::from_le_bytes(body[8..16].try_into().ok()?);
        let key_len = usize::from(u16::from_le_bytes(body[16..18].try_into().ok()?));
        let rest = &body[FIXED..];
        if rest.len() < key_len {
            return None;
        }
        let key = if key_len == 0 {
            None
        } else {
            Some(String::from_utf8(rest[..key_len].to_vec()).ok()?)
        };
        Some(Record {
            id,
            published_ms,
            key,
            payload: rest[key_len..].to_vec(),
        })
    }

    /// Decodes one whole record (header and body); `None` when it is cut
    /// short, its CRC fails or its fields are inconsistent.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Record> {
        if bytes.len() < HEADER {
            return None;
        }
        let len = u32::from_le_bytes(bytes[0..4].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
        let body = bytes.get(HEADER..HEADER + len)?;
        (crc32(body) == crc).then(|| Record::decode_body(body))?
    }
}

/// What a scan of one segment found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The valid records, with the file offset of each.
    pub(crate) records: Vec<(u64, Record)>,
    /// Where the valid part ends: the file's length after recovery.
    pub(crate) valid_len: u64,
    /// The file's length before recovery; more than `valid_len` when a torn
    /// or corrupt tail was found.
    pub(crate) file_len: u64,
}

/// Reads every valid record of a segment, stopping at the first one that
/// is cut short, fails its CRC, or does not continue the id sequence.
pub(crate) fn scan(path: &Path) -> io::Result<Scan> {
    let file = File::open(path)?;
    let file_len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut scan = Scan {
        file_len,
        ..Scan::default()
    };
    let mut offset = 0u64;
    let mut header = [0u8; HEADER];
    let mut body = Vec::new();
    loop {
        if read_full(&mut reader, &mut header)? < HEADER {
            break;
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if !(FIXED..=MAX_RECORD).contains(&len) {
            break;
        }
        body.resize(len, 0);
        if read_full(&mut reader, &mut body)? < len || crc32(&body) != crc {
            break;
        }
        let Some(record) = Record::decode_body(&body) else {
            break;
        };
        if let Some((_, last)) = scan.records.last()
            && record.id != last.id + 1
        {
            break;
        }
        scan.records.push((offset, record));
        offset += (HEADER + len) as u64;
    }
    scan.valid_len = offset;
    Ok(scan)
}

/// Reads until `buf` is full or the end; returns how many bytes it read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn record(id: u64, key: Option<&str>) -> Record {
        Record {
            id,
            published_ms: 1_700_000_000_000 + id,
            key: key.map(str::to_owned),
            payload: format!("{{\"n\":{id}}}").into_bytes(),
        }
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_record_written_by_an_earlier_host_still_reads() {
        // Written by the hand-made CRC-32 table segments used before
        // crc32fast; a CRC of another variant would reject it.
        let stored: &[u8] = &[
            0x20, 0x00, 0x00, 0x00, 0x61, 0x6b, 0x3a, 0x33, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x07, 0x68, 0xe5, 0xcf, 0x8b, 0x01, 0x00, 0x00, 0x07, 0x00, 0x6f, 0x72,
            0x64, 0x65, 0x72, 0x2d, 0x37, 0x7b, 0x22, 0x6e, 0x22, 0x3a, 0x37, 0x7d,
        ];
        let r = record(7, Some("order-7"));
        assert_eq!(Record::decode(stored), Some(r.clone()));
        assert_eq!(r.encode(), stored);
    }

    #[test]
    fn records_round_trip_and_reject_damage() {
        for r in [record(1, None), record(7, Some("order-7"))] {
            let bytes = r.encode();
            assert_eq!(Record::decode(&bytes), Some(r.clone()));
            for cut in 0..bytes.len() {
                assert_eq!(Record::decode(&bytes[..cut]), None, "cut at {cut}");
            }
            for i in 0..bytes.len() {
                let mut bad = bytes.clone();
                bad[i] ^= 0x40;
                assert_ne!(Record::decode(&bad), Some(r.clone()), "flipped byte {i}");
            }
        }
    }

    #[test]
    fn scan_stops_at_a_torn_or_garbage_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut bytes = Vec::new();
        for id in 1..=3 {
            record(id, Some("k")).encode_into(&mut bytes);
        }
        let good = bytes.len() as u64;
        let torn = record(4, None).encode();
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        std::fs::write(&path, &bytes).unwrap();
        let s = scan(&path).unwrap();
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.valid_len, good);
        assert!(s.file_len > good);

        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[0xFF; 100]).unwrap();
        let s = scan(&path).unwrap();
        assert_eq!(s.records.len(), 3);
        assert_eq!(s.valid_len, good);

        // A record that breaks the id sequence ends the valid part too.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(good as usize);
        record(9, None).encode_into(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(scan(&path).unwrap().valid_len, good);
    }
}
