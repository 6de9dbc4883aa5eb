//! Making and revoking tokens: in memory (for checking), in the store (for
//! restarts) and, in a cluster, on every host.

use weft_core::Error;

use crate::auth::TokenRecord;
use crate::state::Shared;

/// Keeps a token made on this host, and shares it with the cluster.
pub(crate) async fn add(shared: &Shared, record: TokenRecord) -> Result<(), Error> {
    let stored = record.clone();
    shared.store.blocking(move |s| s.put_token(&stored)).await?;
    shared.auth.insert(record.clone());
    shared.cluster_tokens.share(&record).await
}

/// Revokes a token here and in the cluster; returns whether this host knew
/// it.
pub(crate) async fn revoke(shared: &Shared, id: &str) -> Result<bool, Error> {
    let key = id.to_owned();
    let existed = shared.store.blocking(move |s| s.remove_token(&key)).await?;
    let known = shared.auth.remove(id);
    if existed || known {
        shared.cluster_tokens.revoke(id).await?;
    }
    Ok(existed || known)
}
