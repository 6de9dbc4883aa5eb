//! One topic's log: its segment files, the index of where each event is,
//! the idempotency keys within the window, and the group-commit writer that
//! appends to every topic.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use weft_core::Error;

use super::segment::{self, Record};

/// How many of the newest events each topic keeps parsed in memory, so
/// that delivering fresh events never touches the disk.
const RECENT: usize = 4096;

/// At most this many publishes go into one write and one fdatasync.
const MAX_BATCH: usize = 8192;

/// One stored event.
#[derive(Debug)]
pub(crate) struct Event {
    /// The id in its topic.
    pub(crate) id: u64,
    /// When it was stored, in milliseconds since the Unix epoch.
    pub(crate) published_ms: u64,
    /// The publisher's idempotency key.
    pub(crate) key: Option<String>,
    /// The payload.
    pub(crate) payload: serde_json::Value,
}

/// One segment file, with the offset of each of its records.
#[derive(Debug)]
struct Seg {
    base: u64,
    path: PathBuf,
    file: Arc<File>,
    offsets: Vec<u64>,
    len: u64,
    last_ms: u64,
}

/// The segment the writer appends to; only the writer thread touches it.
#[derive(Debug)]
struct Active {
    file: File,
    len: u64,
}

#[derive(Debug)]
struct State {
    next_id: u64,
    segments: Vec<Seg>,
    recent: VecDeque<Arc<Event>>,
    /// Idempotency key → (id, published_ms), for keys within the window.
    keys: HashMap<String, (u64, u64)>,
    key_order: VecDeque<(u64, String)>,
    /// (second since the epoch, publishes in it), for the last minute.
    rate: VecDeque<(u64, u64)>,
    bytes: u64,
    /// Set when a write failed: the topic takes no more publishes until the
    /// host restarts and recovers its files.
    failed: Option<String>,
}

/// What [`Topic`] statistics say.
#[derive(Debug, Clone)]
pub(crate) struct TopicStats {
    pub(crate) first_id: u64,
    pub(crate) last_id: u64,
    pub(crate) bytes: u64,
    pub(crate) rate_per_min: u64,
}

/// One topic's log.
#[derive(Debug)]
pub(crate) struct Topic {
    pub(crate) name: String,
    dir: PathBuf,
    segment_bytes: u64,
    state: Mutex<State>,
    active: Mutex<Option<Active>>,
    /// The last id that is durably stored: deliveries and tails never go
    /// past it.
    durable: watch::Sender<u64>,
}

/// What a publish became once enqueued.
#[derive(Debug)]
pub(crate) enum Enqueued {
    /// Stored once the receiver answers.
    New(u64, oneshot::Receiver<Result<(), Error>>),
    /// A duplicate of the event with this id.
    Duplicate(u64),
}

fn io_failed(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!(
        "the event log cannot {what} {}: {e}; check that the data dir is writable and the disk is not full, then restart the host",
        path.display()
    ))
}

fn segment_name(base: u64) -> String {
    format!("{base:020}.seg")
}

fn parse_event(r: &Record) -> Event {
    Event {
        id: r.id,
        published_ms: r.published_ms,
        key: r.key.clone(),
        payload: serde_json::from_slice(&r.payload).unwrap_or(serde_json::Value::Null),
    }
}

/// fsyncs a directory, so that a file created or removed in it stays so.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Topic {
    /// Opens (or creates) the topic's directory, scans its segments,
    /// truncates a torn tail and rebuilds the indexes.
    pub(crate) fn open(
        name: &str,
        dir: PathBuf,
        segment_bytes: u64,
        window: Duration,
        now_ms: u64,
    ) -> Result<Topic, Error> {
        std::fs::create_dir_all(&dir).map_err(|e| io_failed("create", &dir, e))?;
        let mut bases: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
            .map_err(|e| io_failed("list", &dir, e))?
            .filter_map(|entry| {
                let path = entry.ok()?.path();
                let base = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".seg")?
                    .parse()
                    .ok()?;
                Some((base, path))
            })
            .collect();
        bases.sort();
        let since = now_ms.saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        let mut state = State {
            next_id: 1,
            segments: Vec::new(),
            recent: VecDeque::new(),
            keys: HashMap::new(),
            key_order: VecDeque::new(),
            rate: VecDeque::new(),
            bytes: 0,
            failed: None,
        };
        let count = bases.len();
        for (i, (_, path)) in bases.into_iter().enumerate() {
            let scan = segment::scan(&path).map_err(|e| io_failed("read", &path, e))?;
            let continues = scan
                .records
                .first()
                .is_some_and(|(_, r)| state.segments.is_empty() || r.id == state.next_id);
            if !continues {
                tracing::warn!(file = %path.display(), "event log segment holds no usable records; removing it");
                std::fs::remove_file(&path).map_err(|e| io_failed("remove", &path, e))?;
                continue;
            }
            if scan.valid_len < scan.file_len {
                tracing::warn!(
                    file = %path.display(),
                    valid = scan.valid_len,
                    len = scan.file_len,
                    last = i + 1 == count,
                    "event log segment has a torn or corrupt tail (a crash while writing?); truncating it"
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_failed("open", &path, e))?;
                f.set_len(scan.valid_len)
                    .and_then(|()| f.sync_all())
                    .map_err(|e| io_failed("truncate", &path, e))?;
            }
            let file = File::open(&path).map_err(|e| io_failed("open", &path, e))?;
            let mut offsets = Vec::with_capacity(scan.records.len());
            let mut last_ms = 0;
            let base = scan.records.first().map_or(0, |(_, r)| r.id);
            for (offset, r) in &scan.records {
                offsets.push(*offset);
                last_ms = r.published_ms;
                if let Some(k) = &r.key
                    && r.published_ms >= since
                {
                    state.keys.insert(k.clone(), (r.id, r.published_ms));
                    state.key_order.push_back((r.published_ms, k.clone()));
                }
                state.next_id = r.id + 1;
            }
            let skip = scan.records.len().saturating_sub(RECENT);
            for (_, r) in scan.records.iter().skip(skip) {
                state.recent.push_back(Arc::new(parse_event(r)));
                if state.recent.len() > RECENT {
                    state.recent.pop_front();
                }
            }
            state.bytes += scan.valid_len;
            state.segments.push(Seg {
                base,
                path,
                file: Arc::new(file),
                offsets,
                len: scan.valid_len,
                last_ms,
            });
        }
        let active = match state.segments.last() {
            Some(seg) => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(&seg.path)
                    .map_err(|e| io_failed("open", &seg.path, e))?;
                Some(Active { file, len: seg.len })
            }
            None => None,
        };
        let last = state.next_id - 1;
        Ok(Topic {
            name: name.to_owned(),
            dir,
            segment_bytes,
            state: Mutex::new(state),
            active: Mutex::new(active),
            durable: watch::channel(last).0,
        })
    }

    /// A receiver of the last durable id.
    pub(crate) fn durable(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// The last durable id.
    pub(crate) fn last_id(&self) -> u64 {
        *self.durable.borrow()
    }

    /// The oldest retained id; for a topic with nothing on disk, the first
    /// id not yet durable. (Not `next_id`: an event may be on its way to the
    /// disk, and a group that started after it must still get it.)
    pub(crate) fn first_id(&self) -> u64 {
        let last = self.last_id();
        let state = self.state.lock();
        state.segments.first().map_or(last + 1, |s| s.base)
    }

    /// Statistics for `GET /api/v1/events/topics`.
    pub(crate) fn stats(&self, now_ms: u64) -> TopicStats {
        let last_id = self.last_id();
        let state = self.state.lock();
        let now_s = now_ms / 1000;
        TopicStats {
            first_id: state.segments.first().map_or(last_id + 1, |s| s.base),
            last_id,
            bytes: state.bytes,
            rate_per_min: state
                .rate
                .iter()
                .filter(|(s, _)| *s + 60 > now_s)
                .map(|(_, n)| n)
                .sum(),
        }
    }

    /// Assigns the next id to a publish and hands it to the writer, or finds
    /// the earlier publish with the same idempotency key.
    pub(crate) fn enqueue(
        self: &Arc<Self>,
        writer: &Writer,
        payload: serde_json::Value,
        key: Option<String>,
        now_ms: u64,
        window: Duration,
    ) -> Result<Enqueued, Error> {
        let bytes = serde_json::to_vec(&payload)
            .map_err(|e| Error::internal(format!("cannot encode the event: {e}")))?;
        let mut state = self.state.lock();
        if let Some(why) = &state.failed {
            return Err(Error::unavailable(why.clone()));
        }
        let since = now_ms.saturating_sub(u64::try_from(window.as_millis()).unwrap_or(u64::MAX));
        while let Some((ms, _)) = state.key_order.front()
            && *ms < since
        {
            if let Some((_, k)) = state.key_order.pop_front()
                && state.keys.get(&k).is_some_and(|(_, at)| *at < since)
            {
                state.keys.remove(&k);
            }
        }
        if let Some(k) = &key
            && let Some((id, _)) = state.keys.get(k)
        {
            return Ok(Enqueued::Duplicate(*id));
        }
        let id = state.next_id;
        // Encoded (and checksummed) here, on the publisher's task, rather
        // than on the writer thread, which every publish waits for in turn.
        let mut encoded = Vec::new();
        Record {
            id,
            published_ms: now_ms,
            key: key.clone(),
            payload: bytes,
        }
        .encode_into(&mut encoded);
        let (tx, rx) = oneshot::channel();
        // Sent under the lock, so the writer sees ids in order.
        writer
            .tx
            .send(WriteReq {
                topic: self.clone(),
                id,
                published_ms: now_ms,
                encoded,
                event: Arc::new(Event {
                    id,
                    published_ms: now_ms,
                    key: key.clone(),
                    payload,
                }),
                done: tx,
            })
            .map_err(|_| {
                Error::unavailable("the host is shutting down; publish again once it is back")
            })?;
        state.next_id += 1;
        if let Some(k) = key {
            state.keys.insert(k.clone(), (id, now_ms));
            state.key_order.push_back((now_ms, k));
        }
        Ok(Enqueued::New(id, rx))
    }

    /// Waits until `id` is durable, or the topic failed.
    pub(crate) async fn wait_durable(&self, id: u64) -> Result<(), Error> {
        let mut rx = self.durable.subscribe();
        loop {
            if *rx.borrow_and_update() >= id {
                return Ok(());
            }
            if let Some(why) = &self.state.lock().failed {
                return Err(Error::unavailable(why.clone()));
            }
            if rx.changed().await.is_err() {
                return Err(Error::unavailable("the host is shutting down"));
            }
        }
    }

    /// The event `id`, if it is durable and retained.
    pub(crate) fn read(&self, id: u64) -> Result<Option<Arc<Event>>, Error> {
        if id == 0 || id > self.last_id() {
            return Ok(None);
        }
        let (file, offset, len, path) = {
            let state = self.state.lock();
            if let Some(first) = state.recent.front()
                && id >= first.id
                && let Some(e) = state
                    .recent
                    .get(usize::try_from(id - first.id).unwrap_or(usize::MAX))
                && e.id == id
            {
                return Ok(Some(e.clone()));
            }
            let i = state.segments.partition_point(|s| s.base <= id);
            if i == 0 {
                return Ok(None);
            }
            let seg = &state.segments[i - 1];
            let Some(k) = usize::try_from(id - seg.base).ok() else {
                return Ok(None);
            };
            let Some(&offset) = seg.offsets.get(k) else {
                return Ok(None);
            };
            let end = seg.offsets.get(k + 1).copied().unwrap_or(seg.len);
            (seg.file.clone(), offset, end - offset, seg.path.clone())
        };
        let mut buf = vec![0u8; usize::try_from(len).unwrap_or(0)];
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| io_failed("read", &path, e))?;
        match Record::decode(&buf) {
            Some(r) if r.id == id => Ok(Some(Arc::new(parse_event(&r)))),
            _ => Err(Error::internal(format!(
                "event {id} of topic `{}` is damaged in {}; it cannot be delivered",
                self.name,
                path.display()
            ))),
        }
    }

    /// Deletes whole segments older than `max_age` or beyond `max_bytes`,
    /// never the one being written.
    pub(crate) fn retain(&self, now_ms: u64, max_age: Option<Duration>, max_bytes: Option<u64>) {
        let mut removed = Vec::new();
        {
            let mut state = self.state.lock();
            while state.segments.len() > 1 {
                let seg = &state.segments[0];
                let too_old = max_age.is_some_and(|age| {
                    seg.last_ms + u64::try_from(age.as_millis()).unwrap_or(u64::MAX) < now_ms
                });
                let too_big = max_bytes.is_some_and(|max| state.bytes > max);
                if !(too_old || too_big) {
                    break;
                }
                let seg = state.segments.remove(0);
                state.bytes -= seg.len;
                removed.push(seg.path);
            }
        }
        for path in &removed {
            tracing::info!(topic = %self.name, file = %path.display(), "retention: removing an old event log segment");
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove an old event log segment");
            }
        }
        if !removed.is_empty() {
            let _ = sync_dir(&self.dir);
        }
    }

    /// Appends a batch of records (in id order) with one write per segment
    /// and one fdatasync, then makes them visible. Returns the events it
    /// pushed out of the recent cache, to be freed after answering.
    fn append(&self, reqs: &[WriteReq]) -> Result<Vec<Arc<Event>>, Error> {
        let mut active = self.active.lock();
        let mut buf = Vec::with_capacity(reqs.iter().map(|r| r.encoded.len()).sum());
        // Segments this batch created: (base, path, read handle, the final
        // length of the segment it closed).
        let mut created: Vec<(u64, PathBuf, File, u64)> = Vec::new();
        // Per record: whether it opens a new segment, and its offset.
        let mut placed: Vec<(bool, u64)> = Vec::with_capacity(reqs.len());
        let start_len = active.as_ref().map(|a| a.len);
        let result: Result<(), Error> = (|| {
            for req in reqs {
                let before = buf.len();
                buf.extend_from_slice(&req.encoded);
                let rec_len = req.encoded.len() as u64;
                let offset = active.as_ref().map_or(0, |a| a.len) + before as u64;
                if active.is_none() || (offset > 0 && offset + rec_len > self.segment_bytes) {
                    let record = buf.split_off(before);
                    let mut closed = 0;
                    if let Some(a) = active.as_mut() {
                        a.file
                            .write_all(&buf)
                            .and_then(|()| a.file.sync_data())
                            .map_err(|e| io_failed("write to", &self.dir, e))?;
                        a.len += buf.len() as u64;
                        closed = a.len;
                    }
                    buf = record;
                    let path = self.dir.join(segment_name(req.id));
                    let file = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .map_err(|e| io_failed("create", &path, e))?;
                    sync_dir(&self.dir).map_err(|e| io_failed("sync", &self.dir, e))?;
                    let read = File::open(&path).map_err(|e| io_failed("open", &path, e))?;
                    created.push((req.id, path, read, closed));
                    *active = Some(Active { file, len: 0 });
                    placed.push((true, 0));
                } else {
                    placed.push((false, offset));
                }
            }
            if let Some(a) = active.as_mut() {
                a.file
                    .write_all(&buf)
                    .and_then(|()| a.file.sync_data())
                    .map_err(|e| io_failed("write to", &self.dir, e))?;
                a.len += buf.len() as u64;
            }
            Ok(())
        })();
        if let Err(e) = &result {
            // Best effort: cut what this batch wrote, so that the ids it
            // took are not half there after a restart.
            if created.is_empty()
                && let (Some(a), Some(len)) = (active.as_mut(), start_len)
            {
                let _ = a.file.set_len(len);
                a.len = len;
            }
            self.state.lock().failed = Some(e.message().to_owned());
            self.durable.send_modify(|_| {});
            return Err(e.clone());
        }
        let final_len = active.as_ref().map_or(0, |a| a.len);
        drop(active);
        let mut state = self.state.lock();
        let mut created = created.into_iter();
        for (req, (opens, offset)) in reqs.iter().zip(placed) {
            if opens && let Some((base, path, file, closed)) = created.next() {
                if let Some(last) = state.segments.last_mut() {
                    last.len = closed;
                }
                state.segments.push(Seg {
                    base,
                    path,
                    file: Arc::new(file),
                    offsets: Vec::new(),
                    len: 0,
                    last_ms: 0,
                });
            }
            if let Some(seg) = state.segments.last_mut() {
                seg.offsets.push(offset);
                seg.last_ms = req.published_ms;
                seg.len = final_len;
            }
        }
        state.bytes = state.segments.iter().map(|s| s.len).sum();
        let now_s = reqs.last().map_or(0, |r| r.published_ms / 1000);
        match state.rate.back_mut() {
            Some((s, count)) if *s == now_s => *count += reqs.len() as u64,
            _ => state.rate.push_back((now_s, reqs.len() as u64)),
        }
        while state.rate.front().is_some_and(|(s, _)| *s + 60 <= now_s) {
            state.rate.pop_front();
        }
        // Events pushed out of the cache are freed by the caller once the
        // publishes are answered: publishers wait for this lock in
        // `enqueue`, and for their answer.
        let mut evicted = Vec::new();
        for req in reqs {
            state.recent.push_back(req.event.clone());
            if state.recent.len() > RECENT {
                evicted.extend(state.recent.pop_front());
            }
        }
        drop(state);
        if let Some(last) = reqs.last() {
            self.durable.send_replace(last.id);
        }
        Ok(evicted)
    }
}

/// One publish on its way to disk.
#[derive(Debug)]
pub(crate) struct WriteReq {
    topic: Arc<Topic>,
    id: u64,
    published_ms: u64,
    /// The record as it goes into the segment file.
    encoded: Vec<u8>,
    event: Arc<Event>,
    done: oneshot::Sender<Result<(), Error>>,
}

/// The group-commit writer: a thread that takes every publish waiting,
/// writes each topic's share with one write and one fdatasync, then
/// answers them all. Many concurrent publishers share one fsync.
#[derive(Debug)]
pub(crate) struct Writer {
    tx: mpsc::UnboundedSender<WriteReq>,
}

impl Writer {
    /// Starts the writer thread; it ends once every handle is dropped.
    pub(crate) fn start() -> Result<(Writer, std::thread::JoinHandle<()>), Error> {
        let (tx, mut rx) = mpsc::unbounded_channel::<WriteReq>();
        let thread = std::thread::Builder::new()
            .name("weft-events-writer".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    let mut by_topic: Vec<(Arc<Topic>, Vec<WriteReq>)> = Vec::new();
                    for req in batch {
                        match by_topic
                            .iter_mut()
                            .find(|(t, _)| Arc::ptr_eq(t, &req.topic))
                        {
                            Some((_, reqs)) => reqs.push(req),
                            None => by_topic.push((req.topic.clone(), vec![req])),
                        }
                    }
                    for (topic, reqs) in by_topic {
                        let (result, evicted) = match topic.append(&reqs) {
                            Ok(evicted) => (Ok(()), evicted),
                            Err(e) => (Err(e), Vec::new()),
                        };
                        for req in reqs {
                            let _ = req.done.send(result.clone());
                        }
                        drop(evicted);
                    }
                }
            })
            .map_err(|e| Error::internal(format!("cannot start the event log writer: {e}")))?;
        Ok((Writer { tx }, thread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(600);

    async fn publish(
        topic: &Arc<Topic>,
        writer: &Writer,
        n: u64,
        key: Option<&str>,
    ) -> (u64, bool) {
        match topic
            .enqueue(
                writer,
                serde_json::json!({ "n": n }),
                key.map(str::to_owned),
                1_000_000 + n,
                WINDOW,
            )
            .unwrap()
        {
            Enqueued::New(id, rx) => {
                rx.await.unwrap().unwrap();
                (id, false)
            }
            Enqueued::Duplicate(id) => (id, true),
        }
    }

    #[test]
    fn an_event_on_its_way_to_disk_counts_as_retained() {
        let dir = tempfile::tempdir().unwrap();
        let topic = Arc::new(Topic::open("t", dir.path().join("t"), 200, WINDOW, 1).unwrap());
        assert_eq!(topic.first_id(), 1);
        // A writer that never writes: the event stays on its way.
        let (tx, _rx) = mpsc::unbounded_channel();
        let writer = Writer { tx };
        let Enqueued::New(id, _) = topic
            .enqueue(&writer, serde_json::json!({}), None, 1, WINDOW)
            .unwrap()
        else {
            panic!("a new event")
        };
        assert_eq!((id, topic.last_id()), (1, 0));
        // A consumer group starting now must begin with it, not after it.
        assert_eq!(topic.first_id(), 1);
        assert_eq!(topic.stats(1).first_id, 1);
    }

    #[tokio::test]
    async fn appends_roll_segments_and_recover_after_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let (writer, _thread) = Writer::start().unwrap();
        let topic = Arc::new(Topic::open("t", path.clone(), 200, WINDOW, 1_000_000).unwrap());
        for n in 1..=20 {
            assert_eq!(
                publish(&topic, &writer, n, Some(&format!("k{n}"))).await,
                (n, false)
            );
        }
        assert_eq!(publish(&topic, &writer, 99, Some("k3")).await, (3, true));
        assert!(
            topic.state.lock().segments.len() > 1,
            "segments roll at 200 bytes"
        );
        for id in 1..=20 {
            // Past the recent cache too: read from the files.
            topic.state.lock().recent.clear();
            assert_eq!(topic.read(id).unwrap().unwrap().payload["n"], id);
        }
        drop(topic);
        let mut last = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect::<Vec<_>>();
        last.sort();
        let last = last.pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(b"\x10\x00\x00\x00garbage").unwrap();
        drop(f);
        let topic = Arc::new(Topic::open("t", path, 200, WINDOW, 1_000_100).unwrap());
        assert_eq!(topic.last_id(), 20);
        assert_eq!(publish(&topic, &writer, 21, Some("k5")).await, (5, true));
        assert_eq!(publish(&topic, &writer, 21, None).await, (21, false));
        topic.state.lock().recent.clear();
        assert_eq!(topic.read(21).unwrap().unwrap().payload["n"], 21);
        assert!(topic.read(22).unwrap().is_none());
        let before = topic.first_id();
        topic.retain(u64::MAX / 2, Some(Duration::from_secs(1)), None);
        assert!(topic.first_id() > before);
        assert!(topic.read(1).unwrap().is_none());
    }
}
