//! `weft shell`: an interactive session against a host, with completion
//! of commands, services, entrypoints, parameters and topics from the
//! host's registry, and a history kept across sessions.
//!
//! The line editor is `rustyline`; it blocks, so the session runs on a
//! blocking thread and hands each command (and each completion that needs
//! the host) to the runtime.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Editor, Helper};
use serde_json::{Map, Value};
use tokio::runtime::Handle;
use weft::{Client, ServiceSpec};

use crate::{Failure, HostArg, Result, connect, render_json, table};

/// The commands, for `help` and `weft shell --help`.
macro_rules! commands {
    () => {
        "Commands:
  call SERVICE ENTRYPOINT [NAME=VALUE ...]   call an entrypoint; a VALUE is read as JSON,
                                             else taken as a string: n=3 name=ada tags=[1,2]
  call SERVICE ENTRYPOINT {JSON}             the arguments as one JSON object
  call ... --version V --timeout SECS        a version (1.2.0, ^1.2, main) and a deadline
  publish TOPIC JSON                         publish an event; prints its id
  ls [SERVICE]                               services, or one service's entrypoints
  help                                       this list
  exit                                       leave (or Ctrl-D)

Tab completes commands, services, entrypoints, parameter names and topics;
the up and down arrows go through the history."
    };
}

/// Options of `weft shell`.
#[derive(Debug, Args)]
#[command(
    after_long_help = concat!(
        commands!(),
        "\n\nExample:\n",
        "  $ weft shell --host 10.0.0.5:7400\n",
        "  weft> call die_roller roll_die\n",
        "  4\n",
        "  weft> publish orders.created {\"order\": 7}\n",
        "  published event 1 to orders.created",
    )
)]
pub(crate) struct ShellCmd {
    #[command(flatten)]
    host: HostArg,
    /// The file that keeps the history of commands [default:
    /// $XDG_DATA_HOME/weft/shell_history or ~/.local/share/weft/shell_history].
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
}

/// How long completion waits for the host's list of services: a Tab that
/// hangs is worse than one that completes nothing.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) async fn shell(cmd: ShellCmd) -> Result<()> {
    let history = match cmd.history {
        Some(file) => Some(file),
        None => dirs::data_dir().map(|d| d.join("weft/shell_history")),
    };
    let client = connect(&cmd.host).await?;
    // Ctrl-C at the prompt is a key the line editor reads; during a command
    // the terminal sends SIGINT, which stops that command, not the shell.
    // Listening from the start leaves no moment in which it ends the shell.
    let interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| Failure(format!("cannot listen for Ctrl-C: {e}")))?;
    let handle = Handle::current();
    let address = cmd.host.host.clone();
    tokio::task::spawn_blocking(move || session(client, handle, interrupts, history, &address))
        .await
        .map_err(|e| Failure(format!("the shell stopped unexpectedly: {e}")))?
}

/// Reads and runs commands until `exit` or Ctrl-D.
fn session(
    client: Client,
    handle: Handle,
    mut interrupts: tokio::signal::unix::Signal,
    mut history: Option<PathBuf>,
    address: &str,
) -> Result<()> {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .auto_add_history(false)
        .history_ignore_dups(true)
        .and_then(|c| c.max_history_size(10_000))
        .map_err(|e| Failure(format!("cannot set up the line editor: {e}")))?
        .build();
    let mut editor: Editor<Registry, DefaultHistory> = Editor::with_config(config)
        .map_err(|e| Failure(format!("cannot set up the terminal: {e}")))?;
    editor.set_helper(Some(Registry {
        client: client.clone(),
        handle: handle.clone(),
    }));
    match &history {
        Some(file) => match editor.load_history(file) {
            Ok(()) => {}
            Err(ReadlineError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => eprintln!(
                "warning: cannot read the history in {} ({e}); this session's commands will replace it",
                file.display()
            ),
        },
        None => eprintln!(
            "warning: neither XDG_DATA_HOME nor HOME is set, so the history is not kept; pass --history FILE to keep it"
        ),
    }
    println!("weft shell on {address}: `help` lists the commands, Tab completes, Ctrl-D leaves.");
    loop {
        let line = match editor.readline("weft> ") {
            Ok(line) => line,
            // Ctrl-C drops the line being written, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => return Ok(()),
            Err(e) => return Err(Failure(format!("cannot read the terminal: {e}"))),
        };
        if line.trim().is_empty() {
            continue;
        }
        let command = parse(&line);
        if command == Ok(Command::Exit) {
            return Ok(());
        }
        // A line that failed is kept too: it is the one to fix and run again.
        let _ = editor.add_history_entry(line.as_str());
        // After a failure the history stays in memory only: one warning,
        // not one per line.
        if let Some(file) = &history
            && !save_history(&mut editor, file)
        {
            history = None;
        }
        let command = match command {
            Ok(command) => command,
            Err(msg) => {
                eprintln!("error: {msg}");
                continue;
            }
        };
        let outcome = handle.block_on(async {
            tokio::select! {
                outcome = run(&client, command) => outcome,
                _ = interrupts.recv() => Err(Failure(
                    "interrupted; the call is cancelled".into(),
                )),
            }
        });
        match outcome {
            Ok(text) => println!("{text}"),
            Err(Failure(msg)) => eprintln!("error: {msg}"),
        }
    }
}

/// Appends the new lines to `file`; says why and returns false when it
/// cannot.
fn save_history(editor: &mut Editor<Registry, DefaultHistory>, file: &std::path::Path) -> bool {
    if let Some(dir) = file.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    match editor.append_history(file) {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "warning: cannot save the history to {} ({e}); this session's is kept until it ends; \
                 pass --history FILE to keep it elsewhere",
                file.display()
            );
            false
        }
    }
}

/// A command line, parsed.
#[derive(Debug, PartialEq)]
enum Command {
    Call {
        service: String,
        entrypoint: String,
        rest: CallRest,
    },
    Publish {
        topic: String,
        payload: Value,
    },
    Ls(Option<String>),
    Help,
    Exit,
}

/// The words of `line` with where each starts. Whitespace separates words
/// except inside a JSON string or between brackets, so that
/// `name="Ada Lovelace"` and `{"a": 1}` are one word each.
fn words(line: &str) -> std::result::Result<Vec<(usize, &str)>, String> {
    let mut out = Vec::new();
    let mut start = None;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, c) in line.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        if c.is_whitespace() && depth == 0 {
            if let Some(s) = start.take() {
                out.push((s, &line[s..i]));
            }
            continue;
        }
        start.get_or_insert(i);
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if in_string {
        return Err("a string is not closed: add the closing `\"`".into());
    }
    if depth > 0 {
        return Err("a `{` or `[` is not closed".into());
    }
    if let Some(s) = start {
        out.push((s, &line[s..]));
    }
    Ok(out)
}

fn parse(line: &str) -> std::result::Result<Command, String> {
    let words = words(line)?;
    let Some(&(_, name)) = words.first() else {
        return Err("type a command; `help` lists them".into());
    };
    let rest: Vec<&str> = words[1..].iter().map(|&(_, w)| w).collect();
    match name {
        "call" => {
            let [service, entrypoint, args @ ..] = rest.as_slice() else {
                return Err(
                    "call needs a service and an entrypoint: call SERVICE ENTRYPOINT [NAME=VALUE ...]"
                        .into(),
                );
            };
            Ok(Command::Call {
                service: (*service).to_owned(),
                entrypoint: (*entrypoint).to_owned(),
                rest: call_rest(args)?,
            })
        }
        "publish" => {
            let Some(&(_, topic)) = words.get(1) else {
                return Err(
                    "publish needs a topic and a JSON payload: publish TOPIC {\"order\": 7}".into(),
                );
            };
            let Some(&(at, _)) = words.get(2) else {
                return Err(format!(
                    "publish needs a JSON payload after the topic: publish {topic} {{\"order\": 7}}"
                ));
            };
            let payload = serde_json::from_str(line[at..].trim()).map_err(|e| {
                format!("the payload is not JSON ({e}); write it like {{\"order\": 7}}")
            })?;
            Ok(Command::Publish {
                topic: topic.to_owned(),
                payload,
            })
        }
        "ls" => match rest.as_slice() {
            [] => Ok(Command::Ls(None)),
            [service] => Ok(Command::Ls(Some((*service).to_owned()))),
            _ => Err("ls takes at most one service: ls [SERVICE]".into()),
        },
        "help" | "?" => Ok(Command::Help),
        "exit" | "quit" => Ok(Command::Exit),
        other => Err(format!(
            "there is no command `{other}`; the commands are call, publish, ls, help and exit"
        )),
    }
}

/// What follows `call SERVICE ENTRYPOINT`.
#[derive(Debug, Default, PartialEq)]
struct CallRest {
    args: Map<String, Value>,
    version: Option<String>,
    timeout: Option<Duration>,
}

/// The arguments of `call`: `NAME=VALUE` words, as `weft call --arg` reads
/// them (the value as JSON, else as a string), and JSON objects, merged in
/// order; and the options `--version V` and `--timeout SECS`, as `weft call`
/// has them.
fn call_rest(words: &[&str]) -> std::result::Result<CallRest, String> {
    let mut rest = CallRest::default();
    let args = &mut rest.args;
    let mut words = words.iter();
    while let Some(word) = words.next() {
        if word.starts_with("--") {
            let Some(value) = words.next() else {
                return Err(format!(
                    "{word} needs a value: --version 1.2.0 or --timeout 60"
                ));
            };
            match *word {
                "--version" => rest.version = Some((*value).to_owned()),
                "--timeout" => {
                    let timeout = value
                        .parse::<f64>()
                        .ok()
                        .filter(|secs| *secs > 0.0)
                        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
                        .ok_or_else(|| {
                            format!("--timeout {value} is not a number of seconds, like 60 or 0.5")
                        })?;
                    rest.timeout = Some(timeout);
                }
                other => {
                    return Err(format!(
                        "call has no option {other}; it has --version V and --timeout SECS"
                    ));
                }
            }
            continue;
        }
        if word.starts_with('{') {
            match serde_json::from_str::<Value>(word) {
                Ok(Value::Object(map)) => args.extend(map),
                Ok(_) | Err(_) => {
                    return Err(format!(
                        "`{word}` is not a JSON object; write arguments as {{\"n\": 3}} or n=3"
                    ));
                }
            }
            continue;
        }
        let Some((name, value)) = word.split_once('=').filter(|(n, _)| !n.is_empty()) else {
            return Err(format!(
                "`{word}` is not NAME=VALUE; write arguments as n=3 or as a JSON object {{\"n\": 3}}"
            ));
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_owned()));
        args.insert(name.to_owned(), value);
    }
    Ok(rest)
}

/// Runs one command; returns what to print.
async fn run(client: &Client, command: Command) -> Result<String> {
    match command {
        Command::Call {
            service,
            entrypoint,
            rest,
        } => {
            let mut request = client.request(&service, &entrypoint);
            if let Some(v) = &rest.version {
                request = request.version(v);
            }
            if let Some(t) = rest.timeout {
                request = request.timeout(t);
            }
            let result: Value = request.send(rest.args).await?;
            Ok(render_json(&result))
        }
        Command::Publish { topic, payload } => {
            let id = client.publish(&topic, &payload).await?;
            Ok(format!("published event {id} to {topic}"))
        }
        Command::Ls(None) => list_services(client).await,
        Command::Ls(Some(service)) => {
            let spec = spec_of(client, &service).ok_or_else(|| {
                Failure(format!(
                    "no service `{service}` is registered; `ls` lists those that are"
                ))
            })?;
            Ok(describe(&spec))
        }
        Command::Help => Ok(commands!().to_owned()),
        Command::Exit => Ok(String::new()),
    }
}

async fn list_services(client: &Client) -> Result<String> {
    let services = client.services().await?;
    if services.is_empty() {
        return Ok("no services are registered yet".into());
    }
    let rows: Vec<Vec<String>> = services
        .iter()
        .map(|s| {
            let versions = s
                .versions
                .iter()
                .map(|v| format!("{} ({})", v.version, v.instances))
                .collect::<Vec<_>>()
                .join(", ");
            let entrypoints = spec_of(client, &s.name)
                .map(|spec| {
                    spec.entrypoints
                        .iter()
                        .map(|e| e.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            vec![
                s.name.clone(),
                s.main.as_ref().map(ToString::to_string).unwrap_or_default(),
                versions,
                entrypoints,
            ]
        })
        .collect();
    let text = table::render(
        &["NAME", "MAIN", "VERSIONS (INSTANCES)", "ENTRYPOINTS"],
        &rows,
    );
    Ok(text.trim_end().to_owned())
}

/// One service's entrypoints with their parameters, and its topics.
fn describe(spec: &ServiceSpec) -> String {
    let rows: Vec<Vec<String>> = spec
        .entrypoints
        .iter()
        .map(|e| {
            let params = e
                .params
                .iter()
                .map(|p| {
                    let optional = if p.required { "" } else { "?" };
                    format!("{}{optional}: {}", p.name, type_name(&p.schema))
                })
                .collect::<Vec<_>>()
                .join(", ");
            let description = e.description.lines().next().unwrap_or_default().to_owned();
            vec![e.name.clone(), params, description]
        })
        .collect();
    let mut text = table::render(&["ENTRYPOINT", "PARAMETERS", "DESCRIPTION"], &rows);
    for h in &spec.event_handlers {
        text.push_str(&format!("handles {} ({})\n", h.topic, h.name));
    }
    for t in &spec.publishes {
        text.push_str(&format!("publishes {}\n", t.topic));
    }
    text.trim_end().to_owned()
}

/// A parameter's JSON type as its schema names it: `integer`, `string`,
/// `array`, `object` ... (`any` when the schema names none).
fn type_name(schema: &Value) -> String {
    match &schema["type"] {
        Value::String(t) => t.clone(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" | "),
        _ if schema.get("$ref").is_some() || schema.get("properties").is_some() => "object".into(),
        _ => "any".into(),
    }
}

/// The spec of `service`'s main version, else of any running version.
fn spec_of(client: &Client, service: &str) -> Option<ServiceSpec> {
    client
        .spec(service, "main")
        .or_else(|_| client.spec(service, "*"))
        .ok()
}

/// Completion from the host's registry.
struct Registry {
    client: Client,
    handle: Handle,
}

impl Registry {
    /// The services the host knows now; none when it does not answer in
    /// time (a completion offers nothing rather than an error).
    fn listed(&self) -> Vec<weft::ServiceSummary> {
        let listed = self
            .handle
            .block_on(async { tokio::time::timeout(LIST_TIMEOUT, self.client.services()).await });
        match listed {
            Ok(Ok(list)) => list,
            _ => Vec::new(),
        }
    }

    fn services(&self) -> Vec<String> {
        self.listed().into_iter().map(|s| s.name).collect()
    }

    /// The running versions of `service`, lowest first, then `main`.
    fn versions(&self, service: &str) -> Vec<String> {
        self.listed()
            .into_iter()
            .filter(|s| s.name == service)
            .flat_map(|s| s.versions.into_iter().map(|v| v.version.to_string()))
            .chain(["main".to_owned()])
            .collect()
    }

    fn topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self
            .services()
            .iter()
            .filter_map(|s| spec_of(&self.client, s))
            .flat_map(|spec| {
                let handled = spec.event_handlers.into_iter().map(|h| h.topic);
                let published = spec.publishes.into_iter().map(|t| t.topic);
                handled.chain(published).collect::<Vec<_>>()
            })
            .collect();
        topics.sort();
        topics.dedup();
        topics
    }

    /// The candidates for `word`, the word being typed, in a line whose
    /// earlier words are `before`.
    fn candidates(&self, before: &[&str], word: &str) -> Vec<Pair> {
        let words = |names: Vec<String>, end: &str| -> Vec<Pair> {
            names
                .into_iter()
                .filter(|n| n.starts_with(word))
                .map(|n| Pair {
                    replacement: format!("{n}{end}"),
                    display: n,
                })
                .collect()
        };
        let commands = || {
            ["call", "publish", "ls", "help", "exit"]
                .map(String::from)
                .to_vec()
        };
        match before {
            [] => words(commands(), " "),
            ["help"] => words(commands(), ""),
            ["call"] | ["ls"] => words(self.services(), " "),
            ["publish"] => words(self.topics(), " "),
            ["call", service] => words(
                spec_of(&self.client, service)
                    .map(|s| s.entrypoints.into_iter().map(|e| e.name).collect())
                    .unwrap_or_default(),
                " ",
            ),
            ["call", _, _, .., "--version"] => words(self.versions(before[1]), " "),
            ["call", _, _, .., "--timeout"] => Vec::new(),
            ["call", _, _, ..] if word.starts_with('-') => {
                words(["--version", "--timeout"].map(String::from).to_vec(), " ")
            }
            ["call", service, entrypoint, given @ ..] if !word.contains('=') => {
                let given: Vec<&str> = given
                    .iter()
                    .filter_map(|w| w.split_once('=').map(|(n, _)| n))
                    .collect();
                let params = spec_of(&self.client, service)
                    .and_then(|s| s.entrypoints.into_iter().find(|e| e.name == *entrypoint))
                    .map(|e| {
                        e.params
                            .into_iter()
                            .map(|p| p.name)
                            .filter(|n| !given.contains(&n.as_str()))
                            .collect()
                    })
                    .unwrap_or_default();
                words(params, "=")
            }
            _ => Vec::new(),
        }
    }
}

impl Completer for Registry {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let head = &line[..pos];
        let Ok(mut parsed) = words(head) else {
            return Ok((pos, Vec::new()));
        };
        // The word under the cursor, or a new one after a space.
        let (start, word) = match parsed.last() {
            Some(&(start, word)) if start + word.len() == head.len() => {
                parsed.pop();
                (start, word)
            }
            _ => (pos, ""),
        };
        let before: Vec<&str> = parsed.iter().map(|&(_, w)| w).collect();
        Ok((start, self.candidates(&before, word)))
    }
}

impl Hinter for Registry {
    type Hint = String;
}
impl Highlighter for Registry {}
impl Validator for Registry {}
impl Helper for Registry {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_keep_json_strings_and_brackets_whole() {
        let line = r#"call svc ep name="Ada Lovelace" {"a": [1, 2]}  n=3"#;
        let got: Vec<&str> = words(line).unwrap().into_iter().map(|(_, w)| w).collect();
        assert_eq!(
            got,
            [
                "call",
                "svc",
                "ep",
                r#"name="Ada Lovelace""#,
                r#"{"a": [1, 2]}"#,
                "n=3"
            ]
        );
        assert!(words(r#"call a b s="open"#).unwrap_err().contains('"'));
        assert!(words(r#"call a b {"a": 1"#).unwrap_err().contains('{'));
    }

    #[test]
    fn call_arguments_read_as_weft_call_reads_them() {
        let parsed = parse(
            r#"call svc ep n=3 --version ^1.2 name=ada tags=[1,2] {"b": true} s="x y" --timeout 0.5"#,
        )
        .unwrap();
        assert_eq!(
            parsed,
            Command::Call {
                service: "svc".into(),
                entrypoint: "ep".into(),
                rest: CallRest {
                    args: json!({"n": 3, "name": "ada", "tags": [1, 2], "b": true, "s": "x y"})
                        .as_object()
                        .unwrap()
                        .clone(),
                    version: Some("^1.2".into()),
                    timeout: Some(Duration::from_millis(500)),
                },
            }
        );
        for (bad, says) in [
            ("call svc", "service and an entrypoint"),
            ("call svc ep n", "NAME=VALUE"),
            ("call svc ep =3", "NAME=VALUE"),
            ("call svc ep --version", "needs a value"),
            ("call svc ep --timeout soon", "number of seconds"),
            ("call svc ep --timeout 0", "number of seconds"),
            ("call svc ep --timeout -1", "number of seconds"),
            ("call svc ep --retries 3", "no option --retries"),
            ("call svc ep {", "not closed"),
            ("call svc ep {]", "not a JSON object"),
            ("publish", "topic"),
            ("publish t", "payload"),
            ("publish t {nope}", "not JSON"),
            ("ls a b", "at most one"),
            ("deploy x", "no command `deploy`"),
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    #[test]
    fn publish_takes_the_rest_of_the_line_as_json() {
        assert_eq!(
            parse(r#"publish orders.created {"order": 7, "note": "a b"}"#).unwrap(),
            Command::Publish {
                topic: "orders.created".into(),
                payload: json!({"order": 7, "note": "a b"}),
            }
        );
        assert_eq!(
            parse("publish t 42").unwrap(),
            Command::Publish {
                topic: "t".into(),
                payload: json!(42),
            }
        );
    }

    #[test]
    fn types_are_named_from_schemas() {
        assert_eq!(type_name(&json!({"type": "integer"})), "integer");
        assert_eq!(
            type_name(&json!({"type": ["string", "null"]})),
            "string | null"
        );
        assert_eq!(type_name(&json!({"$ref": "#/$defs/Order"})), "object");
        assert_eq!(type_name(&json!({})), "any");
    }
}
