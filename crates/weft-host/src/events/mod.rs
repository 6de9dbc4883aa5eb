//! The embedded event log: durable topics, consumer groups, dead letters,
//! in files of the data dir. The rest of the host uses it as an
//! [`EventLog`](crate::backend::EventLog), and does not know it is this one.
//!
//! Layout in the data dir:
//!
//! ```text
//! events/topics/<topic>/<first id>.seg   append-only segments (see `segment`)
//! events/state.redb                      consumer groups and dead letters
//! ```
//!
//! A publish is answered once its record is fdatasync'd: a writer thread
//! takes every publish waiting and writes them with one write and one sync
//! per topic (group commit). Each consumer group (service, handler, topic;
//! for broadcast also the instance) runs as a task of its own that hands
//! events to the group's subscribe streams, and stores its position
//! (every id up to it is acknowledged or dead-lettered, plus the ids above
//! it that are done) before it answers an acknowledgement, so a restart
//! delivers again only what was not acknowledged.
//!
//! Where a group starts: a new `pool` or `ordered` group starts at the
//! oldest retained event, so nothing published before its service first
//! subscribed is missed; a new `broadcast` group (one per instance) starts
//! at the end of the log when the instance subscribes: an instance gets
//! what is published while it runs.

mod config;
mod group;
mod inspect;
mod log;
mod runner;
mod segment;
mod shared;
mod store;
mod subscribe;
mod topic;

pub use self::config::EventsConfig;
pub(crate) use self::log::SegmentLog;
