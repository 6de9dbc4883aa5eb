//! The docs page in headless Chromium, driven over WebDriver: "try it out"
//! calls the real gateway, and the page loads nothing from outside the host.
//!
//! Needs Debian's `chromium` and `chromium-driver`
//! (`apt-get install -y chromium chromium-driver`); without them the test
//! fails and says so.

use std::path::{Path, PathBuf};
use std::process::Command;

use hyper::Method;
use serde_json::{Value, json};
use weft_host::{AuthMode, HostConfig};
use weft_test_support::{ChildProcess, Http, RunningHost, Served};

const INSTALL: &str = "install Chromium and its WebDriver: `apt-get update && apt-get install -y chromium chromium-driver`";

fn find(candidates: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    candidates.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// A chromedriver process, killed when dropped.
struct Driver {
    _process: ChildProcess,
    http: Http,
}

impl Driver {
    async fn start(exe: &Path) -> Driver {
        if !exe.is_file() {
            panic!("cannot start {}; {INSTALL}", exe.display());
        }
        // Free a port for the driver; it says when it listens.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut cmd = Command::new(exe);
        cmd.arg(format!("--port={port}"));
        let mut process = ChildProcess::spawn("chromedriver", cmd);
        process
            .wait_for_line("chromedriver says it started", |l| {
                l.contains("started successfully")
            })
            .await;
        Driver {
            _process: process,
            http: Http::new(format!("127.0.0.1:{port}")),
        }
    }

    async fn send(&self, method: Method, path: &str, body: Value) -> Value {
        let body = if method == Method::GET || method == Method::DELETE {
            String::new()
        } else {
            body.to_string()
        };
        let a = self
            .http
            .request(method, path, &[("Content-Type", "application/json")], body)
            .await;
        let v = a.json();
        assert!(a.status.is_success(), "WebDriver {path}: {v}");
        v["value"].clone()
    }
}

/// A browser session; deleted (closing Chromium) by [`Session::close`].
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Session<'_> {
    async fn find(&self, css: &str) -> String {
        let v = self
            .driver
            .send(
                Method::POST,
                &format!("/session/{}/element", self.id),
                json!({ "using": "css selector", "value": css }),
            )
            .await;
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.driver
            .send(
                Method::POST,
                &format!("/session/{}/element/{element}/click", self.id),
                json!({}),
            )
            .await;
    }

    async fn type_text(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.driver
            .send(
                Method::POST,
                &format!("/session/{}/element/{element}/value", self.id),
                json!({ "text": text }),
            )
            .await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.driver
            .send(
                Method::GET,
                &format!("/session/{}/element/{element}/text", self.id),
                json!({}),
            )
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn script(&self, script: &str) -> Value {
        self.driver
            .send(
                Method::POST,
                &format!("/session/{}/execute/sync", self.id),
                json!({ "script": script, "args": [] }),
            )
            .await
    }

    /// A new Chromium session with its profile in `profile`.
    async fn open<'a>(driver: &'a Driver, chromium: &Path, profile: &Path) -> Session<'a> {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-quic",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,2000",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let created = driver
            .send(
                Method::POST,
                "/session",
                json!({ "capabilities": { "alwaysMatch": {
                    "goog:chromeOptions": { "binary": chromium, "args": args }
                } } }),
            )
            .await;
        let session = Session {
            driver,
            id: created["sessionId"].as_str().unwrap().to_owned(),
        };
        // Element look-ups wait for the page to render them, up to this long.
        driver
            .send(
                Method::POST,
                &format!("/session/{}/timeouts", session.id),
                json!({ "implicit": 15_000, "script": 15_000, "pageLoad": 30_000 }),
            )
            .await;
        session
    }

    async fn go(&self, url: &str) {
        self.driver
            .send(
                Method::POST,
                &format!("/session/{}/url", self.id),
                json!({ "url": url }),
            )
            .await;
    }

    async fn close(self) {
        self.driver
            .send(Method::DELETE, &format!("/session/{}", self.id), json!({}))
            .await;
    }
}

#[tokio::test]
async fn try_it_out_rolls_a_die_with_nothing_from_outside() {
    let (chromium, chromedriver) = browser();
    let dir = tempfile::tempdir().unwrap();
    let host = RunningHost::loopback(dir.path()).await;
    let mut watch = host.watch().await;
    let _dice = Served::start(die_roller::DieRoller, &host);
    watch.up("die_roller", env!("CARGO_PKG_VERSION")).await;

    let driver = Driver::start(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let session = Session::open(&driver, &chromium, profile.path()).await;
    let origin = format!("http://{}", host.hostport());
    session
        .go(&format!("{origin}/services/die_roller/docs"))
        .await;

    let (status, body) = try_it_out(&session, "#operations-die_roller-roll_die").await;
    assert_eq!(status.trim(), "200", "the call succeeded");
    let roll: u8 = body
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("the response body {body:?} is not a number: {e}"));
    assert!((1..=6).contains(&roll), "rolled {roll}");

    let loaded = session
        .script(
            "return {
                origin: location.origin,
                resources: performance.getEntriesByType('resource').map(e => e.name),
                elements: Array.from(document.querySelectorAll('script[src],link[href],img[src]'))
                    .map(e => e.src || e.href),
            };",
        )
        .await;
    assert_eq!(loaded["origin"], origin.as_str());
    let resources = loaded["resources"].as_array().unwrap();
    assert!(
        resources
            .iter()
            .any(|r| r.as_str().unwrap().ends_with("swagger-ui-bundle.js")),
        "the bundle was loaded: {loaded}"
    );
    assert!(
        resources.iter().any(|r| r
            .as_str()
            .unwrap()
            .ends_with("/services/die_roller/roll_die")),
        "the call shows up as a resource too: {loaded}"
    );
    for url in resources
        .iter()
        .chain(loaded["elements"].as_array().unwrap())
    {
        let url = url.as_str().unwrap();
        // Inline data is part of the page, not loaded from anywhere.
        assert!(
            url.starts_with(&format!("{origin}/")) || url.starts_with("data:"),
            "the page loaded {url} from outside the host ({origin})"
        );
    }
    session.close().await;
    host.stop().await;
    drop(driver);
}

fn browser() -> (PathBuf, PathBuf) {
    let chromium = find(&["chromium", "chromium-browser"])
        .unwrap_or_else(|| panic!("no Chromium on PATH; {INSTALL}"));
    let chromedriver =
        find(&["chromedriver"]).unwrap_or_else(|| panic!("no chromedriver on PATH; {INSTALL}"));
    (chromium, chromedriver)
}

#[tokio::test]
async fn the_docs_page_shows_events_examples_and_no_warning() {
    let (chromium, chromedriver) = browser();
    let dir = tempfile::tempdir().unwrap();
    let host = RunningHost::loopback(dir.path()).await;
    let mut watch = host.watch().await;
    let _dice = Served::start(crate::dice::Dice, &host);
    watch.up("dice", env!("CARGO_PKG_VERSION")).await;

    let driver = Driver::start(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let session = Session::open(&driver, &chromium, profile.path()).await;
    let origin = format!("http://{}", host.hostport());
    session.go(&format!("{origin}/services/dice/docs")).await;

    // The operations render: the two entrypoints, and GET for the
    // read-only one; the event handler is no operation.
    session.find("#operations-dice-roll_get").await;
    let page = session
        .script(
            "return {
                ops: Array.from(document.querySelectorAll('.opblock')).map(e => e.id),
                errors: window.ui.errSelectors.allErrors().toJS(),
                errorBoxes: document.querySelectorAll('.errors-wrapper').length,
                authorize: document.querySelectorAll('.auth-wrapper .authorize').length,
                info: document.querySelector('.information-container').innerText,
            };",
        )
        .await;
    let mut ops: Vec<&str> = page["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    ops.sort_unstable();
    assert_eq!(
        ops,
        [
            "operations-dice-reset",
            "operations-dice-roll",
            "operations-dice-roll_get"
        ],
        "{page}"
    );
    assert_eq!(page["errors"], json!([]), "Swagger UI reports no error");
    assert_eq!(page["errorBoxes"], 0, "no warning box: {page}");
    assert_eq!(
        page["authorize"], 0,
        "no token needed, no Authorize: {page}"
    );
    let info = page["info"].as_str().unwrap();
    for text in [
        "Consumes",
        "dice.requested",
        "on_request",
        "Publishes",
        "dice.rolled",
    ] {
        assert!(info.contains(text), "{text} in {info}");
    }

    // The body editor starts from useful values.
    session
        .click("#operations-dice-roll .opblock-summary-control")
        .await;
    session.click("#operations-dice-roll .try-out__btn").await;
    let example = session
        .script("return document.querySelector('#operations-dice-roll textarea.body-param__text').value;")
        .await;
    let example: Value = serde_json::from_str(example.as_str().unwrap()).unwrap();
    assert_eq!(example["sides"], 20, "{example}");
    assert_eq!(example["label"], "table", "{example}");
    assert_eq!(example["count"], 1, "{example}");

    // GET from the page reaches the service, which applies its defaults.
    let (status, body) = try_it_out(&session, "#operations-dice-roll_get").await;
    assert_eq!(status.trim(), "200");
    let rolled: Value = serde_json::from_str(&body).unwrap();
    assert!(
        rolled["sides"].is_u64() && rolled["count"].is_u64(),
        "{rolled}"
    );

    session.close().await;
    host.stop().await;
    drop(driver);
}

#[tokio::test]
async fn with_tokens_required_the_docs_page_asks_for_one_and_offers_authorize() {
    let (chromium, chromedriver) = browser();
    let dir = tempfile::tempdir().unwrap();
    let host = RunningHost::start(
        HostConfig::new("127.0.0.1:0".parse().unwrap(), dir.path()).auth(AuthMode::Required),
    )
    .await;
    let admin = host.admin_token().unwrap().to_owned();
    let mut watch = host.watch().await;
    let _dice = Served::start(crate::dice::Dice, &host);
    watch.up("dice", env!("CARGO_PKG_VERSION")).await;

    let driver = Driver::start(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let session = Session::open(&driver, &chromium, profile.path()).await;
    let origin = format!("http://{}", host.hostport());
    session.go(&format!("{origin}/services/dice/docs")).await;

    // The document needs a token: the page asks, then shows the API with
    // "Authorize", since calls need a token too.
    let asked = session.text("#weft-auth-message").await;
    assert!(!asked.is_empty(), "the page says why it asks");
    session.type_text("#weft-token", &admin).await;
    session.click("#weft-auth button[type=submit]").await;
    session.find(".auth-wrapper .authorize").await;
    let errors = session
        .script("return window.ui.errSelectors.allErrors().toJS();")
        .await;
    assert_eq!(errors, json!([]));

    // Try it out sends the token the page was given.
    let (status, _) = try_it_out(&session, "#operations-dice-roll_get").await;
    assert_eq!(status.trim(), "200");
    session.close().await;
    host.stop().await;
    drop(driver);
}

/// Opens the operation `op` (its element's selector) on a docs page, runs
/// it with "Try it out" and its example, and returns the response's status
/// and body as the page shows them.
async fn try_it_out(session: &Session<'_>, op: &str) -> (String, String) {
    session
        .click(&format!("{op} .opblock-summary-control"))
        .await;
    session.click(&format!("{op} .try-out__btn")).await;
    session.click(&format!("{op} .execute")).await;
    let status = session
        .text(&format!(
            "{op} .live-responses-table .response .response-col_status"
        ))
        .await;
    let body = session
        .text(&format!(
            "{op} .live-responses-table .response-col_description pre.microlight"
        ))
        .await;
    (status, body)
}
