//! The host's durable state: one redb file in the data dir, `host.redb`,
//! with notifications, main versions and tokens (only their hashes).
//!
//! Writes commit durably before they return ([`Db::write`]): a stored
//! notification survives a crash.

use std::collections::BTreeMap;
use std::path::Path;

use weft_core::db::redb::{ReadableTable, TableDefinition};
use weft_core::db::{Db, TxError};
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
#[derive(Debug, Clone)]
pub(crate) struct Store {
    db: Db,
}

/// Decodes the JSON records of a table, skipping (with a warning) one that
/// does not read, so that one bad record does not hide the others.
fn decode_each<T: serde::de::DeserializeOwned>(
    what: &str,
    entries: impl Iterator<Item = (String, String)>,
) -> Vec<T> {
    entries
        .filter_map(|(key, json)| match serde_json::from_str::<T>(&json) {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(key, error = %e, "skipping an unreadable {what} in the store");
                None
            }
        })
        .collect()
}

impl Store {
    /// Opens (or creates) the database in `dir`, creating `dir` if needed.
    pub(crate) fn open(dir: &Path) -> Result<Store, Error> {
        let db = Db::open(&dir.join(FILE_NAME), "the host's database", |tx| {
            tx.open_table(NOTIFICATIONS)?;
            tx.open_table(MAINS)?;
            tx.open_table(TOKENS)?;
            Ok(())
        })?;
        Ok(Store { db })
    }

    /// Closes the database; later operations fail.
    pub(crate) fn close(&self) {
        self.db.close();
    }

    /// Runs `f` with the store on a blocking thread.
    pub(crate) async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, Error> + Send + 'static,
    {
        let store = self.clone();
        self.db.blocking(move |_| f(&store)).await
    }

    /// Stores a notification under the next id and returns it with that id.
    pub(crate) fn add_notification(
        &self,
        mut notification: Notification,
    ) -> Result<Notification, Error> {
        self.db.write(|tx| {
            let mut table = tx.open_table(NOTIFICATIONS)?;
            let last = table.last()?.map(|(k, _)| k.value()).unwrap_or(0);
            notification.id = last + 1;
            let json = serde_json::to_string(&notification).map_err(TxError::other)?;
            table.insert(notification.id, json.as_str())?;
            Ok(())
        })?;
        Ok(notification)
    }

    /// Notifications with an id above `after`, oldest first; with `limit`,
    /// only the newest `limit` of them.
    pub(crate) fn notifications(
        &self,
        after: Option<u64>,
        limit: Option<usize>,
    ) -> Result<Vec<Notification>, Error> {
        let rows = self.db.read(|tx| {
            let table = tx.open_table(NOTIFICATIONS)?;
            let start = after.map_or(0, |a| a.saturating_add(1));
            let mut rows = Vec::new();
            // Newest first, so that `limit` keeps the newest; reversed below.
            for entry in table
                .range(start..)?
                .rev()
                .take(limit.unwrap_or(usize::MAX))
            {
                let (id, json) = entry?;
                rows.push((id.value().to_string(), json.value().to_owned()));
            }
            rows.reverse();
            Ok(rows)
        })?;
        Ok(decode_each("notification", rows.into_iter()))
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
        self.db.write(|tx| {
            let mut table = tx.open_table(MAINS)?;
            for (service, version) in mains {
                table.insert(service, version.to_string().as_str())?;
            }
            Ok(())
        })
    }

    /// Every recorded main version.
    pub(crate) fn mains(&self) -> Result<BTreeMap<String, Version>, Error> {
        let rows = self.db.read(|tx| {
            let table = tx.open_table(MAINS)?;
            let mut rows = Vec::new();
            for entry in table.iter()? {
                let (service, version) = entry?;
                rows.push((service.value().to_owned(), version.value().to_owned()));
            }
            Ok(rows)
        })?;
        let mut out = BTreeMap::new();
        for (service, version) in rows {
            match Version::parse(&version) {
                Ok(v) => {
                    out.insert(service, v);
                }
                Err(e) => {
                    tracing::warn!(%service, error = %e, "skipping an unreadable main version")
                }
            }
        }
        Ok(out)
    }

    /// Every stored token record.
    pub(crate) fn tokens(&self) -> Result<Vec<TokenRecord>, Error> {
        let rows = self.db.read(|tx| {
            let table = tx.open_table(TOKENS)?;
            let mut rows = Vec::new();
            for entry in table.iter()? {
                let (id, json) = entry?;
                rows.push((id.value().to_owned(), json.value().to_owned()));
            }
            Ok(rows)
        })?;
        Ok(decode_each("token", rows.into_iter()))
    }

    /// Stores (or replaces) a token record.
    pub(crate) fn put_token(&self, token: &TokenRecord) -> Result<(), Error> {
        let json = serde_json::to_string(token)
            .map_err(|e| Error::internal(format!("cannot encode a token record: {e}")))?;
        self.db.write(|tx| {
            tx.open_table(TOKENS)?
                .insert(token.id.as_str(), json.as_str())?;
            Ok(())
        })
    }

    /// Deletes a token record; returns whether it existed.
    pub(crate) fn remove_token(&self, id: &str) -> Result<bool, Error> {
        self.db
            .write(|tx| Ok(tx.open_table(TOKENS)?.remove(id)?.is_some()))
    }
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
