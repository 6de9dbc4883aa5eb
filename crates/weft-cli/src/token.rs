//! `weft token create|ls|revoke`: bearer tokens for the gateway and
//! `/api/v1`, managed over the host's HTTP API.
//!
//! The token a command sends is, first found: `--token` (or `WEFT_TOKEN`),
//! the one `weft login` saved for the host, or, for a host on this machine,
//! the admin token the host keeps in its data dir (`admin.token`).

use std::io::Write as _;

use clap::{Args, Subcommand};
use hyper::Method;
use serde::Deserialize;
use serde_json::json;

use crate::manage::{HostApi, Target};
use crate::{Failure, Result, table};

/// Options of `weft token`.
#[derive(Debug, Args)]
pub(crate) struct TokenCmd {
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token and print it (it is shown only this once).
    Create(CreateCmd),
    /// List tokens (never their secrets).
    Ls(LsCmd),
    /// Revoke a token at once.
    Revoke(RevokeCmd),
}

#[derive(Debug, Args)]
struct CreateCmd {
    #[command(flatten)]
    api: Target,
    /// What the token allows: `call:*`, `call:SERVICE`,
    /// `call:SERVICE.ENTRYPOINT` or `admin`. Repeat for several.
    #[arg(long = "scope", value_name = "SCOPE", required = true)]
    scopes: Vec<String>,
    /// How long the token works: `30d`, `12h`, `90m`, `45s`, `2w` [default: forever].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    expires: Option<u64>,
    /// A label to recognise the token by in `weft token ls`.
    #[arg(long, default_value = "")]
    name: String,
    /// Print the whole answer as JSON instead of only the token.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct LsCmd {
    #[command(flatten)]
    api: Target,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RevokeCmd {
    #[command(flatten)]
    api: Target,
    /// The token's id, as `weft token ls` shows it.
    id: String,
}

/// Parses `30d`, `12h`, `90m`, `45s`, `2w` or plain seconds into seconds.
pub(crate) fn parse_duration(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let bad = || format!("`{text}` is not a duration; write it like 30d, 12h, 90m, 45s or 2w");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let unit_secs = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    match n.checked_mul(unit_secs) {
        Some(0) => Err(format!(
            "`{text}` is no time at all; give a positive duration"
        )),
        Some(secs) => Ok(secs),
        None => Err(format!("`{text}` is too long")),
    }
}

pub(crate) async fn token(cmd: TokenCmd) -> Result<()> {
    match cmd.action {
        TokenAction::Create(c) => create(c).await,
        TokenAction::Ls(c) => ls(c).await,
        TokenAction::Revoke(c) => revoke(c).await,
    }
}

/// What `POST /api/v1/tokens` answers.
#[derive(Debug, Deserialize)]
struct Created {
    id: String,
    token: String,
    scopes: Vec<String>,
    expires_ms: Option<u64>,
}

/// A token as `GET /api/v1/tokens` lists it.
#[derive(Debug, Deserialize)]
struct Listed {
    id: String,
    name: String,
    scopes: Vec<String>,
    created_ms: u64,
    expires_ms: Option<u64>,
    expired: bool,
}

async fn create(cmd: CreateCmd) -> Result<()> {
    let mut body = json!({ "scopes": cmd.scopes, "name": cmd.name });
    if let Some(secs) = cmd.expires {
        body["expires_in_secs"] = json!(secs);
    }
    let answer = HostApi::new(&cmd.api)?
        .send_json(Method::POST, "/api/v1/tokens", Some(body))
        .await?;
    let mut out = std::io::stdout().lock();
    if cmd.json {
        writeln!(out, "{answer}")?;
        return Ok(());
    }
    let created: Created = serde_json::from_value(answer)
        .map_err(|e| Failure(format!("the host answered with an unexpected token: {e}")))?;
    writeln!(out, "{}", created.token)?;
    out.flush()?;
    let expires = created.expires_ms.map_or_else(
        || "never expires".to_owned(),
        |ms| format!("expires {}", table::time(ms)),
    );
    eprintln!(
        "token {} with scopes [{}] {expires}; this is the only time it is shown: keep it \
         (`weft login HOST --token ...` saves it for the CLI)",
        created.id,
        created.scopes.join(", ")
    );
    Ok(())
}

async fn ls(cmd: LsCmd) -> Result<()> {
    let answer = HostApi::new(&cmd.api)?
        .send_json(Method::GET, "/api/v1/tokens", None)
        .await?;
    let mut out = std::io::stdout().lock();
    if cmd.json {
        let text = serde_json::to_string_pretty(&answer).map_err(|e| Failure(e.to_string()))?;
        writeln!(out, "{text}")?;
        return Ok(());
    }
    let list: Vec<Listed> = serde_json::from_value(answer).map_err(|e| {
        Failure(format!(
            "the host answered with an unexpected token list: {e}"
        ))
    })?;
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.scopes.join(","),
                table::time(t.created_ms),
                match (t.expires_ms, t.expired) {
                    (_, true) => "expired".to_owned(),
                    (Some(ms), false) => table::time(ms),
                    (None, false) => "never".to_owned(),
                },
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table::render(&["ID", "NAME", "SCOPES", "CREATED", "EXPIRES"], &rows)
    )?;
    Ok(())
}

async fn revoke(cmd: RevokeCmd) -> Result<()> {
    let path = format!("/api/v1/tokens/{}", cmd.id);
    if cmd.id.is_empty() || !cmd.id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(Failure(format!(
            "`{}` is not a token id; `weft token ls` lists them",
            cmd.id
        )));
    }
    HostApi::new(&cmd.api)?
        .send_json(Method::DELETE, &path, None)
        .await?;
    println!("revoked {}", cmd.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30d"), Ok(30 * 86_400));
        assert_eq!(parse_duration("12h"), Ok(12 * 3600));
        assert_eq!(parse_duration("90m"), Ok(5400));
        assert_eq!(parse_duration("45"), Ok(45));
        assert_eq!(parse_duration("2w"), Ok(14 * 86_400));
        for bad in ["", "d", "3y", "-1d", "0s", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
