//! Where consumer groups and dead letters are kept: a redb file of the event
//! log's own (`events/state.redb`), written by one thread that commits the
//! changes of every group waiting at once in one transaction (one fsync).

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};
use weft_core::Error;

use super::group::{DeadLetter, GroupRecord};

/// `topic \x1f group` → the group's record as JSON.
const GROUPS: TableDefinition<'_, &str, &str> = TableDefinition::new("groups");
/// `topic \x1f id \x1f group` → the dead letter as JSON.
const DEAD: TableDefinition<'_, &str, &str> = TableDefinition::new("dead");

/// One change to store.
#[derive(Debug)]
pub(crate) enum Op {
    Group(String, GroupRecord),
    /// A group that ended (a broadcast group whose instance left).
    DelGroup(String),
    PutDead(String, DeadLetter),
    DelDead(String),
}

/// The key of a dead letter; sorts by topic, then id.
pub(crate) fn dead_key(d: &DeadLetter) -> String {
    format!("{}\x1f{:020}\x1f{}", d.topic, d.id, d.group)
}

type Batch = (Vec<Op>, Vec<oneshot::Sender<Result<(), Error>>>);

/// The handle groups send their changes through.
#[derive(Debug, Clone)]
pub(crate) struct StateWriter {
    tx: mpsc::UnboundedSender<Batch>,
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::unavailable(format!(
        "the event log's state file failed to {what}: {e}; check that the data dir is writable and the disk is not full"
    ))
}

/// What was stored before.
pub(crate) type Loaded = (Vec<GroupRecord>, Vec<DeadLetter>);

/// Opens the state file and starts its writer thread, which ends (closing
/// the file) once every [`StateWriter`] is dropped.
pub(crate) fn open(
    path: &Path,
) -> Result<(StateWriter, Loaded, std::thread::JoinHandle<()>), Error> {
    let db = Database::create(path).map_err(|e| {
        Error::unavailable(format!(
            "cannot open the event log's state {}: {e}; is another `weft host` using this data dir?",
            path.display()
        ))
    })?;
    let tx = db
        .begin_write()
        .map_err(|e| failed("start a transaction", e))?;
    tx.open_table(GROUPS)
        .map_err(|e| failed("open its tables", e))?;
    tx.open_table(DEAD)
        .map_err(|e| failed("open its tables", e))?;
    tx.commit().map_err(|e| failed("commit", e))?;
    let read = db.begin_read().map_err(|e| failed("read", e))?;
    let mut groups = Vec::new();
    for entry in read
        .open_table(GROUPS)
        .map_err(|e| failed("read", e))?
        .iter()
        .map_err(|e| failed("read", e))?
    {
        let (k, v) = entry.map_err(|e| failed("read", e))?;
        match serde_json::from_str::<GroupRecord>(v.value()) {
            Ok(g) => groups.push(g),
            Err(e) => {
                tracing::warn!(group = k.value(), error = %e, "skipping an unreadable consumer group record")
            }
        }
    }
    let mut dead = Vec::new();
    for entry in read
        .open_table(DEAD)
        .map_err(|e| failed("read", e))?
        .iter()
        .map_err(|e| failed("read", e))?
    {
        let (k, v) = entry.map_err(|e| failed("read", e))?;
        match serde_json::from_str::<DeadLetter>(v.value()) {
            Ok(d) => dead.push(d),
            Err(e) => {
                tracing::warn!(key = k.value(), error = %e, "skipping an unreadable dead letter")
            }
        }
    }
    drop(read);
    let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
    let thread = std::thread::Builder::new()
        .name("weft-events-state".into())
        .spawn(move || {
            while let Some(first) = rx.blocking_recv() {
                let mut ops = first.0;
                let mut replies = first.1;
                while let Ok((o, r)) = rx.try_recv() {
                    ops.extend(o);
                    replies.extend(r);
                }
                let result = commit(&db, ops);
                if let Err(e) = &result {
                    tracing::error!(error = %e, "cannot store consumer group state");
                }
                for r in replies {
                    let _ = r.send(result.clone());
                }
            }
        })
        .map_err(|e| Error::internal(format!("cannot start the event state writer: {e}")))?;
    Ok((StateWriter { tx }, (groups, dead), thread))
}

fn commit(db: &Database, ops: Vec<Op>) -> Result<(), Error> {
    let tx = db
        .begin_write()
        .map_err(|e| failed("start a transaction", e))?;
    {
        let mut groups = tx.open_table(GROUPS).map_err(|e| failed("open", e))?;
        let mut dead = tx.open_table(DEAD).map_err(|e| failed("open", e))?;
        for op in ops {
            match op {
                Op::Group(key, record) => {
                    let json = serde_json::to_string(&record).map_err(|e| failed("encode", e))?;
                    groups
                        .insert(key.as_str(), json.as_str())
                        .map_err(|e| failed("write", e))?;
                }
                Op::DelGroup(key) => {
                    groups
                        .remove(key.as_str())
                        .map_err(|e| failed("write", e))?;
                }
                Op::PutDead(key, d) => {
                    let json = serde_json::to_string(&d).map_err(|e| failed("encode", e))?;
                    dead.insert(key.as_str(), json.as_str())
                        .map_err(|e| failed("write", e))?;
                }
                Op::DelDead(key) => {
                    dead.remove(key.as_str()).map_err(|e| failed("write", e))?;
                }
            }
        }
    }
    tx.commit().map_err(|e| failed("commit", e))
}

impl StateWriter {
    /// Stores `ops`; `replies` are answered once they are durable.
    pub(crate) fn submit(&self, ops: Vec<Op>, replies: Vec<oneshot::Sender<Result<(), Error>>>) {
        if let Err(mpsc::error::SendError((_, replies))) = self.tx.send((ops, replies)) {
            for r in replies {
                let _ = r.send(Err(Error::unavailable("the host is shutting down")));
            }
        }
    }
}
