//! Instance output: every line goes to the instance's file in the data dir
//! and to an in-memory ring per deployed version, which serves
//! `weft logs -n` and, through a broadcast, `weft logs -f`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWriteExt as _, BufReader};
use tokio::sync::broadcast;
use weft_host_api::deployments::LogLine;

use crate::time::now_ms;

/// How many lines a version keeps in memory.
const RING_LINES: usize = 2000;

/// Lines longer than this are cut, so one runaway line cannot eat memory.
const MAX_LINE: usize = 16 * 1024;

/// Orders lines across rings, so that lines of several versions merge in
/// the order they were read.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// The recent output of one deployed version.
#[derive(Debug)]
pub(crate) struct LogRing {
    lines: Mutex<VecDeque<LogLine>>,
    tx: broadcast::Sender<LogLine>,
    /// `data_dir/logs/{service}/{version}`.
    pub(crate) dir: PathBuf,
}

impl LogRing {
    pub(crate) fn new(dir: PathBuf) -> Self {
        LogRing {
            lines: Mutex::new(VecDeque::with_capacity(64)),
            tx: broadcast::channel(1024).0,
            dir,
        }
    }

    /// A ring that starts with the newest lines of the log files already in
    /// `dir` (from before a host restart, or from an earlier deploy of the
    /// version), so that `weft logs` shows them too.
    pub(crate) fn load(dir: PathBuf) -> Self {
        let ring = LogRing::new(dir);
        let mut old: Vec<(u64, String, &'static str, String)> = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&ring.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(instance) = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".log"))
                    .map(str::to_owned)
                else {
                    continue;
                };
                let Ok(text) = read_tail(&path, RELOAD_BYTES) else {
                    continue;
                };
                old.extend(text.lines().filter_map(|l| {
                    let (time_ms, stream, text) = parse_file_line(l)?;
                    Some((time_ms, instance.clone(), stream, text.to_owned()))
                }));
            }
        }
        // Stable: each file's lines keep their order within a second.
        old.sort_by_key(|l| l.0);
        let skip = old.len().saturating_sub(RING_LINES);
        for (time_ms, instance, stream, text) in old.into_iter().skip(skip) {
            ring.push_at(time_ms, &instance, stream, text);
        }
        ring
    }

    pub(crate) fn push(&self, instance: &str, stream: &str, line: String) -> LogLine {
        self.push_at(now_ms(), instance, stream, line)
    }

    fn push_at(&self, time_ms: u64, instance: &str, stream: &str, line: String) -> LogLine {
        let line = LogLine {
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
            time_ms,
            instance: instance.to_owned(),
            stream: stream.to_owned(),
            line,
        };
        {
            let mut lines = self.lines.lock();
            if lines.len() == RING_LINES {
                lines.pop_front();
            }
            lines.push_back(line.clone());
        }
        let _ = self.tx.send(line.clone());
        line
    }

    /// The newest `n` lines, oldest first, with a receiver of later ones
    /// taken under the same lock, so that none falls between them.
    pub(crate) fn tail(&self, n: usize) -> (Vec<LogLine>, broadcast::Receiver<LogLine>) {
        let lines = self.lines.lock();
        let rx = self.tx.subscribe();
        let skip = lines.len().saturating_sub(n);
        (lines.iter().skip(skip).cloned().collect(), rx)
    }

    /// The newest `n` lines of one instance, as text.
    pub(crate) fn last_of(&self, instance: &str, n: usize) -> Vec<String> {
        let lines = self.lines.lock();
        let mut out: Vec<String> = lines
            .iter()
            .rev()
            .filter(|l| l.instance == instance && l.stream != "weft")
            .take(n)
            .map(|l| l.line.clone())
            .collect();
        out.reverse();
        out
    }

    /// The file an instance's output is appended to.
    pub(crate) fn file(&self, instance: &str) -> PathBuf {
        self.dir.join(format!("{instance}.log"))
    }
}

/// How much of the end of each log file [`LogRing::load`] reads.
const RELOAD_BYTES: u64 = 1024 * 1024;

/// The last `max` bytes of the file at `path`, from the first whole line.
fn read_tail(path: &std::path::Path, max: u64) -> std::io::Result<String> {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(max);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if start > 0 {
        // The first line is cut.
        let cut = text.find('\n').map_or(text.len(), |i| i + 1);
        text.drain(..cut);
    }
    Ok(text)
}

/// Reads back a line [`pump`] wrote: `2026-11-22T11:56:18Z stdout: text`.
fn parse_file_line(line: &str) -> Option<(u64, &'static str, &str)> {
    let (time, rest) = line.split_once(' ')?;
    let (stream, text) = rest.split_once(": ").or_else(|| {
        // An empty line was written as `stdout: ` and read back trimmed.
        rest.strip_suffix(':').map(|s| (s, ""))
    })?;
    let stream = match stream {
        "stdout" => "stdout",
        "stderr" => "stderr",
        _ => return None,
    };
    Some((crate::time::parse_rfc3339(time)?, stream, text))
}

/// Copies lines from `pipe` into the ring and the instance's log file until
/// the pipe closes.
pub(crate) async fn pump(
    pipe: impl AsyncRead + Unpin,
    ring: std::sync::Arc<LogRing>,
    instance: String,
    stream: &'static str,
) {
    let mut file = match tokio::fs::create_dir_all(&ring.dir).await {
        Ok(()) => tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(ring.file(&instance))
            .await
            .map_err(
                |e| tracing::warn!(%instance, error = %e, "cannot open the instance's log file"),
            )
            .ok(),
        Err(e) => {
            tracing::warn!(dir = %ring.dir.display(), error = %e, "cannot create the log dir");
            None
        }
    };
    let mut reader = BufReader::new(pipe);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        buf.truncate(MAX_LINE);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(f) = file.as_mut() {
            let line = format!("{} {stream}: {text}\n", crate::time::rfc3339(now_ms()));
            if f.write_all(line.as_bytes()).await.is_err() {
                file = None;
            }
        }
        ring.push(&instance, stream, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_ring_reads_back_the_files_in_its_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("s-1.0.0-1.log"),
            "2026-11-22T11:56:18Z stdout: first\n\
             2026-11-22T11:56:20Z stderr: third: with a colon\n\
             garbage\n\
             2026-11-22T11:56:21Z stdout:\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("s-1.0.0-2.log"),
            "2026-11-22T11:56:19Z stdout: second\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a log\n").unwrap();
        let ring = LogRing::load(dir.path().to_owned());
        let (lines, _) = ring.tail(10);
        let seen: Vec<(&str, &str, &str)> = lines
            .iter()
            .map(|l| (l.instance.as_str(), l.stream.as_str(), l.line.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("s-1.0.0-1", "stdout", "first"),
                ("s-1.0.0-2", "stdout", "second"),
                ("s-1.0.0-1", "stderr", "third: with a colon"),
                ("s-1.0.0-1", "stdout", ""),
            ]
        );
        assert_eq!(
            lines[0].time_ms,
            crate::time::parse_rfc3339("2026-11-22T11:56:18Z").unwrap()
        );
        // New lines come after the old ones.
        ring.push("s-1.0.0-3", "stdout", "fourth".into());
        assert_eq!(ring.tail(1).0[0].line, "fourth");
        assert_eq!(ring.last_of("s-1.0.0-1", 1), [""]);
        // A directory that does not exist yet is an empty ring.
        assert!(LogRing::load(dir.path().join("none")).tail(10).0.is_empty());
    }

    #[test]
    fn the_tail_of_a_big_file_starts_at_a_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let text: String = (0..1000)
            .map(|i| format!("2026-11-22T11:56:18Z stdout: line {i}\n"))
            .collect();
        std::fs::write(&path, &text).unwrap();
        let tail = read_tail(&path, 100).unwrap();
        assert!(tail.starts_with("2026-"), "{tail:?}");
        assert!(tail.ends_with("line 999\n"), "{tail:?}");
    }

    #[test]
    fn the_ring_keeps_the_newest_lines() {
        let ring = LogRing::new(PathBuf::from("/nonexistent"));
        for i in 0..RING_LINES + 5 {
            ring.push(if i % 2 == 0 { "a" } else { "b" }, "stdout", i.to_string());
        }
        let (tail, _) = ring.tail(3);
        let texts: Vec<_> = tail.iter().map(|l| l.line.as_str()).collect();
        let last = RING_LINES + 4;
        assert_eq!(
            texts,
            [
                (last - 2).to_string(),
                (last - 1).to_string(),
                last.to_string()
            ]
        );
        assert_eq!(
            ring.last_of("a", 2),
            [(last - 2).to_string(), last.to_string()]
        );
    }
}
