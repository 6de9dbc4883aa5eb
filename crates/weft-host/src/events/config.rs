//! How the event log keeps events (retention, deduplication, segment size)
//! and the limits it holds to.

use std::time::Duration;

/// How the event log keeps events: retention and deduplication.
///
/// ```
/// use std::time::Duration;
/// use weft_host::EventsConfig;
///
/// let config = EventsConfig::default()
///     .max_age(Duration::from_secs(7 * 24 * 3600))
///     .max_bytes(1 << 30);
/// assert_eq!(config.dedup_window, Duration::from_secs(600));
/// ```
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Delete a topic's segments whose newest event is older than this.
    pub max_age: Option<Duration>,
    /// Delete a topic's oldest segments while it holds more bytes than this.
    pub max_bytes: Option<u64>,
    /// A publish with an idempotency key seen within this window is a
    /// duplicate.
    pub dedup_window: Duration,
    /// A segment file is closed and a new one started at about this size;
    /// retention deletes whole segments.
    pub segment_bytes: u64,
    /// A broadcast group (one per instance) with no subscriber for this
    /// long is removed: its instance left. An instance that comes back
    /// later starts from the newest event, as a new instance does.
    pub broadcast_idle: Duration,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            max_age: None,
            max_bytes: None,
            dedup_window: Duration::from_secs(600),
            segment_bytes: 64 * 1024 * 1024,
            broadcast_idle: Duration::from_secs(600),
        }
    }
}

impl EventsConfig {
    /// Sets the longest time events are kept.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Sets the most bytes a topic keeps.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Sets the idempotency window.
    pub fn dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// Sets the segment size.
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1024);
        self
    }

    /// Sets how long a broadcast group waits for its instance to come back.
    pub fn broadcast_idle(mut self, idle: Duration) -> Self {
        self.broadcast_idle = idle;
        self
    }
}

/// How long a consumer group's acknowledged position may wait to be stored.
pub(super) const STORE_POSITION_EVERY: Duration = Duration::from_millis(50);

/// How often retention runs: a look at each topic's oldest segments.
pub(super) const RETAIN_EVERY: Duration = Duration::from_secs(5);

/// The longest idempotency key.
pub(super) const MAX_KEY: usize = 1024;
