//! Where consumer groups and dead letters are kept: a redb file of the event
//! log's own (`events/state.redb`), written by one thread that commits the
//! changes of every group waiting at once in one transaction (one fsync).

use std::path::Path;

use tokio::sync::{mpsc, oneshot};
use weft_core::Error;
use weft_core::db::redb::{self, ReadableTable, TableDefinition};
use weft_core::db::{Db, TxError};

use super::group::{DeadLetter, GroupRecord};

/// `topic \x1f group` → the group's record as JSON.
const GROUPS: TableDefinition<'_, &str, &str> = TableDefinition::new("groups");
/// `topic \x1f id \x1f group` → the dead letter as JSON.
const DEAD: TableDefinition<'_, &str, &str> = TableDefinition::new("dead");

/// Names the file in errors.
const WHAT: &str = "the event log's state file";

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
        "{WHAT} failed to {what}: {e}; check that the data dir is writable and the disk is not full"
    ))
}

/// What was stored before.
pub(crate) type Loaded = (Vec<GroupRecord>, Vec<DeadLetter>);

/// Every entry of a table, as (key, JSON).
fn entries(
    tx: &redb::ReadTransaction,
    table: TableDefinition<'_, &str, &str>,
) -> Result<Vec<(String, String)>, TxError> {
    let mut out = Vec::new();
    for entry in tx.open_table(table)?.iter()? {
        let (k, v) = entry?;
        out.push((k.value().to_owned(), v.value().to_owned()));
    }
    Ok(out)
}

/// Opens the state file and starts its writer thread, which ends (closing
/// the file) once every [`StateWriter`] is dropped.
pub(crate) fn open(
    path: &Path,
) -> Result<(StateWriter, Loaded, std::thread::JoinHandle<()>), Error> {
    let db = Db::open(path, WHAT, |tx| {
        tx.open_table(GROUPS)?;
        tx.open_table(DEAD)?;
        Ok(())
    })?;
    let (group_rows, dead_rows) = db.read(|tx| Ok((entries(tx, GROUPS)?, entries(tx, DEAD)?)))?;
    let mut groups = Vec::new();
    for (k, v) in group_rows {
        match serde_json::from_str::<GroupRecord>(&v) {
            Ok(g) => groups.push(g),
            Err(e) => {
                tracing::warn!(group = k, error = %e, "skipping an unreadable consumer group record")
            }
        }
    }
    let mut dead = Vec::new();
    for (k, v) in dead_rows {
        match serde_json::from_str::<DeadLetter>(&v) {
            Ok(d) => dead.push(d),
            Err(e) => {
                tracing::warn!(key = k, error = %e, "skipping an unreadable dead letter")
            }
        }
    }
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

/// One change, encoded.
enum Encoded {
    Group(String, String),
    DelGroup(String),
    PutDead(String, String),
    DelDead(String),
}

/// Stores `ops` in one transaction (one fsync).
fn commit(db: &Db, ops: Vec<Op>) -> Result<(), Error> {
    // Encoded before the transaction, whose closure can only fail with
    // redb's errors.
    let encoded = ops
        .into_iter()
        .map(|op| {
            Ok(match op {
                Op::Group(key, record) => Encoded::Group(key, serde_json::to_string(&record)?),
                Op::DelGroup(key) => Encoded::DelGroup(key),
                Op::PutDead(key, d) => Encoded::PutDead(key, serde_json::to_string(&d)?),
                Op::DelDead(key) => Encoded::DelDead(key),
            })
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()
        .map_err(|e| failed("encode", e))?;
    db.write(|tx| {
        let mut groups = tx.open_table(GROUPS)?;
        let mut dead = tx.open_table(DEAD)?;
        for op in encoded {
            match op {
                Encoded::Group(key, json) => {
                    groups.insert(key.as_str(), json.as_str())?;
                }
                Encoded::DelGroup(key) => {
                    groups.remove(key.as_str())?;
                }
                Encoded::PutDead(key, json) => {
                    dead.insert(key.as_str(), json.as_str())?;
                }
                Encoded::DelDead(key) => {
                    dead.remove(key.as_str())?;
                }
            }
        }
        Ok(())
    })
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
