//! The supervisor's durable state: one record per deployed version, in a
//! redb file of its own (`deployments.redb`) so that it can evolve apart
//! from the host's store.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use redb::{Database, ReadableTable, TableDefinition};
use weft_core::Error;

use super::DeploymentRecord;

/// The file name of the database inside the data dir.
const FILE_NAME: &str = "deployments.redb";

/// `service@version` → the deployment's record as JSON.
const DEPLOYMENTS: TableDefinition<'_, &str, &str> = TableDefinition::new("deployments");

fn failed(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!(
        "the supervisor's store failed to {what}: {e}; check that the data dir is writable and the disk is not full"
    ))
}

/// A handle to the deployments database; cheap to clone. Methods block on
/// disk IO: call them from `spawn_blocking`.
#[derive(Clone)]
pub(crate) struct DeployStore {
    /// `None` once closed, so that a host started again on the same data
    /// dir in the same process can open the file.
    db: Arc<Mutex<Option<Database>>>,
}

impl std::fmt::Debug for DeployStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployStore").finish_non_exhaustive()
    }
}

fn key(record: &DeploymentRecord) -> String {
    format!("{}@{}", record.service, record.version)
}

impl DeployStore {
    pub(crate) fn open(dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::unavailable(format!(
                "cannot create the data dir {}: {e}; pass a writable directory with --data-dir",
                dir.display()
            ))
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| {
            Error::unavailable(format!(
                "cannot open {}: {e}; is another `weft host` using this data dir? stop it or pass another --data-dir",
                path.display()
            ))
        })?;
        let tx = db
            .begin_write()
            .map_err(|e| failed("start a transaction", e))?;
        tx.open_table(DEPLOYMENTS)
            .map_err(|e| failed("open its table", e))?;
        tx.commit().map_err(|e| failed("commit", e))?;
        Ok(DeployStore {
            db: Arc::new(Mutex::new(Some(db))),
        })
    }

    pub(crate) fn close(&self) {
        self.db.lock().take();
    }

    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T, Error>) -> Result<T, Error> {
        match &*self.db.lock() {
            Some(db) => f(db),
            None => Err(Error::unavailable(
                "the host is shutting down; try again once it is back",
            )),
        }
    }

    /// Runs `f` on a blocking thread.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&DeployStore) -> Result<T, Error> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::internal(format!("a store task failed: {e}")))?
    }

    /// Every stored deployment.
    pub(crate) fn all(&self) -> Result<Vec<DeploymentRecord>, Error> {
        self.with_db(|db| {
            let tx = db
                .begin_read()
                .map_err(|e| failed("start a transaction", e))?;
            let table = tx
                .open_table(DEPLOYMENTS)
                .map_err(|e| failed("open deployments", e))?;
            let mut out = Vec::new();
            for entry in table.iter().map_err(|e| failed("read deployments", e))? {
                let (k, json) = entry.map_err(|e| failed("read deployments", e))?;
                match serde_json::from_str::<DeploymentRecord>(json.value()) {
                    Ok(r) => out.push(r),
                    Err(e) => tracing::warn!(
                        deployment = k.value(),
                        error = %e,
                        "skipping an unreadable deployment in the store"
                    ),
                }
            }
            Ok(out)
        })
    }

    /// Stores (or replaces) a deployment.
    pub(crate) fn put(&self, record: &DeploymentRecord) -> Result<(), Error> {
        let json = serde_json::to_string(record).map_err(|e| failed("encode a deployment", e))?;
        let key = key(record);
        self.with_db(|db| {
            let tx = db
                .begin_write()
                .map_err(|e| failed("start a transaction", e))?;
            {
                let mut table = tx
                    .open_table(DEPLOYMENTS)
                    .map_err(|e| failed("open deployments", e))?;
                table
                    .insert(key.as_str(), json.as_str())
                    .map_err(|e| failed("store a deployment", e))?;
            }
            tx.commit().map_err(|e| failed("commit a deployment", e))
        })
    }

    /// Deletes a deployment.
    pub(crate) fn remove(&self, record: &DeploymentRecord) -> Result<(), Error> {
        let key = key(record);
        self.with_db(|db| {
            let tx = db
                .begin_write()
                .map_err(|e| failed("start a transaction", e))?;
            {
                let mut table = tx
                    .open_table(DEPLOYMENTS)
                    .map_err(|e| failed("open deployments", e))?;
                table
                    .remove(key.as_str())
                    .map_err(|e| failed("delete a deployment", e))?;
            }
            tx.commit().map_err(|e| failed("commit a deployment", e))
        })
    }
}
