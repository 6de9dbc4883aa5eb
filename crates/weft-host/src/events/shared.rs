//! What the log's front and the group tasks share: the log's state and the
//! handles of the running groups. Data only; the logic is in `log`,
//! `subscribe`, `inspect` and `runner`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use weft_core::Error;
use weft_host_api::events::GroupInfo;
use weft_host_api::wire::{Delivery, Subscription};

use super::config::EventsConfig;
use super::group::DeadLetter;
use super::store::StateWriter;
use super::topic::{Topic, Writer};

/// What every clone of the log shares, and what group tasks reach back to.
#[derive(Debug)]
pub(super) struct Inner {
    pub(super) dir: PathBuf,
    pub(super) config: EventsConfig,
    pub(super) writer: Mutex<Option<Writer>>,
    pub(super) threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    pub(super) state: Mutex<Option<StateWriter>>,
    pub(super) topics: Mutex<HashMap<String, Arc<Topic>>>,
    pub(super) groups: Mutex<BTreeMap<String, Arc<GroupHandle>>>,
    pub(super) dead: Mutex<BTreeMap<String, DeadLetter>>,
    pub(super) next_sub: AtomicU64,
    pub(super) stop: watch::Sender<bool>,
}

/// One message to a group's task.
#[derive(Debug)]
pub(super) enum Msg {
    Subscribe(u64, Subscription, mpsc::UnboundedSender<Delivery>),
    Unsubscribe(u64),
    Ack(u64, Option<String>, oneshot::Sender<Result<(), Error>>),
    Replay(u64),
    Stop(oneshot::Sender<()>),
}

#[derive(Debug)]
pub(super) struct GroupHandle {
    pub(super) tx: mpsc::UnboundedSender<Msg>,
    pub(super) stats: Arc<Mutex<GroupInfo>>,
    pub(super) task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

pub(super) fn group_key(topic: &str, group: &str) -> String {
    format!("{topic}\x1f{group}")
}
