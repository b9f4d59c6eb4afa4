//! Scaffolding shared by the end-to-end tests: the `keel` binary run against a temporary
//! workspace ([`Keel`]), `keel serve` on free loopback ports ([`Server`]), moto's S3 server
//! ([`Moto`]), bounded waits ([`eventually`]) and JSON helpers.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// A file in the repository, by its path from the repository's root, as a command-line argument.
pub fn repo_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path);
    path.to_str().expect("utf-8 path").to_string()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// What `keel` printed on stderr.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Asserts that `keel` exited with status 1 and said `needle` on stderr.
#[track_caller]
pub fn assert_refused(out: &Output, needle: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    assert_says(out, needle);
}

/// Asserts that `keel` said `needle` on stderr, whatever its exit status.
#[track_caller]
pub fn assert_says(out: &Output, needle: &str) {
    assert!(stderr(out).contains(needle), "{}", stderr(out));
}

/// The items of a JSON array; fails the test when `value` is not one.
#[track_caller]
pub fn items(value: &Value) -> &[Value] {
    value
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("not a JSON array: {value}"))
}

/// The string at the JSON `pointer` in every item of the array `value` (`""` for the items
/// themselves); fails the test when one is missing or not a string.
#[track_caller]
pub fn strings<'a>(value: &'a Value, pointer: &str) -> Vec<&'a str> {
    items(value)
        .iter()
        .map(|item| {
            item.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("no string at {pointer:?} in {item}"))
        })
        .collect()
}

/// The `keel` binary run against its own temporary workspace (`--home`), with environment
/// variables set or removed on every command it runs. The workspace is deleted on drop.
pub struct Keel {
    home: TempDir,
    /// Variables to set (`Some`) or remove (`None`), applied in order.
    env: Vec<(String, Option<String>)>,
}

impl Keel {
    /// A fresh workspace whose commands ignore the caller's keel settings: the author is
    /// `tester`, and `KEEL_STORE_URL`, `KEEL_ARTIFACTS` and `KEEL_LAKE` are removed.
    pub fn new() -> Self {
        Self::inheriting()
            .env("KEEL_AUTHOR", "tester")
            .env_remove("KEEL_STORE_URL")
            .env_remove("KEEL_ARTIFACTS")
            .env_remove("KEEL_LAKE")
    }

    /// A fresh workspace whose commands run in the caller's environment, unchanged.
    pub fn inheriting() -> Self {
        Keel {
            home: tempfile::tempdir().expect("temporary workspace"),
            env: Vec::new(),
        }
    }

    /// A fresh workspace whose commands run in the caller's environment with `KEEL_LOG=warn`.
    pub fn quiet() -> Self {
        Self::inheriting().env("KEEL_LOG", "warn")
    }

    /// Also sets `key` to `value` for every command.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), Some(value.into())));
        self
    }

    /// Also sets every variable of `vars` for every command.
    pub fn envs<K: AsRef<str>, V: Into<String>>(self, vars: impl IntoIterator<Item = (K, V)>) -> Self {
        vars.into_iter()
            .fold(self, |keel, (key, value)| keel.env(key.as_ref(), value))
    }

    /// Removes `key` from the environment of every command.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env.push((key.to_string(), None));
        self
    }

    /// The workspace folder.
    pub fn home(&self) -> &Path {
        self.home.path()
    }

    /// The path of `name` in the workspace folder, as a command-line argument.
    pub fn path(&self, name: &str) -> String {
        self.home().join(name).to_str().expect("utf-8 path").to_string()
    }

    /// Writes `body` to `name` in the workspace folder; its path, as in [`Keel::path`].
    pub fn file(&self, name: &str, body: impl AsRef<[u8]>) -> String {
        let path = self.path(name);
        std::fs::write(&path, body).expect("write a file in the workspace");
        path
    }

    /// `keel --home HOME ARGS...` in this workspace's environment, on top of `defaults`; not
    /// yet run.
    fn command_over(&self, defaults: &[(&str, &str)], args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
        cmd.envs(defaults.iter().copied());
        for (key, value) in &self.env {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        cmd.arg("--home").arg(self.home()).args(args);
        cmd
    }

    /// `keel --home HOME ARGS...` in this workspace's environment, not yet run (to add to it).
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_over(&[], args)
    }

    /// Runs `keel ARGS...` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run keel")
    }

    /// Runs `keel ARGS...`, failing the test with keel's stderr unless it succeeds.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "keel {args:?} failed: {}", stderr(&out));
        out
    }

    /// Runs `keel --json ARGS...`, which must succeed: its stdout, as JSON.
    #[track_caller]
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(out.status.success(), "keel {args:?} failed: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }

    /// Starts `keel serve` for this workspace on free loopback ports, as [`Keel::serve_on`].
    pub fn serve(&self, args: &[&str]) -> Server {
        self.serve_on(Ports::free(), args, &[])
    }

    /// Starts `keel serve --http-addr ... --grpc-addr ... ARGS...` on `ports` (loopback unless
    /// `args` names the address), with `env` over
    /// this workspace's environment, over `KEEL_LOG=error`; its output is discarded. Returns at
    /// once: wait with [`Server::ready`] or [`Server::wait_for`].
    pub fn serve_on(&self, ports: Ports, args: &[&str], env: &[(&str, &str)]) -> Server {
        let (http, grpc) = (format!("127.0.0.1:{}", ports.http), format!("127.0.0.1:{}", ports.grpc));
        // An address given in `args` (e.g. 0.0.0.0:PORT) replaces the loopback one.
        let mut listen = vec!["serve"];
        if !args.contains(&"--http-addr") {
            listen.extend(["--http-addr", &http]);
        }
        if !args.contains(&"--grpc-addr") {
            listen.extend(["--grpc-addr", &grpc]);
        }
        let child = self
            .command_over(&[("KEEL_LOG", "error")], &listen)
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start keel serve");
        Server {
            child,
            ports,
            base: format!("http://{http}"),
            client: reqwest::Client::new(),
        }
    }
}

/// The two loopback ports of a `keel serve`.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub http: u16,
    pub grpc: u16,
}

impl Ports {
    /// Two ports that were free a moment ago.
    pub fn free() -> Self {
        Ports {
            http: free_port(),
            grpc: free_port(),
        }
    }
}

/// The readiness route of `keel serve`: it answers 200 once every served model is loaded.
pub const READY: &str = "/v2/health/ready";

/// A running `keel serve`. Killed (SIGKILL) and reaped on drop, so that a failed assertion
/// never leaves a server behind.
pub struct Server {
    child: Child,
    /// Where it listens: give them to [`Keel::serve_on`] to restart it on the same addresses.
    pub ports: Ports,
    /// `http://127.0.0.1:PORT`, its HTTP address.
    pub base: String,
    /// An HTTP client for the requests of the test.
    pub client: reqwest::Client,
}

impl Server {
    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Waits until `GET path` succeeds, failing the test after `within`.
    pub async fn wait_for(&self, path: &str, within: Duration) {
        eventually(within, Duration::from_millis(50), async || {
            match self.client.get(self.url(path)).send().await {
                Ok(r) if r.status().is_success() => Ok(()),
                _ => Err(format!("server not ready within {within:?}")),
            }
        })
        .await;
    }

    /// The server, once it is ready ([`READY`]) within 30 s.
    pub async fn ready(self) -> Self {
        self.wait_for(READY, Duration::from_secs(30)).await;
        self
    }

    /// `GET path`: the status and the JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self.client.get(self.url(path)).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    /// `POST path` with a JSON `body`: the status and the JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }

    /// The sum of the samples of every metric line starting with `name`.
    pub async fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM, then the exit status must be success (the server shut down cleanly, flushing
    /// its logs on the way out).
    pub fn stop(mut self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "keel serve exited with {status}");
    }

    /// SIGINT (a graceful stop), and waits for the server to exit, whatever its exit status.
    pub fn interrupt(mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reaps the process.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A no-op once the process was reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Tries `attempt` every `every` until it returns `Ok`, which is the result; once `within` has
/// passed, the next `Err` fails the test with its message instead.
pub async fn eventually<T>(
    within: Duration,
    every: Duration,
    mut attempt: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(why) => {
                assert!(Instant::now() < deadline, "{why}");
                tokio::time::sleep(every).await;
            }
        }
    }
}

#[path = "../../../../tests/support/moto.rs"]
mod moto;
pub use moto::Moto;

/// The environment that puts keel's lake at `lake` (`KEEL_LAKE`, e.g. `s3://bucket/prefix`) with
/// the S3 settings, for the endpoint `endpoint`, in the standard AWS_* variables.
pub fn s3_env(endpoint: &str, lake: &str) -> [(&'static str, String); 6] {
    [
        ("KEEL_LAKE", lake.to_string()),
        ("AWS_ENDPOINT_URL", endpoint.to_string()),
        ("AWS_ALLOW_HTTP", "true".to_string()),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ]
}
