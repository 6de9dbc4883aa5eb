//! Instance output: every line goes to the instance's file in the data dir
//! and to an in-memory ring per deployed version, which serves
//! `weft logs -n` and, through a broadcast, `weft logs -f`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, AsyncWriteExt as _, BufReader};
use tokio::sync::broadcast;

use crate::state::now_ms;

/// How many lines a version keeps in memory.
const RING_LINES: usize = 2000;

/// Lines longer than this are cut, so one runaway line cannot eat memory.
const MAX_LINE: usize = 16 * 1024;

/// Orders lines across rings, so that lines of several versions merge in
/// the order they were read.
static SEQ: AtomicU64 = AtomicU64::new(0);

/// One line of an instance's output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LogLine {
    /// Increases with every line the host reads.
    pub(crate) seq: u64,
    /// When the host read it, in milliseconds since the Unix epoch.
    pub(crate) time_ms: u64,
    /// The instance that wrote it, like `die_roller-1.0.0-1`.
    pub(crate) instance: String,
    /// `stdout`, `stderr`, or `weft` for what the supervisor says about the instance.
    pub(crate) stream: String,
    /// The text, without its newline.
    pub(crate) line: String,
}

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

    pub(crate) fn push(&self, instance: &str, stream: &str, line: String) -> LogLine {
        let line = LogLine {
            seq: SEQ.fetch_add(1, Ordering::Relaxed),
            time_ms: now_ms(),
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
            let line = format!(
                "{} {stream}: {text}\n",
                crate::supervisor::rfc3339(now_ms())
            );
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
