//! The tokens `weft login` saved, one per host, in
//! `$XDG_CONFIG_HOME/weft/credentials.json` (or
//! `~/.config/weft/credentials.json`), readable only by the user:
//! `{"hosts": {"tcp://10.0.0.5:7400": {"token": "weft_..."}}}`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use weft::Address;

use crate::{Failure, Result};

#[derive(Debug, Default, Serialize, Deserialize)]
struct Credentials {
    #[serde(default)]
    hosts: BTreeMap<String, HostCredentials>,
}

#[derive(Debug, Serialize, Deserialize)]
struct HostCredentials {
    token: String,
}

/// Where credentials are kept: `$XDG_CONFIG_HOME/weft/credentials.json`,
/// or `~/.config/weft/credentials.json`.
fn credentials_path() -> Result<PathBuf> {
    dirs::config_dir()
        .map(|d| d.join("weft/credentials.json"))
        .ok_or_else(|| {
            Failure(
                "cannot find a config dir: neither XDG_CONFIG_HOME nor HOME is set; pass --token instead"
                    .into(),
            )
        })
}

fn load(path: &std::path::Path) -> Result<Credentials> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Failure(format!(
                "{} is not a weft credentials file ({e}); fix it or delete it and `weft login` again",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Credentials::default()),
        Err(e) => Err(Failure(format!("cannot read {}: {e}", path.display()))),
    }
}

/// The token `weft login` saved for `address`, if any.
pub(crate) fn saved_token(address: &Address) -> Result<Option<String>> {
    let Ok(path) = credentials_path() else {
        return Ok(None);
    };
    Ok(load(&path)?
        .hosts
        .remove(&address.to_string())
        .map(|c| c.token))
}

/// Saves `token` for the host at `address`; returns the file it went to.
pub(crate) fn save(address: &Address, token: String) -> Result<PathBuf> {
    let path = credentials_path()?;
    let mut credentials = load(&path)?;
    credentials
        .hosts
        .insert(address.to_string(), HostCredentials { token });
    let json = serde_json::to_string_pretty(&credentials).map_err(|e| Failure(e.to_string()))?;
    write_private(&path, &json)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// Replaces `path` with `contents` at once (a reader sees the old file or
/// the new one, never half of one), readable only by this user.
fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use atomic_write_file::unix::OpenOptionsExt as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = atomic_write_file::AtomicWriteFile::options()
        .preserve_mode(false)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.commit()
}
