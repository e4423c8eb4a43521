//! The real `crm-server` binary as a child process, for the tests that signal or kill it.

#![allow(dead_code)] // Each test binary uses a different part.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a test waits for something that must happen, before failing.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_crm-server")
}

/// A running `crm-server serve`, its JSON logs collected as they come.
pub struct ServerProcess {
    child: Child,
    pub addr: String,
    pub base_url: String,
    /// The key and account printed by the first start on an empty database.
    pub bootstrap: Option<(String, String)>,
    logs: Arc<Mutex<Vec<Value>>>,
}

impl ServerProcess {
    /// Starts the server on `database` (a `--database` argument), on a free port, with
    /// `extra` arguments to `serve`. On an empty database the server prints a key and an
    /// account: `fresh` says whether to expect them.
    pub fn start(database: &str, fresh: bool, log_filter: &str, extra: &[&str]) -> ServerProcess {
        let mut child = Command::new(binary())
            .arg("--database")
            .arg(database)
            .args(["--log-format", "json", "--log-level", log_filter])
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let collected = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let Ok(event) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if event["fields"]["message"] == "listening" {
                    let _ =
                        address_tx.send(event["fields"]["address"].as_str().unwrap().to_owned());
                }
                collected.lock().unwrap().push(event);
            }
        });
        let (bootstrap_tx, bootstrap_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(exports) = line.trim().strip_prefix("export ") {
                    let values: Vec<&str> = exports.split('\'').collect();
                    let _ = bootstrap_tx.send((values[1].to_owned(), values[3].to_owned()));
                }
            }
        });
        let addr = address_rx
            .recv_timeout(PATIENCE)
            .expect("the server logs the address it listens on");
        let bootstrap = fresh.then(|| {
            bootstrap_rx
                .recv_timeout(PATIENCE)
                .expect("a first start prints a key and an account")
        });
        ServerProcess {
            child,
            base_url: format!("http://{addr}"),
            addr,
            bootstrap,
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/readyz` answers 200.
    pub async fn ready(&self, http: &reqwest::Client) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base_url)).send().await
                && r.status() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "the server never became ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(mut self) -> ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The log events so far.
    pub fn logs(&self) -> Vec<Value> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits for a log event matching `wanted`, and returns it.
    pub async fn wait_for_log(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(found) = self.logs.lock().unwrap().iter().find(|e| wanted(e)) {
                return found.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no such log event: {:#?}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh database of the store under test (`CRM_TEST_STORE`).
pub async fn database() -> crm_testkit::TestDatabase {
    crm_testkit::TestDatabase::new(crm_testkit::Store::from_env()).await
}
