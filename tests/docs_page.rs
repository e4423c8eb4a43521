//! The reference page in a real browser: headless Chromium (Debian's `chromium`, driven
//! through `chromedriver` over WebDriver) opens `/docs` on a running server and must show
//! every Contacts operation, and load nothing from elsewhere; a screenshot is saved as
//! `<target dir>/screenshots/docs.png`. Then "Try it out" on List Contacts, with the test
//! server's key, must answer 200 from that server, which runs on an ephemeral port: the
//! served document names its server relatively (`servers: [{url: /}]`), not a fixed
//! address (`try-it-out.png`). When `CRM_REFERENCE_PAGE` names the published
//! `reference.html`, that file is checked the same way from disk (`reference.png`).
//!
//! Without `chromedriver` and `chromium` on the machine the test says so and passes, unless
//! `CRM_BROWSER_TEST=require` is set, as `.ci/publish-checks` does after installing them:
//! there a missing browser fails the run.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use conformance::TestServer;
use serde_json::{Value, json};

/// The flags that keep Chromium from reaching out or stalling on a machine without network.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--window-size=1280,2200",
];

fn find(env: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    candidates
        .iter()
        .flat_map(|name| dirs.iter().map(move |dir| dir.join(name)))
        .find(|path| path.is_file())
}

/// `chromedriver` as a child process, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(binary: &Path) -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = reqwest::get(format!("{}/status", driver.url))
            .await
            .ok()
            .map(|r| r.status().is_success())
            .unwrap_or(false);
        if ready {
            return driver;
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One WebDriver command; returns its `value`.
async fn command(http: &reqwest::Client, method: &str, url: &str, body: Option<Value>) -> Value {
    let request = match method {
        "POST" => http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        "DELETE" => http.delete(url),
        _ => http.get(url),
    };
    let reply: Value = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
        .json()
        .await
        .expect("a WebDriver reply");
    if reply["value"].get("error").is_some() {
        panic!("{method} {url}: {}", reply["value"]);
    }
    reply["value"].clone()
}

/// The operationIds of the operations tagged Contacts in the spec.
fn contacts_operations() -> Vec<String> {
    let spec = crm_spec::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi/crm.yaml"))
        .expect("openapi/crm.yaml loads");
    let mut ids = Vec::new();
    for item in spec["paths"].as_object().expect("paths").values() {
        for op in item.as_object().into_iter().flat_map(|o| o.values()) {
            let tagged = op["tags"]
                .as_array()
                .is_some_and(|tags| tags.iter().any(|t| t == "Contacts"));
            if let (true, Some(id)) = (tagged, op["operationId"].as_str()) {
                ids.push(id.to_owned());
            }
        }
    }
    ids
}

/// Where the screenshots go: `<target dir>/screenshots/`.
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("screenshots")
}

/// Opens `url`, waits until every operationId in `expected` shows, checks the page loaded
/// nothing from elsewhere, and saves a screenshot as `name`.
async fn render_and_check(
    http: &reqwest::Client,
    session_url: &str,
    url: &str,
    expected: &[String],
    name: &str,
) {
    command(
        http,
        "POST",
        &format!("{session_url}/url"),
        Some(json!({"url": url})),
    )
    .await;
    let script = |source: &str| json!({"script": source, "args": []});
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = command(
            http,
            "POST",
            &format!("{session_url}/execute/sync"),
            Some(script(
                "return document.body ? document.body.innerText : '';",
            )),
        )
        .await;
        let text = text.as_str().unwrap_or_default().to_owned();
        if expected.iter().all(|id| text.contains(id.as_str())) {
            break text;
        }
        if Instant::now() > deadline {
            let missing: Vec<&String> = expected
                .iter()
                .filter(|id| !text.contains(id.as_str()))
                .collect();
            panic!("{url} never showed {missing:?}; it shows:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for words in ["Unified CRM API", "Contacts", "/unified/crm/contacts"] {
        assert!(
            text.contains(words),
            "{url} does not show {words:?}:\n{text}"
        );
    }

    // Self-contained: the page loaded nothing but inline data.
    let loaded = command(
        http,
        "POST",
        &format!("{session_url}/execute/sync"),
        Some(script(
            "return performance.getEntriesByType('resource').map(function (e) { return e.name; });",
        )),
    )
    .await;
    let outside: Vec<&Value> = loaded
        .as_array()
        .into_iter()
        .flatten()
        .filter(|name| !name.as_str().unwrap_or_default().starts_with("data:"))
        .collect();
    assert!(outside.is_empty(), "{url} loaded {outside:?}");

    let png = command(http, "GET", &format!("{session_url}/screenshot"), None).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().expect("a base64 screenshot"))
        .expect("base64");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshot_dir().join(name);
    std::fs::create_dir_all(screenshot_dir()).expect("screenshot directory");
    std::fs::write(&path, &png).expect("screenshot written");
    println!("screenshot of {url}: {}", path.display());
}

/// The WebDriver id of the first element matching `css`, waiting up to 30 s for it.
async fn element(http: &reqwest::Client, session_url: &str, css: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = command(
            http,
            "POST",
            &format!("{session_url}/elements"),
            Some(json!({"using": "css selector", "value": css})),
        )
        .await;
        if let Some(first) = found.as_array().and_then(|all| all.first()) {
            return first
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
                .expect("an element id")
                .to_owned();
        }
        assert!(Instant::now() < deadline, "no element matches {css}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// On the reference page already open at `/docs`, runs List Contacts through Swagger UI's
/// "Try it out" with the server's key and account, as a reader would: the request goes to
/// the server the document names, and must come back 200 from the server under test.
async fn try_it_out(http: &reqwest::Client, session_url: &str, server: &TestServer) {
    let script = |source: &str, args: Value| json!({"script": source, "args": args});
    command(
        http,
        "POST",
        &format!("{session_url}/execute/sync"),
        Some(script(
            "window.ui.preauthorizeBasic('basic', arguments[0], ''); return true;",
            json!([server.key]),
        )),
    )
    .await;
    let servers = command(
        http,
        "POST",
        &format!("{session_url}/execute/sync"),
        Some(script(
            "return window.ui.specSelectors.servers().toJS().map(function (s) { return s.url; });",
            json!([]),
        )),
    )
    .await;
    assert_eq!(servers, json!(["/"]), "the page's servers");
    let operation = "#operations-Contacts-crm_list_contacts";
    let click = |id: String| {
        let url = format!("{session_url}/element/{id}/click");
        async move { command(http, "POST", &url, Some(json!({}))).await }
    };
    // Expand the operation, then "Try it out".
    click(
        element(
            http,
            session_url,
            &format!("{operation} .opblock-summary-control"),
        )
        .await,
    )
    .await;
    click(element(http, session_url, &format!("{operation} .try-out__btn")).await).await;
    // Swagger UI fills each parameter with its example: the account header gets the server's
    // account, and `exclude_fields` is emptied (sent with the example of `fields`, it is 400).
    let fill = |name: &'static str, value: String| async move {
        let input = element(
            http,
            session_url,
            &format!("{operation} tr[data-param-name=\"{name}\"] input"),
        )
        .await;
        command(
            http,
            "POST",
            &format!("{session_url}/element/{input}/clear"),
            Some(json!({})),
        )
        .await;
        // Typing (a key and its erasure when emptying) is what tells Swagger UI the new value.
        let text = if value.is_empty() {
            "x\u{E003}".to_owned()
        } else {
            value
        };
        command(
            http,
            "POST",
            &format!("{session_url}/element/{input}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    };
    fill("x-account-id", server.account_id.clone()).await;
    fill("exclude_fields", String::new()).await;
    click(element(http, session_url, &format!("{operation} .btn.execute")).await).await;
    let status = element(
        http,
        session_url,
        &format!("{operation} .live-responses-table .response .response-col_status"),
    )
    .await;
    let text = command(
        http,
        "GET",
        &format!("{session_url}/element/{status}/text"),
        None,
    )
    .await;
    let shown = command(
        http,
        "POST",
        &format!("{session_url}/execute/sync"),
        Some(script(
            "return document.querySelector(arguments[0]).innerText;",
            json!([format!("{operation} .responses-inner")]),
        )),
    )
    .await;
    let png = command(http, "GET", &format!("{session_url}/screenshot"), None).await;
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().expect("a base64 screenshot"))
        .expect("base64");
    std::fs::create_dir_all(screenshot_dir()).expect("screenshot directory");
    std::fs::write(screenshot_dir().join("try-it-out.png"), &png).expect("screenshot written");
    assert!(
        text.as_str().unwrap_or_default().trim().starts_with("200"),
        "Try it out on {} answered {text}:\n{}",
        server.base_url,
        shown
            .as_str()
            .unwrap_or_default()
            .chars()
            .take(2000)
            .collect::<String>()
    );
    let shown = shown.as_str().unwrap_or_default();
    assert!(
        shown.contains(&format!("{}/unified/crm/contacts", server.base_url)),
        "the request did not go to the server under test:\n{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_page_renders_the_contacts_operations() {
    let required = std::env::var("CRM_BROWSER_TEST").as_deref() == Ok("require");
    let (driver_bin, chromium) = match (
        find("CHROMEDRIVER", &["chromedriver"]),
        find("CHROMIUM", &["chromium", "chromium-browser"]),
    ) {
        (Some(d), Some(c)) => (d, c),
        _ if required => panic!("CRM_BROWSER_TEST=require but chromedriver or chromium is missing"),
        _ => {
            println!(
                "skipped: chromedriver and chromium are not installed (.ci/publish-checks installs them)"
            );
            return;
        }
    };
    let expected = contacts_operations();
    assert!(expected.len() >= 5, "{expected:?}");

    let server = TestServer::start().await;
    let driver = start_driver(&driver_bin).await;
    let profile = tempfile::tempdir().expect("a fresh profile directory");
    let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| (*s).to_owned()).collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let http = reqwest::Client::new();
    let session = command(
        &http,
        "POST",
        &format!("{}/session", driver.url),
        Some(json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}})),
    )
    .await;
    let session_url = format!(
        "{}/session/{}",
        driver.url,
        session["sessionId"].as_str().expect("a session id")
    );

    let docs = format!("{}/docs", server.base_url);
    render_and_check(&http, &session_url, &docs, &expected, "docs.png").await;
    try_it_out(&http, &session_url, &server).await;
    // `.ci/publish-checks` also hands over the page `cargo xtask publish` wrote, which must
    // render the same from disk.
    if let Some(published) = std::env::var_os("CRM_REFERENCE_PAGE") {
        // Relative to the workspace root (an absolute path stays as it is).
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(published);
        let path = std::fs::canonicalize(&path)
            .unwrap_or_else(|e| panic!("CRM_REFERENCE_PAGE {}: {e}", path.display()));
        let url = format!("file://{}", path.display());
        render_and_check(&http, &session_url, &url, &expected, "reference.png").await;
    }

    command(&http, "DELETE", &session_url, None).await;
    drop(driver);
    server.stop().await;
}
