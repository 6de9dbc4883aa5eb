//! `weft`: run a host, call services, list what runs, read notifications.
//!
//! ```text
//! $ weft host                      # the host, on 127.0.0.1:7400
//! $ weft ls                        # services, versions, instances
//! $ weft call yatzee play          # call an entrypoint, print the result as JSON
//! $ weft notifications -f          # follow notifications
//! ```
//!
//! Every command but `weft host` talks to the host named by `--host` or
//! `WEFT_HOST` (default `127.0.0.1:7400`). Times print as RFC 3339 in local
//! time with its offset, or in UTC with `--utc`.

mod credentials;
mod demo;
mod deploy;
mod events;
mod init;
mod login;
mod manage;
mod shell;
mod table;
mod time;
mod token;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};
use weft::{Client, ClientOptions, Code, Error};
use weft_host::{ClusterConfig, Host, HostConfig};

/// weft runs microservices that call each other by name.
///
/// A host keeps the registry, the events and an HTTP gateway on one port;
/// this command starts it, deploys services to it, calls them and shows
/// what runs. Start with `weft host`, then `weft init` and `weft deploy`.
#[derive(Debug, Parser)]
#[command(name = "weft", version)]
struct Cli {
    /// Print times in UTC (`2026-12-01T01:16:46Z`) instead of local time
    /// with its offset (`2026-12-01T02:16:46+01:00`).
    #[arg(long, global = true)]
    utc: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the host: the registry, notifications and HTTP API, on one port.
    Host(HostCmd),
    /// Call an entrypoint and print its result as JSON.
    Call(CallCmd),
    /// List services with their versions, status and main version.
    Ls(manage::LsCmd),
    /// List the hosts of the cluster with their address, state and instances.
    Hosts(manage::HostsCmd),
    /// Create a service crate to start from (asks for its name).
    Init(init::InitCmd),
    /// Build a service's crate and run it on the host as a version.
    Deploy(deploy::DeployCmd),
    /// Make a version the main one: calls without a version go to it.
    Main(manage::MainCmd),
    /// Stop a version (the main one by default) and forget it.
    Kill(manage::KillCmd),
    /// Run this many instances of a deployed version.
    Scale(manage::ScaleCmd),
    /// Show (or follow) the output of a service's instances.
    Logs(manage::LogsCmd),
    /// Show notifications, oldest first.
    Notifications(NotificationsCmd),
    /// Start a host with the yatzee tutorial running and play a game.
    Demo(demo::DemoCmd),
    /// Create, list and revoke bearer tokens for the gateway and /api/v1.
    Token(token::TokenCmd),
    /// Save a token for a host; later commands against it send the token.
    Login(login::LoginCmd),
    /// Topics, handlers' backlogs, tails, dead letters and replays.
    Events(events::EventsCmd),
    /// An interactive session: call, publish and list with completion.
    Shell(shell::ShellCmd),
}

#[derive(Debug, Args)]
struct HostCmd {
    /// The address for services, tools and browsers.
    #[arg(long, default_value = weft::DEFAULT_HOST, value_name = "ADDR")]
    listen: String,
    /// Where the host keeps its state [default: $XDG_DATA_HOME/weft or ~/.local/share/weft].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// How long an instance stays registered without renewing its lease.
    #[arg(long, value_name = "SECS", default_value_t = weft_host::DEFAULT_LEASE_TTL.as_secs_f64())]
    lease_ttl: f64,
    /// When HTTP requests need a bearer token: `required`, `auto` (when
    /// listening beyond loopback) or `off`.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    auth: weft_host::AuthMode,
    /// Delete events older than this (`7d`, `12h`); kept forever unless set.
    #[arg(long, value_name = "DURATION", value_parser = token::parse_duration)]
    events_max_age: Option<u64>,
    /// Keep at most this much per topic (`10G`, `512M`), deleting the
    /// oldest events first; unbounded unless set.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    events_max_bytes: Option<u64>,
    /// The size at which an event log segment file is closed and another
    /// started (retention deletes whole segments) [default: 64M].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, hide = true)]
    events_segment_size: Option<u64>,
    /// A publish repeating an idempotency key seen within this long is
    /// dropped (answered with the first event's id).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = token::parse_duration)]
    events_dedup_window: u64,
    /// Join a cluster of hosts through these NATS servers (with JetStream):
    /// `nats://10.0.0.5:4222,nats://10.0.0.6:4222`. Without it the host
    /// keeps everything on this machine.
    #[arg(
        long,
        env = "WEFT_NATS",
        value_name = "URL[,URL...]",
        value_delimiter = ','
    )]
    nats: Vec<String>,
    /// The address other machines reach this machine's instances at (an IP
    /// or a DNS name), in a cluster.
    #[arg(long, value_name = "ADDR", requires = "nats")]
    advertise: Option<String>,
    /// This host's name in its cluster: letters, digits, `-`, `_`
    /// [default: the machine's host name].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// A NATS credentials file (`.creds`).
    #[arg(long, value_name = "FILE", requires = "nats")]
    nats_creds: Option<PathBuf>,
    /// CA certificates (PEM) to trust for TLS to NATS.
    #[arg(long, value_name = "FILE", requires = "nats")]
    nats_tls_ca: Option<PathBuf>,
    /// A client certificate (PEM) for TLS to NATS; with --nats-tls-key.
    #[arg(long, value_name = "FILE", requires_all = ["nats", "nats_tls_key"])]
    nats_tls_cert: Option<PathBuf>,
    /// The key (PEM) of --nats-tls-cert.
    #[arg(long, value_name = "FILE", requires = "nats_tls_cert")]
    nats_tls_key: Option<PathBuf>,
    /// Refuse NATS connections without TLS.
    #[arg(long, requires = "nats")]
    nats_tls_required: bool,
}

/// Parses a size like `10G`, `512M`, `64K`, `1T` (powers of 1024, with or
/// without `B` or `iB`) or plain bytes, as `parse-size` reads them.
fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let bytes = parse_size::Config::new()
        .with_binary()
        .parse_size(text.trim())
        .map_err(|e| {
            format!(
                "`{text}` is not a size ({e}); write it like 10G, 512M, 64K or a number of bytes"
            )
        })?;
    if bytes == 0 {
        return Err(format!("`{text}` is nothing; give a positive size"));
    }
    Ok(bytes)
}

#[derive(Debug, Args)]
struct HostArg {
    /// The weft host to talk to.
    #[arg(long, env = "WEFT_HOST", default_value = weft::DEFAULT_HOST, value_name = "ADDR")]
    host: String,
    /// The token for a host that requires one [default: the one `weft login` saved].
    #[arg(long, env = "WEFT_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, Args)]
struct CallCmd {
    #[command(flatten)]
    host: HostArg,
    /// The service.
    name: String,
    /// The entrypoint.
    entrypoint: String,
    /// The arguments, a JSON object of named parameters: inline
    /// (`'{"n": 3}'`), from a file (`@args.json`) or from stdin (`-`).
    #[arg(default_value = "{}", value_name = "JSON|@FILE|-")]
    args: String,
    /// One named argument, `k=v`; `v` is parsed as JSON, or else taken as a
    /// string. Repeat for several; overrides the same key in JSON.
    #[arg(long = "arg", value_name = "K=V")]
    arg: Vec<String>,
    /// The version to call: `1.2.0`, a requirement like `^1.2`, or `main`.
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
}

#[derive(Debug, Args)]
struct NotificationsCmd {
    #[command(flatten)]
    host: HostArg,
    /// Print one JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Show at most this many (the newest).
    #[arg(short = 'n', default_value_t = 50, value_name = "N")]
    limit: usize,
    /// Keep printing new notifications as they arrive.
    #[arg(short = 'f', long)]
    follow: bool,
}

/// A failure to report: the message says what to do.
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let mut msg = e.to_string();
        // Said once: most messages already name their parameter.
        if e.code() == Code::InvalidArgument
            && let Some(field) = e.field()
            && !e.message().contains(&format!("`{field}`"))
        {
            msg.push_str(&format!(" (parameter `{field}`)"));
        }
        Failure(msg)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure(format!("cannot write the output: {e}"))
    }
}

pub(crate) type Result<T, E = Failure> = std::result::Result<T, E>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    time::set_utc(cli.utc);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Host(cmd) => host(cmd).await,
            Command::Call(cmd) => call(cmd).await,
            Command::Ls(cmd) => manage::ls(cmd).await,
            Command::Init(cmd) => init::init(cmd).await,
            Command::Deploy(cmd) => deploy::deploy(cmd).await,
            Command::Main(cmd) => manage::main_version(cmd).await,
            Command::Kill(cmd) => manage::kill(cmd).await,
            Command::Scale(cmd) => manage::scale(cmd).await,
            Command::Logs(cmd) => manage::logs(cmd).await,
            Command::Notifications(cmd) => notifications(cmd).await,
            Command::Hosts(cmd) => manage::hosts(cmd).await,
            Command::Demo(cmd) => demo::demo(cmd).await,
            Command::Token(cmd) => token::token(cmd).await,
            Command::Login(cmd) => login::login(cmd).await,
            Command::Events(cmd) => events::events(cmd).await,
            Command::Shell(cmd) => shell::shell(cmd).await,
        }
    });
    // Background tasks (the registry watch) must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// `$XDG_DATA_HOME/weft`, or `~/.local/share/weft`.
fn default_data_dir() -> Result<PathBuf> {
    dirs::data_dir().map(|d| d.join("weft")).ok_or_else(|| {
        Failure(
            "cannot find a data dir: neither XDG_DATA_HOME nor HOME is set; pass --data-dir".into(),
        )
    })
}

async fn host(cmd: HostCmd) -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let listen = cmd
        .listen
        .parse()
        .map_err(|e: Error| Failure(format!("--listen: {}", e.message())))?;
    let data_dir = match cmd.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    if !(cmd.lease_ttl.is_finite() && cmd.lease_ttl >= 0.1) {
        return Err(Failure(format!(
            "--lease-ttl {} is too short: use at least 0.1 seconds",
            cmd.lease_ttl
        )));
    }
    let mut config = HostConfig::new(listen, data_dir.clone());
    config.lease_ttl = Duration::from_secs_f64(cmd.lease_ttl);
    config.events.max_age = cmd.events_max_age.map(Duration::from_secs);
    config.events.max_bytes = cmd.events_max_bytes;
    if let Some(size) = cmd.events_segment_size {
        config.events.segment_bytes = size;
    }
    config.events.dedup_window = Duration::from_secs(cmd.events_dedup_window);
    if let Some(name) = cmd.name {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(Failure(format!(
                "--name `{name}`: a host's name is letters, digits, `-` and `_`"
            )));
        }
        config = config.name(name);
    }
    if !cmd.nats.is_empty() {
        let mut cluster = ClusterConfig::new(cmd.nats);
        cluster.advertise = cmd.advertise;
        cluster.credentials = cmd.nats_creds;
        cluster.tls_ca = cmd.nats_tls_ca;
        cluster.tls_client = cmd.nats_tls_cert.zip(cmd.nats_tls_key);
        cluster.tls_required = cmd.nats_tls_required;
        config = config.cluster(cluster);
    }
    // The host's own errors: its message says what failed and what to do,
    // and the code (`unavailable`) adds nothing for the one running it.
    let host = Host::bind(config.auth(cmd.auth))
        .await
        .map_err(|e| Failure(e.message().to_owned()))?;
    {
        // Tests and scripts read the port from this line: keep its shape.
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "weft host listening on {} (data dir {})",
            host.local_address(),
            data_dir.display()
        )?;
        out.flush()?;
    }
    eprintln!("weft host: {}", host.auth_summary());
    host.run(terminate())
        .await
        .map_err(|e| Failure(e.message().to_owned()))?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn connect(host: &HostArg) -> Result<Client> {
    let address: weft::Address = host
        .host
        .parse()
        .map_err(|e: Error| Failure(format!("--host: {}", e.message())))?;
    let mut options = ClientOptions::default();
    options.token = match &host.token {
        Some(t) => Some(t.clone()),
        None => credentials::saved_token(&address)?,
    };
    // Nobody listening is said the way every command says it; what the
    // client reports past that is the host refusing it, or worse.
    manage::check_reachable(&address).await?;
    // The host answered: its code (`unavailable`) would mislead, the
    // message names the host and says what it refused.
    Client::connect_with(&host.host, options)
        .await
        .map_err(|e| Failure(e.message().to_owned()))
}

/// JSON for people: on one line (`[2, 3, 5, 6, 6]`) when it is short,
/// indented otherwise. Either way it parses as JSON.
fn render_json(value: &Value) -> String {
    fn inline(value: &Value, out: &mut String) {
        match value {
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    inline(item, out);
                }
                out.push(']');
            }
            Value::Object(map) => {
                out.push('{');
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push_str(": ");
                    inline(v, out);
                }
                out.push('}');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut line = String::new();
    inline(value, &mut line);
    if line.len() <= 80 {
        line
    } else {
        serde_json::to_string_pretty(value).unwrap_or(line)
    }
}

/// Reads the JSON of `weft call`'s arguments: the text itself, a file
/// named after `@`, or stdin for `-`. Returns the JSON and where it came
/// from, for messages.
fn read_call_args(arg: &str, stdin: impl std::io::Read) -> Result<(String, String)> {
    if arg == "-" {
        let mut text = String::new();
        let mut stdin = stdin;
        stdin.read_to_string(&mut text).map_err(|e| {
            Failure(format!(
                "cannot read the arguments from stdin: {e}; pipe a JSON object into `weft call NAME EP -`"
            ))
        })?;
        return Ok((text, "the arguments on stdin".to_owned()));
    }
    if let Some(path) = arg.strip_prefix('@') {
        if path.is_empty() {
            return Err(Failure(
                "`@` names no file; write `@args.json` to read the arguments from args.json".into(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_owned(),
                std::io::ErrorKind::InvalidData => "it is not UTF-8 text".to_owned(),
                _ => e.to_string(),
            };
            Failure(format!(
                "cannot read the arguments from {path}: {why}; check the path after `@`"
            ))
        })?;
        return Ok((text, format!("the arguments in {path}")));
    }
    Ok((arg.to_owned(), "the arguments".to_owned()))
}

/// Builds the argument object from the JSON of the arguments (`what` says
/// where it came from) and the `--arg`s.
fn call_args(json: &str, what: &str, pairs: &[String]) -> Result<Map<String, Value>> {
    let mut args = match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => map,
        Ok(other) => {
            let mut shown = other.to_string();
            if shown.len() > 60 {
                shown = format!("{}...", shown.chars().take(57).collect::<String>());
            }
            return Err(Failure(format!(
                "{what} must be a JSON object of named parameters, like {{\"n\": 3}}, not {shown}"
            )));
        }
        Err(_) if json.trim().is_empty() => {
            return Err(Failure(format!(
                "{what} are empty; give a JSON object like {{\"n\": 3}} (or {{}} for none)"
            )));
        }
        Err(e) => {
            return Err(Failure(format!(
                "{what} are not valid JSON ({e}); give an object like {{\"n\": 3}}, or use --arg n=3"
            )));
        }
    };
    for pair in pairs {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(Failure(format!(
                "--arg {pair:?} has no `=`; write it as --arg name=value"
            )));
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        args.insert(k.to_owned(), value);
    }
    Ok(args)
}

async fn call(cmd: CallCmd) -> Result<()> {
    let (json, what) = read_call_args(&cmd.args, std::io::stdin().lock())?;
    let args = call_args(&json, &what, &cmd.arg)?;
    let timeout = match cmd.timeout {
        Some(secs) => Some(
            Duration::try_from_secs_f64(secs)
                .map_err(|_| Failure(format!("--timeout {secs} is not a number of seconds")))?,
        ),
        None => None,
    };
    let client = connect(&cmd.host).await?;
    let mut request = client.request(&cmd.name, &cmd.entrypoint);
    if let Some(v) = &cmd.version {
        request = request.version(v);
    }
    if let Some(t) = timeout {
        request = request.timeout(t);
    }
    let result: Value = request.send(args).await?;
    let text = render_json(&result);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

async fn notifications(cmd: NotificationsCmd) -> Result<()> {
    let client = connect(&cmd.host).await?;
    let first = client.notifications(None, Some(cmd.limit)).await?;
    let mut last = first.last().map(|n| n.id);
    print_notifications(&first, cmd.json, true)?;
    if !cmd.follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let new = client.notifications(last.or(Some(0)), None).await?;
        if new.is_empty() {
            continue;
        }
        last = new.last().map(|n| n.id);
        print_notifications(&new, cmd.json, false)?;
    }
}

fn print_notifications(list: &[weft::Notification], json: bool, header: bool) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        for n in list {
            let line = serde_json::to_string(n).map_err(|e| Failure(e.to_string()))?;
            writeln!(out, "{line}")?;
        }
    } else if header || !list.is_empty() {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|n| {
                vec![
                    time::show(n.time_ms),
                    n.severity.to_string(),
                    n.service.clone(),
                    n.message.clone(),
                ]
            })
            .collect();
        let headers = ["TIME", "SEVERITY", "SERVICE", "MESSAGE"];
        let text = table::render(&headers, &rows);
        let text = if header {
            text.as_str()
        } else {
            // Followed batches continue the table printed before.
            text.split_once('\n').map_or("", |(_, rest)| rest)
        };
        write!(out, "{text}")?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("10GiB"), Ok(10 << 30));
        assert_eq!(parse_size("2tb"), Ok(2 << 40));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        for bad in ["", "G", "0", "10X", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn host_flags_set_the_event_log() {
        let cli = Cli::try_parse_from([
            "weft",
            "host",
            "--events-max-age",
            "7d",
            "--events-max-bytes",
            "1G",
        ])
        .unwrap();
        let Command::Host(cmd) = cli.command else {
            panic!("parsed as {:?}", cli.command)
        };
        assert_eq!(cmd.events_max_age, Some(7 * 86_400));
        assert_eq!(cmd.events_max_bytes, Some(1 << 30));
        assert_eq!(cmd.events_dedup_window, 600);
        let err = Cli::try_parse_from(["weft", "host", "--events-max-bytes", "lots"]).unwrap_err();
        assert!(err.to_string().contains("not a size"), "{err}");
    }

    #[test]
    fn args_merge_json_and_pairs() {
        let args = call_args(
            r#"{"a": 1, "b": "x"}"#,
            "the arguments",
            &["b=2".into(), "c=hello".into(), "d=[1]".into()],
        )
        .unwrap();
        assert_eq!(
            Value::Object(args),
            serde_json::json!({ "a": 1, "b": 2, "c": "hello", "d": [1] })
        );
        let err = call_args("[1]", "the arguments", &[]).unwrap_err().0;
        assert!(
            err.contains("must be a JSON object") && err.ends_with("not [1]"),
            "{err}"
        );
        let err = call_args("{", "the arguments", &[]).unwrap_err().0;
        assert!(err.starts_with("the arguments are not valid JSON"), "{err}");
        let err = call_args(" \n", "the arguments on stdin", &[])
            .unwrap_err()
            .0;
        assert!(err.starts_with("the arguments on stdin are empty"), "{err}");
        let err = call_args("{}", "the arguments", &["novalue".into()])
            .unwrap_err()
            .0;
        assert!(err.contains("name=value"), "{err}");
    }

    #[test]
    fn args_come_from_a_file_or_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("args.json");
        std::fs::write(&file, r#"{"n": 3}"#).unwrap();
        let at = format!("@{}", file.display());
        let (json, what) = read_call_args(&at, std::io::empty()).unwrap();
        assert_eq!(json, r#"{"n": 3}"#);
        assert_eq!(what, format!("the arguments in {}", file.display()));

        let (json, what) = read_call_args("-", &b"{\"n\": 4}"[..]).unwrap();
        assert_eq!(json, r#"{"n": 4}"#);
        assert_eq!(what, "the arguments on stdin");

        let (json, _) = read_call_args(r#"{"n": 5}"#, std::io::empty()).unwrap();
        assert_eq!(json, r#"{"n": 5}"#);

        let missing = format!("@{}", dir.path().join("nope.json").display());
        let err = read_call_args(&missing, std::io::empty()).unwrap_err().0;
        assert!(err.contains("nope.json: no such file"), "{err}");
        let err = read_call_args("@", std::io::empty()).unwrap_err().0;
        assert!(err.contains("names no file"), "{err}");
        std::fs::write(&file, [0xFF, 0xFE]).unwrap();
        let err = read_call_args(&at, std::io::empty()).unwrap_err().0;
        assert!(err.contains("not UTF-8"), "{err}");
    }

    #[test]
    fn utc_is_a_flag_of_every_command() {
        let cli = Cli::try_parse_from(["weft", "ls", "--utc"]).unwrap();
        assert!(cli.utc);
        let cli = Cli::try_parse_from(["weft", "--utc", "events", "ls"]).unwrap();
        assert!(cli.utc);
        let cli = Cli::try_parse_from(["weft", "hosts"]).unwrap();
        assert!(!cli.utc);
    }
}
