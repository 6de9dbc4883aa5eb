//! `weft init`: writes a new service crate that builds against this
//! checkout's SDK, with a test and a README on how to deploy it.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};

use clap::Args;

use crate::{Failure, Result};

/// The name offered when none is typed.
const DEFAULT_NAME: &str = "my_project";

/// The template's files: (path in the new crate, contents).
const FILES: [(&str, &str); 6] = [
    (
        "Cargo.toml",
        include_str!("../templates/service/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../templates/service/lib.rs.tmpl"),
    ),
    (
        "src/main.rs",
        include_str!("../templates/service/main.rs.tmpl"),
    ),
    (
        "tests/service.rs",
        include_str!("../templates/service/service_test.rs.tmpl"),
    ),
    (
        "README.md",
        include_str!("../templates/service/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../templates/service/gitignore.tmpl"),
    ),
];

/// Options of `weft init`.
#[derive(Debug, Args)]
pub(crate) struct InitCmd {
    /// The project's name, which is also its directory [asked on stdin when left out].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The service's name, as `weft deploy` and callers name it
    /// [default: the project's name without a `_service` suffix].
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
    /// The weft SDK crate to depend on [default: the one of the checkout
    /// this `weft` was built from].
    #[arg(long, value_name = "DIR")]
    weft_path: Option<PathBuf>,
    /// Where to create the project's directory.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// Build in the crate's own target/ directory, not in the one every
    /// crate `weft init` makes shares (written to .cargo/config.toml).
    #[arg(long)]
    own_target_dir: bool,
}

/// `.cargo/config.toml`: the shared target directory.
const CARGO_CONFIG: &str = include_str!("../templates/service/cargo_config.toml.tmpl");

/// `text` as the inside of a TOML basic string.
fn toml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Asks for the project's name on stdin; an empty answer takes the default.
fn ask_name() -> Result<String> {
    let mut out = std::io::stdout().lock();
    write!(out, "project_name [{DEFAULT_NAME}]: ")?;
    out.flush()?;
    drop(out);
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| {
        Failure(format!(
            "cannot read the project name from stdin: {e}; pass --name"
        ))
    })?;
    let name = line.trim();
    if !std::io::stdin().is_terminal() {
        // A terminal echoes the answer; a pipe does not, so the output
        // would run on after the prompt.
        println!("{name}");
    }
    Ok(if name.is_empty() { DEFAULT_NAME } else { name }.to_owned())
}

fn check_project_name(name: &str) -> Result<()> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Failure(format!(
            "`{name}` cannot name a crate: start with a letter and use letters, digits, `_` and `-`"
        )))
    }
}

/// `die_roller_service` → `die_roller`.
fn service_name(project: &str) -> String {
    let snake = project.replace('-', "_").to_ascii_lowercase();
    match snake.strip_suffix("_service") {
        Some(base) if !base.is_empty() => base.to_owned(),
        _ => snake,
    }
}

/// `die_roller` → `DieRoller`.
fn type_name(service: &str) -> String {
    service
        .split(['_', '-', '.'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The checkout this binary was built from: its workspace root.
fn checkout() -> PathBuf {
    // crates/weft-cli → the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{{{k}}}}}"), v);
    }
    out
}

pub(crate) async fn init(cmd: InitCmd) -> Result<()> {
    let project = match cmd.name {
        Some(n) => n,
        None => ask_name()?,
    };
    check_project_name(&project)?;
    let service = cmd.service.unwrap_or_else(|| service_name(&project));
    weft_core::name::validate(&service)
        .map_err(|e| Failure(format!("the service name: {}; pass --service", e.message())))?;
    let weft_path = match cmd.weft_path {
        Some(p) => p,
        None => checkout().join("crates/weft"),
    };
    let weft_path = std::fs::canonicalize(&weft_path)
        .ok()
        .filter(|p| p.join("Cargo.toml").is_file())
        .ok_or_else(|| {
            Failure(format!(
                "cannot find the weft SDK crate at {}; pass --weft-path with the directory of the `weft` crate",
                weft_path.display()
            ))
        })?;
    let root = cmd.dir.join(&project);
    if root.exists() {
        return Err(Failure(format!(
            "{} already exists; pick another name or remove it",
            root.display()
        )));
    }
    let crate_name = project.replace('-', "_");
    let type_name = type_name(&service);
    let weft_path_text = weft_path.display().to_string();
    let vars = [
        ("project_name", project.as_str()),
        ("crate_name", crate_name.as_str()),
        ("service_name", service.as_str()),
        ("type_name", type_name.as_str()),
        ("weft_path", weft_path_text.as_str()),
    ];
    let write = |rel: &str, contents: &str| -> Result<()> {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
        }
        std::fs::write(&path, contents)
            .map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
    };
    for (rel, template) in FILES {
        write(rel, &render(template, &vars))?;
    }
    let shared = if cmd.own_target_dir {
        None
    } else {
        crate::deploy::shared_target_dir()
    };
    if let Some(dir) = &shared {
        let dir = toml_escape(&dir.display().to_string());
        write(
            ".cargo/config.toml",
            &render(CARGO_CONFIG, &[("target_dir", dir.as_str())]),
        )?;
    }
    // The SDK's own lock file pins the versions its checkout was tested
    // with, which are also the ones in the local cargo cache: with it the
    // new crate builds offline.
    if let Some(lock) = weft_path
        .parent()
        .and_then(Path::parent)
        .map(|ws| ws.join("Cargo.lock"))
        .filter(|l| l.is_file())
    {
        let text = std::fs::read_to_string(&lock)
            .map_err(|e| Failure(format!("cannot read {}: {e}", lock.display())))?;
        write("Cargo.lock", &text)?;
    }
    let shown = if cmd.dir == Path::new(".") {
        format!("./{project}")
    } else {
        root.display().to_string()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "Created the service `{service}` in {shown}")?;
    if let Some(dir) = &shared {
        writeln!(
            out,
            "It builds in {}, shared by every crate weft init makes: the first build compiles the dependencies (minutes), later ones take seconds",
            dir.display()
        )?;
    }
    writeln!(
        out,
        "Test it:   cd {shown} && cargo test\n\
         Deploy it: weft deploy {service} 1.0.0 {shown}"
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_the_project() {
        assert_eq!(service_name("die_roller_service"), "die_roller");
        assert_eq!(service_name("my-project"), "my_project");
        assert_eq!(service_name("_service"), "_service");
        assert_eq!(type_name("die_roller"), "DieRoller");
        assert!(check_project_name("die_roller_service").is_ok());
        assert!(check_project_name("1x").is_err());
        assert!(check_project_name("a b").is_err());
    }

    #[test]
    fn templates_render_every_placeholder() {
        let vars = [
            ("project_name", "p"),
            ("crate_name", "p"),
            ("service_name", "s"),
            ("type_name", "S"),
            ("weft_path", "/w"),
        ];
        for (rel, template) in FILES {
            let text = render(template, &vars);
            assert!(!text.contains("{{"), "{rel} keeps a placeholder: {text}");
        }
        let config = render(
            CARGO_CONFIG,
            &[("target_dir", toml_escape(r#"C:\a "b""#).as_str())],
        );
        assert!(config.contains(r#"target-dir = "C:\\a \"b\"""#), "{config}");
    }
}
