//! An embedded database file (redb) with the handling every store of the
//! host needs: tables created up front, writes durable before they return,
//! errors that say what to do, and a close that releases the file even while
//! handles remain.
//!
//! ```
//! use weft_core::db::{Db, redb::{ReadableTable, TableDefinition}};
//!
//! const MAINS: TableDefinition<'_, &str, &str> = TableDefinition::new("mains");
//!
//! let dir = std::env::temp_dir().join(format!("weft-db-doc-{}", std::process::id()));
//! let db = Db::open(&dir.join("host.redb"), "the host's database", |tx| {
//!     tx.open_table(MAINS)?;
//!     Ok(())
//! })?;
//! db.write(|tx| {
//!     tx.open_table(MAINS)?.insert("die_roller", "1.0.0")?;
//!     Ok(())
//! })?;
//! let main = db.read(|tx| {
//!     Ok(tx.open_table(MAINS)?.get("die_roller")?.map(|v| v.value().to_owned()))
//! })?;
//! assert_eq!(main.as_deref(), Some("1.0.0"));
//!
//! db.close();
//! assert!(db.read(|_| Ok(())).is_err());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), weft_core::Error>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
pub use redb;
use redb::{Database, Durability, ReadTransaction, WriteTransaction};

use crate::Error;

/// What a closure given to [`Db`] fails with: any of redb's errors, boxed,
/// since redb's own error is large and the closures' results would carry
/// its size on every success too. `?` converts every redb error into it.
///
/// ```
/// use weft_core::db::{TxError, redb};
///
/// fn fails() -> Result<(), TxError> {
///     Err(redb::StorageError::Io(std::io::Error::other("disk on fire")))?
/// }
/// assert!(fails().unwrap_err().to_string().contains("disk on fire"));
/// ```
#[derive(Debug)]
pub struct TxError(Box<redb::Error>);

impl TxError {
    /// A failure of the closure's own (encoding a record, say), reported as
    /// the database's errors are.
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        TxError::from(redb::StorageError::Io(std::io::Error::other(e)))
    }
}

impl<E: Into<redb::Error>> From<E> for TxError {
    fn from(e: E) -> Self {
        TxError(Box::new(e.into()))
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for TxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

/// A handle to one redb file; cheap to clone, all clones share the file.
///
/// Every method but [`Db::blocking`] blocks on disk IO; async code calls
/// them inside [`Db::blocking`].
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    /// Names the database in errors, e.g. "the host's database".
    what: &'static str,
    path: PathBuf,
    /// `None` once closed: the file lock must be released when the host
    /// stops, even if a task still holds a handle, so that a host started
    /// again on the same data dir in the same process can open it.
    db: RwLock<Option<Database>>,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db")
            .field("what", &self.inner.what)
            .field("path", &self.inner.path)
            .field("open", &self.inner.db.read().is_some())
            .finish()
    }
}

impl Db {
    /// Opens (or creates) the database file at `path`, creating its parent
    /// directory if needed, and runs `init` in a first transaction, which is
    /// the place to create every table, so that reads never meet a missing
    /// one. `what` names the database for people, e.g. "the host's
    /// database"; every error says it.
    ///
    /// Fails with [`Code::Unavailable`](crate::Code::Unavailable) when the
    /// directory cannot be created or another process holds the file.
    pub fn open(
        path: &Path,
        what: &'static str,
        init: impl FnOnce(&WriteTransaction) -> Result<(), TxError>,
    ) -> Result<Db, Error> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::unavailable(format!(
                    "cannot create the directory {} for {what}: {e}; pass a writable directory with --data-dir",
                    dir.display()
                ))
            })?;
        }
        let db = Database::create(path).map_err(|e| {
            Error::unavailable(format!(
                "cannot open {what} {}: {e}; is another `weft host` using this data dir? \
                 stop it or pass another --data-dir",
                path.display()
            ))
        })?;
        let failed = |e: TxError| failed(what, "create its tables", e);
        let tx = db.begin_write().map_err(|e| failed(e.into()))?;
        init(&tx).map_err(failed)?;
        tx.commit().map_err(|e| failed(e.into()))?;
        Ok(Db {
            inner: Arc::new(Inner {
                what,
                path: path.to_owned(),
                db: RwLock::new(Some(db)),
            }),
        })
    }

    /// The file this database lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in a read transaction, which sees the state of the last
    /// commit before it began.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, TxError>,
    ) -> Result<T, Error> {
        self.with_db(|db| {
            let tx = db.begin_read()?;
            f(&tx)
        })
        .map_err(|e| e.into_error(self.inner.what, "read"))
    }

    /// Runs `f` in a write transaction and commits it once `f` succeeds; the
    /// commit returns only once the data is on disk, so what was written
    /// survives a crash. If `f` fails, nothing it wrote is kept.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, TxError>,
    ) -> Result<T, Error> {
        self.with_db(|db| {
            let mut tx = db.begin_write()?;
            tx.set_durability(Durability::Immediate);
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .map_err(|e| e.into_error(self.inner.what, "write"))
    }

    /// Runs `f` with this database on a thread where blocking is allowed,
    /// so that disk IO does not stall the async tasks of its thread.
    ///
    /// ```
    /// # use weft_core::db::Db;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> weft_core::Result<()> {
    /// # let dir = std::env::temp_dir().join(format!("weft-db-blocking-{}", std::process::id()));
    /// let db = Db::open(&dir.join("state.redb"), "the example's state", |_| Ok(()))?;
    /// let tables = db.blocking(|db| db.read(|tx| Ok(tx.list_tables()?.count()))).await?;
    /// assert_eq!(tables, 0);
    /// # std::fs::remove_dir_all(&dir).ok();
    /// # Ok(()) }
    /// ```
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T, Error> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| Error::internal(format!("a task using {} failed: {e}", self.inner.what)))?
    }

    /// Closes the file once the transactions under way have ended; every
    /// clone then answers [`Code::Unavailable`](crate::Code::Unavailable)
    /// ("shutting down"). The file can be opened again at once, by this
    /// process or another.
    pub fn close(&self) {
        self.inner.db.write().take();
    }

    fn with_db<T>(&self, f: impl FnOnce(&Database) -> Result<T, TxError>) -> Result<T, DbError> {
        match &*self.inner.db.read() {
            Some(db) => f(db).map_err(DbError::Redb),
            None => Err(DbError::Closed),
        }
    }
}

/// Why an operation on an open-or-closed database failed.
enum DbError {
    Closed,
    Redb(TxError),
}

impl DbError {
    fn into_error(self, what: &str, op: &str) -> Error {
        match self {
            DbError::Closed => Error::unavailable(format!(
                "{what} is closed because the host is shutting down; try again once it is back"
            )),
            DbError::Redb(e) => failed(what, op, e),
        }
    }
}

/// A failure of the file itself: the disk is full, the file is not writable
/// or is damaged. Unavailable rather than internal: freeing disk space or
/// fixing permissions makes the same request work.
fn failed(what: &str, op: &str, e: TxError) -> Error {
    Error::unavailable(format!(
        "{what} failed to {op}: {e}; check that the data dir is writable and the disk is not full"
    ))
}

#[cfg(test)]
mod tests {
    use redb::{ReadableTableMetadata, TableDefinition};

    use super::*;
    use crate::Code;

    const T: TableDefinition<'_, u64, &str> = TableDefinition::new("t");

    fn open(path: &Path) -> Result<Db, Error> {
        Db::open(path, "the test's database", |tx| {
            tx.open_table(T)?;
            Ok(())
        })
    }

    fn get(db: &Db, k: u64) -> Result<Option<String>, Error> {
        db.read(|tx| Ok(tx.open_table(T)?.get(k)?.map(|v| v.value().to_owned())))
    }

    #[test]
    fn creates_the_parent_dir_and_tables_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("a/b/x.redb")).unwrap();
        assert_eq!(get(&db, 1).unwrap(), None);
        assert_eq!(db.path(), dir.path().join("a/b/x.redb"));
    }

    #[test]
    fn writes_are_kept_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        let db = open(&path).unwrap();
        let n = db
            .write(|tx| {
                let mut t = tx.open_table(T)?;
                t.insert(1, "one")?;
                t.insert(2, "two")?;
                Ok(t.len()?)
            })
            .unwrap();
        assert_eq!(n, 2);
        db.close();
        let db = open(&path).unwrap();
        assert_eq!(get(&db, 2).unwrap().as_deref(), Some("two"));
    }

    #[test]
    fn a_failed_write_keeps_nothing_and_names_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("x.redb")).unwrap();
        let err = db
            .write(|tx| {
                tx.open_table(T)?.insert(1, "lost")?;
                Err::<(), _>(redb::Error::Io(std::io::Error::other("disk on fire")).into())
            })
            .unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(
            err.message()
                .contains("the test's database failed to write"),
            "{err}"
        );
        assert!(err.message().contains("disk on fire"), "{err}");
        assert!(err.message().contains("disk is not full"), "{err}");
        assert_eq!(get(&db, 1).unwrap(), None);
    }

    #[test]
    fn a_second_open_says_another_host_may_hold_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        let _first = open(&path).unwrap();
        let err = open(&path).unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains("the test's database"), "{err}");
        assert!(
            err.message()
                .contains("is another `weft host` using this data dir?"),
            "{err}"
        );
    }

    #[test]
    fn an_unwritable_dir_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let err = open(&file.join("x.redb")).unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(
            err.message().contains("cannot create the directory"),
            "{err}"
        );
    }

    #[test]
    fn a_failing_init_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let err = Db::open(&dir.path().join("x.redb"), "the test's database", |_| {
            Err(redb::Error::Io(std::io::Error::other("no room")).into())
        })
        .unwrap_err();
        assert!(
            err.message()
                .contains("failed to create its tables: I/O error: no room"),
            "{err}"
        );
    }

    #[test]
    fn close_releases_the_file_while_clones_remain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        let db = open(&path).unwrap();
        let clone = db.clone();
        db.close();
        let err = clone.read(|_| Ok(())).unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(err.message().contains("shutting down"), "{err}");
        assert!(clone.write(|_| Ok(())).is_err());
        let again = open(&path).unwrap();
        again
            .write(|tx| Ok(tx.open_table(T)?.insert(3, "three").map(drop)?))
            .unwrap();
        assert!(format!("{clone:?}").contains("open: false"));
    }

    #[tokio::test]
    async fn blocking_runs_on_a_blocking_thread() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(&dir.path().join("x.redb")).unwrap();
        let got = db
            .blocking(|db| {
                db.write(|tx| Ok(tx.open_table(T)?.insert(7, "seven").map(drop)?))?;
                get(db, 7)
            })
            .await
            .unwrap();
        assert_eq!(got.as_deref(), Some("seven"));
    }
}
