//! Uploaded executables: stored per version and content, so that a failed
//! redeploy rolls back to the executable that ran before, and removed once
//! nothing uses them.

use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use weft_core::Error;
use weft_core::name::Version;

use super::{Staged, Supervisor};

fn io_failed(what: String, e: std::io::Error) -> Error {
    Error::internal(format!(
        "{what}: {e}; check that the host's data dir is writable and the disk is not full"
    ))
}

impl Supervisor {
    /// Stores an uploaded executable, reading at most `limit` bytes.
    pub(crate) async fn stage<S, E>(
        &self,
        service: &str,
        version: &Version,
        mut body: S,
        limit: u64,
    ) -> Result<Staged, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let dir = self.version_dir(service, version);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_failed(format!("cannot create {}", dir.display()), e))?;
        let tmp = dir.join(format!(".upload-{:016x}", rand::random::<u64>()));
        let result = async {
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io_failed(format!("cannot create {}", tmp.display()), e))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| {
                    Error::invalid_argument(
                        "body",
                        format!("the upload broke off ({e}); deploy again"),
                    )
                })?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(Error::resource_exhausted(format!(
                        "the executable is larger than the host's limit of {} MiB; build a smaller one (strip debug info)",
                        limit >> 20
                    )));
                }
                hasher.update(&chunk);
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_failed(format!("cannot write {}", tmp.display()), e))?;
            }
            if size == 0 {
                return Err(Error::invalid_argument(
                    "body",
                    "the upload is empty; send the service's executable as the request body",
                ));
            }
            file.sync_all()
                .await
                .map_err(|e| io_failed(format!("cannot write {}", tmp.display()), e))?;
            drop(file);
            let sha256 = format!("{:x}", hasher.finalize());
            let program = self.program(service, version, &sha256);
            if let Some(parent) = program.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| io_failed(format!("cannot create {}", parent.display()), e))?;
            }
            use std::os::unix::fs::PermissionsExt as _;
            tokio::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
                .await
                .map_err(|e| io_failed(format!("cannot make {} executable", tmp.display()), e))?;
            // Renaming never writes into a file a running instance executes.
            tokio::fs::rename(&tmp, &program)
                .await
                .map_err(|e| io_failed(format!("cannot store {}", program.display()), e))?;
            Ok(Staged {
                sha256,
                size,
                program,
            })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    pub(super) async fn prune_artifacts(
        &self,
        service: &str,
        version: &Version,
        keep: Option<&str>,
    ) {
        let dir = self.version_dir(service, version);
        let Some(keep) = keep else {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return;
        };
        let keep = &keep[..16.min(keep.len())];
        let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
            return;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            if entry.file_name().to_string_lossy() != keep {
                let path = entry.path();
                let _ = if path.is_dir() {
                    tokio::fs::remove_dir_all(&path).await
                } else {
                    tokio::fs::remove_file(&path).await
                };
            }
        }
    }
}
