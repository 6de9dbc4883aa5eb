//! The supervisor's durable state: one record per deployed version, in a
//! redb file of its own (`deployments.redb`) so that it can evolve apart
//! from the host's store. The deployment backends keep this host's
//! deployments here (see [`crate::backend::DeploymentBackend`]).

use std::path::Path;

use weft_core::Error;
use weft_core::db::Db;
use weft_core::db::redb::{ReadableTable, TableDefinition};
use weft_core::name::Version;

use super::DeploymentRecord;

/// The file name of the database inside the data dir.
const FILE_NAME: &str = "deployments.redb";

/// `service@version` → the deployment's record as JSON.
const DEPLOYMENTS: TableDefinition<'_, &str, &str> = TableDefinition::new("deployments");

/// A handle to the deployments database; cheap to clone. Methods block on
/// disk IO: call them through [`DeployStore::blocking`].
#[derive(Debug, Clone)]
pub(crate) struct DeployStore {
    db: Db,
}

fn key(service: &str, version: &Version) -> String {
    format!("{service}@{version}")
}

impl DeployStore {
    pub(crate) fn open(dir: &Path) -> Result<Self, Error> {
        let db = Db::open(&dir.join(FILE_NAME), "the supervisor's store", |tx| {
            tx.open_table(DEPLOYMENTS)?;
            Ok(())
        })?;
        Ok(DeployStore { db })
    }

    /// Closes the file, so that a host started again on the same data dir
    /// in the same process can open it.
    pub(crate) fn close(&self) {
        self.db.close();
    }

    /// Runs `f` on a blocking thread.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&DeployStore) -> Result<T, Error> + Send + 'static,
    {
        let store = self.clone();
        self.db.blocking(move |_| f(&store)).await
    }

    /// Every stored deployment.
    pub(crate) fn all(&self) -> Result<Vec<DeploymentRecord>, Error> {
        let rows = self.db.read(|tx| {
            let table = tx.open_table(DEPLOYMENTS)?;
            let mut rows = Vec::new();
            for entry in table.iter()? {
                let (k, json) = entry?;
                rows.push((k.value().to_owned(), json.value().to_owned()));
            }
            Ok(rows)
        })?;
        Ok(rows
            .into_iter()
            .filter_map(
                |(k, json)| match serde_json::from_str::<DeploymentRecord>(&json) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(
                            deployment = k,
                            error = %e,
                            "skipping an unreadable deployment in the store"
                        );
                        None
                    }
                },
            )
            .collect())
    }

    /// Stores (or replaces) a deployment.
    pub(crate) fn put(&self, record: &DeploymentRecord) -> Result<(), Error> {
        let json = serde_json::to_string(record).map_err(|e| {
            Error::internal(format!(
                "the supervisor's store failed to encode a deployment: {e}"
            ))
        })?;
        let key = key(&record.service, &record.version);
        self.db.write(|tx| {
            tx.open_table(DEPLOYMENTS)?
                .insert(key.as_str(), json.as_str())?;
            Ok(())
        })
    }

    /// Deletes a deployment.
    pub(crate) fn remove(&self, service: &str, version: &Version) -> Result<(), Error> {
        let key = key(service, version);
        self.db.write(|tx| {
            tx.open_table(DEPLOYMENTS)?.remove(key.as_str())?;
            Ok(())
        })
    }
}
