//! Executables that travel between the hosts of a cluster: a JetStream
//! object store, `weft_artifacts`, holds each under its SHA-256 (hex), so
//! that a version deployed on several hosts is uploaded once and every
//! host named fetches it from there. The host that fetches one checks its
//! SHA-256 before it runs it; one that does not match is refused and
//! removed from the store, so that the next deploy puts it again.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, object_store};
use bytes::Bytes;
use futures::StreamExt as _;
use tokio::io::AsyncReadExt as _;
use weft_core::Error;
use weft_core::backoff::Backoff;

use super::deployments::ArtifactStream;

/// The object store of the cluster's executables.
const BUCKET: &str = "weft_artifacts";

/// How long putting an executable into the store may take.
const PUT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long opening an executable in the store may take.
const GET_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of an executable is read at a time.
const CHUNK: usize = 128 * 1024;

/// The cluster's executables, by SHA-256.
#[derive(Clone)]
pub(super) struct Artifacts {
    store: object_store::ObjectStore,
    servers: String,
}

impl fmt::Debug for Artifacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Artifacts")
            .field("bucket", &BUCKET)
            .finish()
    }
}

/// How often creating the object store is tried (about 8 s in all).
const CREATE_ATTEMPTS: u32 = 12;

impl Artifacts {
    /// Opens (or creates) the object store with `replicas` copies.
    pub(super) async fn open(
        js: &jetstream::Context,
        replicas: usize,
        servers: &str,
    ) -> Result<Artifacts, Error> {
        // A cluster that just formed may not yet count all its peers
        // online ("no suitable peers for placement"): tried again for a
        // few seconds, as the buckets are.
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut attempt = 0;
        let store = loop {
            attempt += 1;
            if let Ok(store) = js.get_object_store(BUCKET).await {
                break store;
            }
            let created = js
                .create_object_store(object_store::Config {
                    bucket: BUCKET.to_owned(),
                    description: Some(
                        "weft: executables deployed on several hosts, by SHA-256".to_owned(),
                    ),
                    num_replicas: replicas,
                    ..Default::default()
                })
                .await;
            match created {
                Ok(store) => break store,
                // Another host may have created it meanwhile.
                Err(create) => match js.get_object_store(BUCKET).await {
                    Ok(store) => break store,
                    Err(_) if attempt < CREATE_ATTEMPTS => {
                        tracing::debug!(error = %create, "the object store cannot be made yet; trying again");
                        tokio::time::sleep(backoff.next_delay()).await;
                    }
                    Err(_) => {
                        return Err(Error::unavailable(format!(
                            "cannot create the object store `{BUCKET}` in NATS at {servers}: {create}"
                        )));
                    }
                },
            }
        };
        // An object store of that name made by someone else, with objects
        // that expire or a size limit, would lose executables hosts restore
        // from: refused, and left as it is.
        let stream_name = format!("OBJ_{BUCKET}");
        let have = js
            .get_stream(&stream_name)
            .await
            .map_err(|e| {
                Error::unavailable(format!(
                    "cannot read the object store `{BUCKET}` in NATS at {servers}: {e}"
                ))
            })?
            .cached_info()
            .config
            .clone();
        let mut differences = Vec::new();
        if !have.max_age.is_zero() {
            differences.push(format!(
                "its objects expire after {} s, weft keeps executables until it deletes them",
                have.max_age.as_secs_f64()
            ));
        }
        if have.max_bytes > 0 {
            differences.push(format!(
                "it holds at most {} bytes, weft's has no limit",
                have.max_bytes
            ));
        }
        super::nats::foreign(&format!("object store `{BUCKET}`"), servers, &differences)?;
        Ok(Artifacts {
            store,
            servers: servers.to_owned(),
        })
    }

    /// Puts the file at `path` under `sha256`, unless an object of that
    /// name and size is there already.
    pub(super) async fn put(&self, sha256: &str, path: &Path) -> Result<(), Error> {
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|e| Error::internal(format!("cannot read {}: {e}", path.display())))?
            .len();
        if let Ok(info) = self.store.info(sha256).await
            && !info.deleted
            && info.size as u64 == size
        {
            return Ok(());
        }
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| Error::internal(format!("cannot read {}: {e}", path.display())))?;
        let put = self.store.put(sha256, &mut file);
        tokio::time::timeout(PUT_TIMEOUT, put)
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "putting the executable into the cluster's object store `{BUCKET}` took more than {} s; check NATS at {} and deploy again",
                    PUT_TIMEOUT.as_secs(),
                    self.servers
                ))
            })?
            .map_err(|e| {
                Error::unavailable(format!(
                    "cannot put the executable into the cluster's object store `{BUCKET}` in NATS at {}: {e}; deploy again once NATS takes it",
                    self.servers
                ))
            })?;
        Ok(())
    }

    /// The object named `sha256`, read as it arrives.
    pub(super) async fn get(&self, sha256: &str) -> Result<ArtifactStream, Error> {
        let object = tokio::time::timeout(GET_TIMEOUT, self.store.get(sha256))
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "opening executable {sha256} in the cluster's object store `{BUCKET}` took more than {} s; check NATS at {}",
                    GET_TIMEOUT.as_secs(),
                    self.servers
                ))
            })?
            .map_err(|e| {
                Error::not_found(format!(
                    "executable {sha256} is not in the cluster's object store `{BUCKET}` ({e}); deploy the version again"
                ))
            })?;
        let chunks = futures::stream::unfold(Some(object), |object| async move {
            let mut object = object?;
            let mut buffer = vec![0u8; CHUNK];
            match object.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(Bytes::from(buffer)), Some(object)))
                }
                Err(e) => Some((Err(e), None)),
            }
        });
        Ok(chunks.boxed())
    }

    /// Removes the object named `sha256`.
    pub(super) async fn delete(&self, sha256: &str) {
        if let Err(e) = self.store.delete(sha256).await {
            tracing::warn!(%sha256, error = %e, "cannot remove a corrupt executable from the cluster's object store");
        }
    }
}
