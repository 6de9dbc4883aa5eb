//! `weft token create|ls|revoke`: bearer tokens for the gateway and
//! `/api/v1`, managed over the host's HTTP API.
//!
//! The token a command sends is, first found: `--token` (or `WEFT_TOKEN`),
//! the one `weft login` saved for the host, or, for a host on this machine,
//! the admin token the host keeps in its data dir (`admin.token`).

use std::io::Write as _;

use clap::{Args, Subcommand};
use hyper::Method;
use weft_host_api::tokens::{CreateToken, CreatedToken, TokenInfo};

use crate::manage::{HostApi, Target};
use crate::{Failure, Result, table, time};

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

/// Parses a duration like `30d`, `12h`, `90m`, `45s`, `2w`, `1h30m` (as
/// `humantime` reads them) or plain seconds, into whole seconds.
pub(crate) fn parse_duration(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let secs = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>()
            .map_err(|_| format!("`{text}` is too long"))?
    } else {
        humantime::parse_duration(text)
            .map_err(|e| {
                format!("`{text}` is not a duration ({e}); write it like 30d, 12h, 90m, 45s or 2w")
            })?
            .as_secs()
    };
    if secs == 0 {
        return Err(format!(
            "`{text}` is no time at all; give a positive duration"
        ));
    }
    Ok(secs)
}

pub(crate) async fn token(cmd: TokenCmd) -> Result<()> {
    match cmd.action {
        TokenAction::Create(c) => create(c).await,
        TokenAction::Ls(c) => ls(c).await,
        TokenAction::Revoke(c) => revoke(c).await,
    }
}

async fn create(cmd: CreateCmd) -> Result<()> {
    let request = CreateToken {
        scopes: cmd.scopes,
        name: cmd.name,
        expires_in_secs: cmd.expires,
    };
    let created: CreatedToken = HostApi::new(&cmd.api)?
        .request(Method::POST, "/api/v1/tokens", Some(&request))
        .await?;
    let mut out = std::io::stdout().lock();
    if cmd.json {
        let text = serde_json::to_string(&created).map_err(|e| Failure(e.to_string()))?;
        writeln!(out, "{text}")?;
        return Ok(());
    }
    writeln!(out, "{}", created.token)?;
    out.flush()?;
    let expires = created.expires_ms.map_or_else(
        || "never expires".to_owned(),
        |ms| format!("expires {}", time::show(ms)),
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
    let list: Vec<TokenInfo> = HostApi::new(&cmd.api)?
        .request::<(), _>(Method::GET, "/api/v1/tokens", None)
        .await?;
    let mut out = std::io::stdout().lock();
    if cmd.json {
        return table::print_json(&mut out, &list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| {
            vec![
                t.id.clone(),
                t.name.clone(),
                t.scopes.join(","),
                time::show(t.created_ms),
                match (t.expires_ms, t.expired) {
                    (_, true) => "expired".to_owned(),
                    (Some(ms), false) => time::show(ms),
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
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        for bad in ["", "d", "3x", "-1d", "0s", "99999999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
