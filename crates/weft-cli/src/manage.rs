//! `weft ls`, `main`, `kill`, `scale` and `logs`, over the host's HTTP API
//! (`/api/v1`), and the client that `weft deploy` uses too.
//!
//! The token a command sends is, first found: `--token` (or `WEFT_TOKEN`),
//! the one `weft login` saved for the host, or, for a host on this machine,
//! the admin token in its data dir.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use weft_core::Address;
use weft_host_api::deployments::{
    DeployAnswer, Deployments, HostOutcome, Killed, LogLine, MainRequest, MainSet, ScaleRequest,
    Status, VersionStatus,
};
use weft_host_api::hosts::{HostInfo, HostState};

use crate::{Failure, Result, credentials, default_data_dir, table, time};

/// How long a request that is not a deploy may take.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(120);

/// Which host to talk to, and as whom.
#[derive(Debug, Args)]
pub(crate) struct Target {
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

/// The host's HTTP API.
#[derive(Debug)]
pub(crate) struct HostApi {
    address: Address,
    token: Option<String>,
    /// Where the token came from, for messages.
    source: String,
}

/// Nobody answers at the host's address: says so once, and what to do.
fn unreachable(address: &Address, e: &std::io::Error) -> Failure {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        std::io::ErrorKind::NotFound if matches!(address, Address::Unix(_)) => {
            "no socket at that path".to_owned()
        }
        _ => e.to_string(),
    };
    Failure(format!(
        "cannot reach the weft host at {address}: {why}; start it with `weft host`, or name another with --host or WEFT_HOST"
    ))
}

/// Fails, saying what to do, when nothing listens at `address`.
pub(crate) async fn check_reachable(address: &Address) -> Result<()> {
    match address {
        Address::Tcp(hp) => drop(
            tokio::net::TcpStream::connect(hp.as_str())
                .await
                .map_err(|e| unreachable(address, &e))?,
        ),
        Address::Unix(p) => drop(
            tokio::net::UnixStream::connect(p)
                .await
                .map_err(|e| unreachable(address, &e))?,
        ),
    }
    Ok(())
}

impl HostApi {
    pub(crate) fn new(target: &Target) -> Result<Self> {
        let address: Address = target
            .host
            .parse()
            .map_err(|e: weft::Error| Failure(format!("--host: {}", e.message())))?;
        let (token, source) = if let Some(t) = target.token.clone().filter(|t| !t.is_empty()) {
            (Some(t), "--token".to_owned())
        } else if let Some(t) = credentials::saved_token(&address)? {
            (
                Some(t),
                format!("the token `weft login` saved for {address}"),
            )
        } else if let Some((t, file)) = local_admin_token(&address, target.data_dir.as_ref()) {
            (
                Some(t),
                format!("the host's admin token in {}", file.display()),
            )
        } else {
            (None, "no token".to_owned())
        };
        Ok(HostApi {
            address,
            token,
            source,
        })
    }

    /// The base URL of the host's HTTP API, for people.
    pub(crate) fn base_url(&self) -> String {
        match &self.address {
            Address::Tcp(hp) => format!("http://{hp}"),
            Address::Unix(_) => self.address.to_string(),
        }
    }

    /// Sends a request and returns the response with its body unread.
    pub(crate) async fn open(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<Response<Incoming>> {
        match &self.address {
            Address::Tcp(hp) => {
                let stream = tokio::net::TcpStream::connect(hp.as_str())
                    .await
                    .map_err(|e| unreachable(&self.address, &e))?;
                self.exchange(stream, hp, method, path, body).await
            }
            Address::Unix(p) => {
                let stream = tokio::net::UnixStream::connect(p)
                    .await
                    .map_err(|e| unreachable(&self.address, &e))?;
                self.exchange(stream, "localhost", method, path, body).await
            }
        }
    }

    async fn exchange<S>(
        &self,
        stream: S,
        authority: &str,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
    ) -> Result<Response<Incoming>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let address = &self.address;
        let failed = |e: hyper::Error| {
            Failure(format!(
                "the weft host at {address} broke off the HTTP exchange ({e}); is that address a weft host's? `weft hosts` lists them"
            ))
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(failed)?;
        // Runs until the response body has been read.
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, authority);
        if let Some(t) = &self.token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let bytes = match body {
            Some((content_type, bytes)) => {
                request = request.header(header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(bytes))
            .map_err(|e| Failure(format!("cannot build the request: {e}")))?;
        sender.send_request(request).await.map_err(failed)
    }

    /// Sends a request and reads the whole answer within `timeout`: the JSON
    /// of a success (`null` when empty), or a failure saying what the host
    /// said and what to do.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Bytes)>,
        timeout: Duration,
    ) -> Result<Value> {
        let exchange = async {
            let response = self.open(method, path, body).await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| self.broke_off(&e))?
                .to_bytes();
            Ok::<_, Failure>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| {
                Failure(format!(
                    "the weft host at {} did not answer within {}s",
                    self.address,
                    timeout.as_secs()
                ))
            })??;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_slice(&bytes).map_err(|e| {
                Failure(format!(
                    "the weft host at {} answered with invalid JSON ({e}); are `weft` and the host the same version?",
                    self.address
                ))
            });
        }
        Err(self.problem(status, &bytes))
    }

    /// Sends an optional JSON body and reads the JSON answer within
    /// [`TIMEOUT`]; see [`HostApi::send`].
    pub(crate) async fn send_json(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let body = body.map(|v| ("application/json", Bytes::from(v.to_string())));
        self.send(method, path, body, TIMEOUT).await
    }

    /// The host stopped sending its answer half-way.
    pub(crate) fn broke_off(&self, e: &hyper::Error) -> Failure {
        Failure(format!(
            "the weft host at {} broke off its answer ({e}); did it stop? try again once it is back",
            self.address
        ))
    }

    /// The host did not answer within `TIMEOUT`.
    pub(crate) fn too_slow(&self) -> Failure {
        Failure(format!(
            "the weft host at {} did not answer within {}s; is it overloaded? try again",
            self.address,
            TIMEOUT.as_secs()
        ))
    }

    /// A failure from an `application/problem+json` answer.
    pub(crate) fn problem(&self, status: StatusCode, bytes: &[u8]) -> Failure {
        let problem: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let detail = problem["detail"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
        if status == StatusCode::NOT_FOUND
            && problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("has no route"))
        {
            return Failure(format!(
                "the weft host at {} does not know this command's API ({detail}); upgrade the host",
                self.address
            ));
        }
        let mut msg = detail;
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            let address = &self.address;
            let what_to_do = match self.source.as_str() {
                "no token" => format!(
                    "no token was sent: pass --token, save one with `weft login {address} --token ...`, \
                     or run this on the host's machine (with its --data-dir) to use its admin.token"
                ),
                "--token" => "the token sent was the one of --token (or WEFT_TOKEN): check it, or pass another"
                    .to_owned(),
                source => format!(
                    "the token sent was {source}: pass another with --token, or save one with `weft login {address} --token ...`"
                ),
            };
            msg.push_str(&format!("\n{what_to_do}"));
        }
        Failure(msg)
    }

    /// Sends `body` as JSON, when there is one, and reads the answer as the
    /// host API's type `T` within [`TIMEOUT`].
    pub(crate) async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(|v| ("application/json", Bytes::from(v))))
            .transpose()
            .map_err(|e| Failure(format!("cannot encode the request: {e}")))?;
        let answer = self.send(method.clone(), path, body, TIMEOUT).await?;
        serde_json::from_value(answer).map_err(|e| {
            Failure(format!(
                "the weft host at {} answered {method} {path} with something this `weft` does not read ({e}); \
                 are `weft` and the host the same version?",
                self.address
            ))
        })
    }

    /// Every version the host knows.
    pub(crate) async fn deployments(&self) -> Result<Deployments> {
        self.request::<(), _>(Method::GET, "/api/v1/deployments", None)
            .await
    }
}

/// The admin token of a host on this machine, from its data dir.
fn local_admin_token(address: &Address, data_dir: Option<&PathBuf>) -> Option<(String, PathBuf)> {
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
        Some(d) => d.clone(),
        None => default_data_dir().ok()?,
    };
    let file = dir.join(weft_host::ADMIN_TOKEN_FILE);
    let token = std::fs::read_to_string(&file).ok()?.trim().to_owned();
    (!token.is_empty()).then_some((token, file))
}

fn running_column(v: &VersionStatus) -> String {
    let since = v.since_ms.map(time::show).unwrap_or_default();
    let count = if v.registered > 1 {
        format!(", {} instances", v.registered)
    } else {
        String::new()
    };
    match v.status {
        Status::Running => format!("Running (since {since}{count})"),
        Status::External => format!("Running (since {since}{count}; started by hand)"),
        Status::Starting => match &v.reason {
            Some(why) => format!("Starting ({}/{} registered; {why})", v.registered, v.wanted),
            None => format!("Starting ({}/{} registered)", v.registered, v.wanted),
        },
        Status::Crashing => format!(
            "Crashing: {}",
            v.reason.as_deref().unwrap_or("instances keep exiting")
        ),
        Status::Stopped => "Stopped (scaled to 0; `weft scale` starts it)".to_owned(),
    }
}

/// A status as the STATUS column shows it: as the host's API writes it.
fn status_name(status: Status) -> String {
    serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The `weft ls` table: a deployed version under the host it is deployed
/// on, one started by hand under the hosts its instances registered with.
pub(crate) fn render_table(list: &[VersionStatus]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            vec![
                if v.main { "*" } else { "" }.to_owned(),
                v.service.clone(),
                v.version.to_string(),
                match &v.host {
                    Some(host) => host.clone(),
                    None => v.hosts.join(","),
                },
                status_name(v.status),
                running_column(v),
            ]
        })
        .collect();
    table::render(
        &["MAIN", "NAME", "VERSION", "HOST", "STATUS", "RUNNING"],
        &rows,
    )
}

/// What each host did with a deploy, a scale or a kill: `started on a`,
/// `failed on b: ...`.
pub(crate) fn print_outcomes(
    out: &mut impl std::io::Write,
    outcomes: &[HostOutcome],
    done: &str,
) -> Result<()> {
    for o in outcomes {
        match &o.error {
            None => writeln!(out, "{done} on {}", o.host)?,
            Some(e) => writeln!(out, "failed on {}: {e}", o.host)?,
        }
    }
    Ok(())
}

/// Options of `weft hosts`.
#[derive(Debug, Args)]
pub(crate) struct HostsCmd {
    #[command(flatten)]
    target: Target,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn hosts(cmd: HostsCmd) -> Result<()> {
    let list: Vec<HostInfo> = HostApi::new(&cmd.target)?
        .request::<(), _>(Method::GET, "/api/v1/hosts", None)
        .await?;
    let mut out = std::io::stdout().lock();
    if cmd.json {
        return table::print_json(&mut out, &list);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|h| {
            vec![
                h.name.clone(),
                h.address.clone(),
                match h.state {
                    HostState::Up => "up".to_owned(),
                    HostState::Down => "down".to_owned(),
                    HostState::Unreachable => match h.unreachable.as_slice() {
                        [] => "unreachable".to_owned(),
                        [u] => {
                            format!("unreachable: {} at {} ({})", u.instance, u.address, u.error)
                        }
                        [u, more @ ..] => format!(
                            "unreachable: {} at {} ({}) and {} more",
                            u.instance,
                            u.address,
                            u.error,
                            more.len()
                        ),
                    },
                },
                h.instances.to_string(),
                time::show(h.heartbeat_ms),
            ]
        })
        .collect();
    write!(
        out,
        "{}",
        table::render(
            &["NAME", "ADDRESS", "STATE", "INSTANCES", "HEARTBEAT"],
            &rows
        )
    )?;
    Ok(())
}

/// Options of `weft ls`.
#[derive(Debug, Args)]
pub(crate) struct LsCmd {
    #[command(flatten)]
    target: Target,
    /// Print JSON (with every instance, its pid and restarts) instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn ls(cmd: LsCmd) -> Result<()> {
    let api = HostApi::new(&cmd.target)?;
    let mut out = std::io::stdout().lock();
    if cmd.json {
        let answer = api
            .send(Method::GET, "/api/v1/deployments", None, TIMEOUT)
            .await?;
        return table::print_json(&mut out, &answer);
    }
    let list = api.deployments().await?;
    write!(out, "{}", render_table(&list))?;
    Ok(())
}

/// Options of `weft main`.
#[derive(Debug, Args)]
pub(crate) struct MainCmd {
    #[command(flatten)]
    target: Target,
    /// The service.
    name: String,
    /// The version that calls without a version go to from now on.
    version: String,
}

pub(crate) async fn main_version(cmd: MainCmd) -> Result<()> {
    let api = HostApi::new(&cmd.target)?;
    let _: MainSet = api
        .request(
            Method::PUT,
            &format!("/api/v1/services/{}/main", cmd.name),
            Some(&MainRequest {
                version: cmd.version.clone(),
            }),
        )
        .await?;
    let list = api.deployments().await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{} {} is main", cmd.name, cmd.version)?;
    write!(out, "{}", render_table(&list))?;
    Ok(())
}

/// Options of `weft kill`.
#[derive(Debug, Args)]
pub(crate) struct KillCmd {
    #[command(flatten)]
    target: Target,
    /// The service.
    name: String,
    /// The version to stop [default: the main version]; in a cluster, it
    /// stops on every host that runs it.
    version: Option<String>,
    /// Stop every version of the service (that this host runs).
    #[arg(long, conflicts_with = "version")]
    all: bool,
}

pub(crate) async fn kill(cmd: KillCmd) -> Result<()> {
    let api = HostApi::new(&cmd.target)?;
    let path = match (&cmd.version, cmd.all) {
        (Some(v), _) => format!("/api/v1/services/{}/versions/{v}", cmd.name),
        (None, true) => format!("/api/v1/services/{}?all=true", cmd.name),
        (None, false) => format!("/api/v1/services/{}", cmd.name),
    };
    let answer: Killed = api.request::<(), _>(Method::DELETE, &path, None).await?;
    let killed: Vec<String> = answer.killed.iter().map(ToString::to_string).collect();
    let mut out = std::io::stdout().lock();
    print_outcomes(&mut out, &answer.on, "stopped")?;
    let failed: Vec<String> = answer
        .on
        .iter()
        .filter_map(|o| o.error.as_ref().map(|e| format!("{}: {e}", o.host)))
        .collect();
    if !failed.is_empty() {
        return Err(Failure(format!(
            "{} {} was not stopped on every host ({}); run `weft kill` again once they are up",
            cmd.name,
            killed.join(", "),
            failed.join("; ")
        )));
    }
    writeln!(out, "stopped {} {}", cmd.name, killed.join(", "))?;
    Ok(())
}

/// Options of `weft scale`: in a cluster, a version that several hosts run
/// runs N instances on each of them.
#[derive(Debug, Args)]
pub(crate) struct ScaleCmd {
    #[command(flatten)]
    target: Target,
    /// The service.
    name: String,
    /// The deployed version.
    version: String,
    /// How many instances to run (0 stops them but keeps the deployment);
    /// in a cluster, on each host that runs the version.
    instances: u32,
}

pub(crate) async fn scale(cmd: ScaleCmd) -> Result<()> {
    let api = HostApi::new(&cmd.target)?;
    let answer: DeployAnswer = api
        .request(
            Method::POST,
            &format!(
                "/api/v1/services/{}/versions/{}/scale",
                cmd.name, cmd.version
            ),
            Some(&ScaleRequest {
                instances: cmd.instances,
            }),
        )
        .await?;
    let list = api.deployments().await?;
    let mut out = std::io::stdout().lock();
    if let DeployAnswer::Hosts(placed) = &answer {
        print_outcomes(&mut out, &placed.on, "scaled")?;
    }
    write!(out, "{}", render_table(&list))?;
    if let Some(failed) = answer.failures() {
        return Err(Failure(format!(
            "{} {} was not scaled on every host ({failed}); run `weft scale` again once they are up",
            cmd.name, cmd.version
        )));
    }
    Ok(())
}

/// Options of `weft logs`.
#[derive(Debug, Args)]
pub(crate) struct LogsCmd {
    #[command(flatten)]
    target: Target,
    /// The service.
    name: String,
    /// Only this version [default: every deployed version].
    version: Option<String>,
    /// How many of the newest lines to show.
    #[arg(short = 'n', default_value_t = 100, value_name = "N")]
    lines: usize,
    /// Keep printing new lines as the instances write them.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Print each line as one JSON object (`time_ms`, `instance`, `stream`,
    /// `line`) per line.
    #[arg(long)]
    json: bool,
}

fn print_line(out: &mut impl std::io::Write, raw: &[u8], as_json: bool) -> Result<()> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    if as_json {
        writeln!(out, "{}", String::from_utf8_lossy(raw).trim_end())?;
        return Ok(());
    }
    match serde_json::from_slice::<LogLine>(raw) {
        Ok(l) => {
            let marker = match l.stream.as_str() {
                "stderr" => " !",
                "weft" => " #",
                _ => "",
            };
            writeln!(
                out,
                "{} {}{marker} {}",
                time::show(l.time_ms),
                l.instance,
                l.line
            )?;
        }
        Err(_) => writeln!(out, "{}", String::from_utf8_lossy(raw))?,
    }
    Ok(())
}

pub(crate) async fn logs(cmd: LogsCmd) -> Result<()> {
    let api = HostApi::new(&cmd.target)?;
    let mut path = format!("/api/v1/services/{}/logs?n={}", cmd.name, cmd.lines);
    if let Some(v) = &cmd.version {
        path.push_str(&format!("&version={v}"));
    }
    if cmd.follow {
        path.push_str("&follow=true");
    }
    let response = tokio::time::timeout(TIMEOUT, api.open(Method::GET, &path, None))
        .await
        .map_err(|_| api.too_slow())??;
    let status = response.status();
    let mut body = response.into_body();
    if !status.is_success() {
        let bytes = body
            .collect()
            .await
            .map_err(|e| api.broke_off(&e))?
            .to_bytes();
        return Err(api.problem(status, &bytes));
    }
    let mut pending: Vec<u8> = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure(format!("the host's log stream broke off: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        pending.extend_from_slice(&data);
        let mut out = std::io::stdout().lock();
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            print_line(&mut out, &line, cmd.json)?;
        }
        out.flush()?;
    }
    if !pending.is_empty() {
        print_line(&mut std::io::stdout().lock(), &pending, cmd.json)?;
    }
    if cmd.follow {
        return Err(Failure(
            "the host closed the log stream (did it stop?); run `weft logs -f` again once it is back".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_print_as_text_or_as_their_json() {
        crate::time::set_utc(true);
        let raw = br#"{"seq":1,"time_ms":1795348578999,"instance":"probe-1","stream":"stderr","line":"boom"}"#;
        let mut out = Vec::new();
        print_line(&mut out, raw, false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-11-22T11:56:18Z probe-1 ! boom\n"
        );
        let mut out = Vec::new();
        print_line(&mut out, &[raw.as_slice(), b"\n"].concat(), true).unwrap();
        let line = String::from_utf8(out).unwrap();
        let back: LogLine = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (back.time_ms, back.line.as_str()),
            (1_795_348_578_999, "boom")
        );
        assert_eq!(line.matches('\n').count(), 1);
    }
}
