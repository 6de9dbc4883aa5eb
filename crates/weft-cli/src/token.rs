//! `weft token create|ls|revoke`: bearer tokens for the gateway and
//! `/api/v1`, managed over the host's HTTP API.
//!
//! The token a command sends is, first found: `--token` (or `WEFT_TOKEN`),
//! the one `weft login` saved for the host, or, for a host on this machine,
//! the admin token the host keeps in its data dir (`admin.token`).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use weft::Address;

use crate::{Failure, Result, default_data_dir, login, table};

/// How long one HTTP request to the host may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and as whom to talk to the host's HTTP API.
#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// The weft host to talk to.
    #[arg(long, env = "WEFT_HOST", default_value = weft::DEFAULT_HOST, value_name = "ADDR")]
    pub(crate) host: String,
    /// The bearer token to send [default: the one `weft login` saved for the
    /// host, else the host's admin.token when the host runs on this machine].
    #[arg(long, env = "WEFT_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub(crate) token: Option<String>,
    /// The data dir of a host on this machine, to read its admin.token
    /// [default: $XDG_DATA_HOME/weft or ~/.local/share/weft].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

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
    api: ApiArgs,
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
    api: ApiArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct RevokeCmd {
    #[command(flatten)]
    api: ApiArgs,
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
    let answer = Api::new(&cmd.api)?
        .send(Method::POST, "/api/v1/tokens", Some(body))
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
    let answer = Api::new(&cmd.api)?
        .send(Method::GET, "/api/v1/tokens", None)
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
    Api::new(&cmd.api)?
        .send(Method::DELETE, &path, None)
        .await?;
    println!("revoked {}", cmd.id);
    Ok(())
}

/// The host's HTTP API, with the token to send.
#[derive(Debug)]
pub(crate) struct Api {
    address: Address,
    token: Option<String>,
    /// Where the token came from, for error messages.
    source: String,
}

impl Api {
    /// Resolves the host and the token to send it.
    pub(crate) fn new(args: &ApiArgs) -> Result<Self> {
        let address: Address = args
            .host
            .parse()
            .map_err(|e: weft::Error| Failure(format!("--host: {}", e.message())))?;
        let (token, source) = if let Some(t) = args.token.clone().filter(|t| !t.is_empty()) {
            (Some(t), "--token".to_owned())
        } else if let Some(t) = login::saved_token(&address)? {
            (
                Some(t),
                format!("the token `weft login` saved for {address}"),
            )
        } else if let Some((t, file)) = local_admin_token(&address, args.data_dir.as_deref()) {
            (
                Some(t),
                format!("the host's admin token in {}", file.display()),
            )
        } else {
            (None, "no token".to_owned())
        };
        Ok(Api {
            address,
            token,
            source,
        })
    }

    /// Sends a request; answers with the JSON body of a success (`null`
    /// when empty), or a failure that says what the host said and what to do.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let (status, bytes) = tokio::time::timeout(
            HTTP_TIMEOUT,
            http(&self.address, method, path, self.token.as_deref(), body),
        )
        .await
        .map_err(|_| {
            Failure(format!(
                "the weft host at {} did not answer within {HTTP_TIMEOUT:?}",
                self.address
            ))
        })??;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes)
                .map_err(|e| Failure(format!("the host answered with invalid JSON: {e}")));
        }
        let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let code = problem["code"].as_str().unwrap_or("error");
        let detail = problem["detail"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let mut msg = format!("{code} ({status}): {detail}");
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            msg.push_str(&format!(
                "\nsent {}; pass --token, save one with `weft login {} --token ...`, \
                 or run this on the host's machine (with its --data-dir) to use its admin.token",
                self.source, self.address
            ));
        }
        Err(Failure(msg))
    }
}

/// The admin token of a host on this machine, from its data dir.
fn local_admin_token(
    address: &Address,
    data_dir: Option<&std::path::Path>,
) -> Option<(String, PathBuf)> {
    let local = match address {
        Address::Unix(_) => true,
        Address::Tcp(hp) => {
            let host = hp.rsplit_once(':').map_or(hp.as_str(), |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
        }
    };
    if !local {
        return None;
    }
    let dir = match data_dir {
        Some(d) => d.to_owned(),
        None => default_data_dir().ok()?,
    };
    let file = dir.join(weft_host::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&file).ok()?.trim().to_owned();
    (!token.is_empty()).then_some((token, file))
}

/// One HTTP/1.1 request to the host.
async fn http(
    address: &Address,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Bytes)> {
    let unreachable = |e: std::io::Error| {
        Failure(format!(
            "cannot reach the weft host at {address}: {e}; start it with `weft host` or pass --host"
        ))
    };
    match address {
        Address::Tcp(hp) => {
            let stream = tokio::net::TcpStream::connect(hp.as_str())
                .await
                .map_err(unreachable)?;
            exchange(stream, hp, method, path, token, body).await
        }
        Address::Unix(p) => {
            let stream = tokio::net::UnixStream::connect(p)
                .await
                .map_err(unreachable)?;
            exchange(stream, "localhost", method, path, token, body).await
        }
    }
}

async fn exchange<S>(
    stream: S,
    authority: &str,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(StatusCode, Bytes)>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let failed = |e: hyper::Error| Failure(format!("talking HTTP to the weft host failed: {e}"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(failed)?;
    let driver = tokio::spawn(conn);
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, authority);
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Bytes::from(v.to_string())
        }
        None => Bytes::new(),
    };
    let request = request
        .body(Full::new(body))
        .map_err(|e| Failure(format!("cannot build the request: {e}")))?;
    let response = sender.send_request(request).await.map_err(failed)?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(failed)?
        .to_bytes();
    driver.abort();
    Ok((status, bytes))
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
