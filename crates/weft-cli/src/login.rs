//! `weft login HOST --token T`: saves a token for one host, so that later
//! commands against that host send it.
//!
//! Tokens live in `$XDG_CONFIG_HOME/weft/credentials.json` (or
//! `~/.config/weft/credentials.json`), readable only by the user:
//! `{"hosts": {"tcp://10.0.0.5:7400": {"token": "weft_..."}}}`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;

use clap::Args;
use hyper::Method;
use serde::{Deserialize, Serialize};
use weft::Address;

use crate::manage::{HostApi, Target};
use crate::{Failure, Result};

/// Options of `weft login`.
#[derive(Debug, Args)]
pub(crate) struct LoginCmd {
    /// The host the token is for, as other commands' --host name it.
    #[arg(value_name = "HOST")]
    host: String,
    /// The token, as `weft token create` printed it.
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: String,
    /// Save the token without checking it with the host first.
    #[arg(long)]
    no_verify: bool,
}

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

pub(crate) async fn login(cmd: LoginCmd) -> Result<()> {
    let address: Address = cmd
        .host
        .parse()
        .map_err(|e: weft::Error| Failure(format!("HOST: {}", e.message())))?;
    let token = cmd.token.trim().to_owned();
    if !token.starts_with("weft_") {
        return Err(Failure(
            "that is not a weft token (they start with `weft_`); `weft token create` makes one"
                .into(),
        ));
    }
    if !cmd.no_verify {
        let api = HostApi::new(&Target {
            host: cmd.host.clone(),
            token: Some(token.clone()),
            data_dir: None,
        })?;
        api.send_json(Method::GET, "/api/v1/services", None).await?;
    }
    let path = credentials_path()?;
    let mut credentials = load(&path)?;
    credentials
        .hosts
        .insert(address.to_string(), HostCredentials { token });
    let json = serde_json::to_string_pretty(&credentials).map_err(|e| Failure(e.to_string()))?;
    write_private(&path, &json)
        .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "saved the token for {address} in {}", path.display())?;
    Ok(())
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
