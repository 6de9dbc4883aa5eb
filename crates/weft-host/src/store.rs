//! The host's durable state: one redb file in the data dir.
//!
//! redb commits with `Durability::Immediate` by default, so a write returns
//! only once it is fsync'd: a stored notification survives a crash.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use redb::{Database, ReadableTable, TableDefinition};
use weft_core::name::Version;
use weft_core::{Error, Notification};

use crate::auth::TokenRecord;

/// The file name of the database inside the data dir.
pub(crate) const FILE_NAME: &str = "host.redb";

/// Notification id → the notification as JSON (JSON keeps the file readable
/// by other tools and tolerant of fields added later).
const NOTIFICATIONS: TableDefinition<'_, u64, &str> = TableDefinition::new("notifications");
/// Service name → its main version.
const MAINS: TableDefinition<'_, &str, &str> = TableDefinition::new("mains");
/// Token id → the token's record as JSON (its secret only as a hash).
const TOKENS: TableDefinition<'_, &str, &str> = TableDefinition::new("tokens");

/// A handle to the store; cheap to clone. Every method blocks on disk IO, so
/// async code calls them through [`Store::blocking`].
#[derive(Clone)]
pub(crate) struct Store {
    /// `None` once closed: the file lock must be released when the host
    /// stops, even if a task still holds a handle, so that a host started
    /// again on the same data dir in the same process can open it.
    db: Arc<RwLock<Option<Database>>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!(
        "the host's store failed to {what}: {e}; check that the data dir is writable and the disk is not full"
    ))
}

impl Store {
    /// Opens (or creates) the database in `dir`, creating `dir` if needed.
    pub(crate) fn open(dir: &Path) -> Result<Store, Error> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::unavailable(format!(
                "cannot create the data dir {}: {e}; pass a writable directory with --data-dir",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| {
            Error::unavailable(format!(
                "cannot open the host's database {}: {e}; is another `weft host` using this data dir? \
                 stop it or pass another --data-dir",
                path.display()
            ))
        })?;
        // Create the tables up front so that reads never meet a missing table.
        let tx = db
            .begin_write()
            .map_err(|e| failed("start a transaction", e))?;
        tx.open_table(NOTIFICATIONS)
            .map_err(|e| failed("open its tables", e))?;
        tx.open_table(MAINS)
            .map_err(|e| failed("open its tables", e))?;
        tx.open_table(TOKENS)
            .map_err(|e| failed("open its tables", e))?;
        tx.commit().map_err(|e| failed("commit", e))?;
        Ok(Store {
            db: Arc::new(RwLock::new(Some(db))),
        })
    }

    /// Closes the database; later operations fail.
    pub(crate) fn close(&self) {
        self.db.write().take();
    }

    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T, Error>) -> Result<T, Error> {
        match &*self.db.read() {
            Some(db) => f(db),
            None => Err(Error::unavailable(
                "the host is shutting down; try again once it is back",
            )),
        }
    }

    /// Runs `f` with the store on a blocking thread.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, Error> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::internal(format!("a store task failed: {e}")))?
    }

    /// Stores a notification under the next id and returns it with that id.
    pub(crate) fn add_notification(
        &self,
        notification: Notification,
    ) -> Result<Notification, Error> {
        self.with_db(|db| add_notification(db, notification))
    }

    /// Notifications with an id above `after`, oldest first; with `limit`,
    /// only the newest `limit` of them.
    pub(crate) fn notifications(
        &self,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Notification>, Error> {
        self.with_db(|db| notifications(db, after, limit))
    }

    /// Records the main version of `service`.
    pub(crate) fn set_main(&self, service: &str, version: &Version) -> Result<(), Error> {
        self.set_mains(std::iter::once((service, version)))
    }

    /// Records several main versions in one transaction.
    pub(crate) fn set_mains<'a>(
        &self,
        mains: impl IntoIterator<Item = (&'a str, &'a Version)>,
    ) -> Result<(), Error> {
        self.with_db(|db| set_mains(db, mains))
    }

    /// Every recorded main version.
    pub(crate) fn mains(&self) -> Result<BTreeMap<String, Version>, Error> {
        self.with_db(mains)
    }

    /// Every stored token record.
    pub(crate) fn tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        self.with_db(tokens)
    }

    /// Stores (or replaces) a token record.
    pub(crate) fn put_token(&self, token: &TokenRecord) -> Result<(), Error> {
        self.with_db(|db| put_token(db, token))
    }

    /// Deletes a token record; returns whether it existed.
    pub(crate) fn remove_token(&self, id: &str) -> Result<bool, Error> {
        self.with_db(|db| remove_token(db, id))
    }
}

fn tokens(db: &Database) -> Result<Vec<TokenRecord>, Error> {
    let tx = db
        .begin_read()
        .map_err(|e| failed("start a transaction", e))?;
    let table = tx
        .open_table(TOKENS)
        .map_err(|e| failed("open tokens", e))?;
    let mut out = Vec::new();
    for entry in table.iter().map_err(|e| failed("read tokens", e))? {
        let (id, json) = entry.map_err(|e| failed("read tokens", e))?;
        match serde_json::from_str::<TokenRecord>(json.value()) {
            Ok(t) => out.push(t),
            Err(e) => {
                tracing::warn!(id = id.value(), error = %e, "skipping an unreadable token in the store")
            }
        }
    }
    Ok(out)
}

fn put_token(db: &Database, token: &TokenRecord) -> Result<(), Error> {
    let json = serde_json::to_string(token).map_err(|e| failed("encode a token", e))?;
    let tx = db
        .begin_write()
        .map_err(|e| failed("start a transaction", e))?;
    {
        let mut table = tx
            .open_table(TOKENS)
            .map_err(|e| failed("open tokens", e))?;
        table
            .insert(token.id.as_str(), json.as_str())
            .map_err(|e| failed("store a token", e))?;
    }
    tx.commit().map_err(|e| failed("commit a token", e))
}

fn remove_token(db: &Database, id: &str) -> Result<bool, Error> {
    let tx = db
        .begin_write()
        .map_err(|e| failed("start a transaction", e))?;
    let existed = {
        let mut table = tx
            .open_table(TOKENS)
            .map_err(|e| failed("open tokens", e))?;
        table
            .remove(id)
            .map_err(|e| failed("delete a token", e))?
            .is_some()
    };
    tx.commit().map_err(|e| failed("commit a token", e))?;
    Ok(existed)
}

fn add_notification(db: &Database, mut notification: Notification) -> Result<Notification, Error> {
    let tx = db
        .begin_write()
        .map_err(|e| failed("start a transaction", e))?;
    {
        let mut table = tx
            .open_table(NOTIFICATIONS)
            .map_err(|e| failed("open notifications", e))?;
        let last = table
            .last()
            .map_err(|e| failed("read notifications", e))?
            .map(|(k, _)| k.value())
            .unwrap_or(0);
        notification.id = last + 1;
        let json =
            serde_json::to_string(&notification).map_err(|e| failed("encode a notification", e))?;
        table
            .insert(notification.id, json.as_str())
            .map_err(|e| failed("store a notification", e))?;
    }
    tx.commit()
        .map_err(|e| failed("commit a notification", e))?;
    Ok(notification)
}

fn notifications(
    db: &Database,
    after: Option<u64>,
    limit: Option<usize>,
) -> Result<Vec<Notification>, Error> {
    let tx = db
        .begin_read()
        .map_err(|e| failed("start a transaction", e))?;
    let table = tx
        .open_table(NOTIFICATIONS)
        .map_err(|e| failed("open notifications", e))?;
    let start = after.map_or(0, |a| a.saturating_add(1));
    let range = table
        .range(start..)
        .map_err(|e| failed("read notifications", e))?;
    let limit = limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    // Newest first, so that `limit` keeps the newest; reversed below.
    for entry in range.rev().take(limit) {
        let (_, json) = entry.map_err(|e| failed("read notifications", e))?;
        match serde_json::from_str::<Notification>(json.value()) {
            Ok(n) => out.push(n),
            Err(e) => {
                tracing::warn!(error = %e, "skipping an unreadable notification in the store")
            }
        }
    }
    out.reverse();
    Ok(out)
}

fn set_mains<'a>(
    db: &Database,
    mains: impl IntoIterator<Item = (&'a str, &'a Version)>,
) -> Result<(), Error> {
    let tx = db
        .begin_write()
        .map_err(|e| failed("start a transaction", e))?;
    {
        let mut table = tx
            .open_table(MAINS)
            .map_err(|e| failed("open main versions", e))?;
        for (service, version) in mains {
            table
                .insert(service, version.to_string().as_str())
                .map_err(|e| failed("store a main version", e))?;
        }
    }
    tx.commit().map_err(|e| failed("commit main versions", e))
}

fn mains(db: &Database) -> Result<BTreeMap<String, Version>, Error> {
    let tx = db
        .begin_read()
        .map_err(|e| failed("start a transaction", e))?;
    let table = tx
        .open_table(MAINS)
        .map_err(|e| failed("open main versions", e))?;
    let mut out = BTreeMap::new();
    for entry in table.iter().map_err(|e| failed("read main versions", e))? {
        let (service, version) = entry.map_err(|e| failed("read main versions", e))?;
        match Version::parse(version.value()) {
            Ok(v) => {
                out.insert(service.value().to_owned(), v);
            }
            Err(e) => {
                tracing::warn!(service = service.value(), error = %e, "skipping an unreadable main version")
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use weft_core::Severity;

    use super::*;

    fn note(message: &str) -> Notification {
        Notification {
            id: 0,
            time_ms: 1,
            severity: Severity::Info,
            message: message.into(),
            service: "s".into(),
            version: String::new(),
            instance: String::new(),
        }
    }

    #[test]
    fn notifications_get_ids_and_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for m in ["a", "b", "c", "d"] {
            store.add_notification(note(m)).unwrap();
        }
        let all = store.notifications(None, None).unwrap();
        assert_eq!(all.iter().map(|n| n.id).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let newest = store.notifications(None, Some(2)).unwrap();
        assert_eq!(
            newest
                .iter()
                .map(|n| n.message.as_str())
                .collect::<Vec<_>>(),
            ["c", "d"]
        );
        let after = store.notifications(Some(3), None).unwrap();
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].id, 4);
        assert!(
            store
                .notifications(Some(u64::MAX), None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn mains_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.set_main("a", &Version::new(1, 0, 0)).unwrap();
        store.set_main("a", &Version::new(2, 0, 0)).unwrap();
        store.set_main("b", &Version::new(0, 1, 0)).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let mains = store.mains().unwrap();
        assert_eq!(mains["a"], Version::new(2, 0, 0));
        assert_eq!(mains.len(), 2);
    }

    #[test]
    fn closing_releases_the_file_even_with_handles_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let handle = store.clone();
        store.close();
        assert_eq!(
            handle.mains().unwrap_err().code(),
            weft_core::Code::Unavailable
        );
        Store::open(dir.path()).unwrap();
    }
}
