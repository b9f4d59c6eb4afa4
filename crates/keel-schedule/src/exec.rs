//! Running a scheduled command: a child process of the keel binary, with the server's home,
//! store and lake, as the schedule's creator.
//!
//! A command that reaches the server itself (a batch decide on a deployment the server holds
//! goes to it as a job, `KEEL_SERVER`) must authenticate like any caller when the server
//! requires it. With [`RunTokens`], each run gets its own API token for the schedule's creator
//! (every scope but `admin`: what the creator could issue themselves; table grants still apply
//! to them), passed as `KEEL_TOKEN`, expiring after a day at most and revoked as soon as the
//! run ends. The secret exists only in the child's environment; issue and revocation are in the
//! change log, by `keel-scheduler`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use keel_auth::tokens::{self, TokenRequest};
use keel_auth::{Scope, Scopes};
use keel_catalog::{Actor, Catalog};

use tokio::io::AsyncReadExt as _;
use tokio_util::sync::CancellationToken;

/// What a finished command left behind.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// Exit status (None: killed by a signal).
    pub status: Option<i32>,
    /// Rows the command reports in its `--json` summary (`rows`, `rows_written`, `decided`,
    /// `counted` or `written`), if it printed one.
    pub rows: Option<i64>,
    /// The end of its standard error (what it said went wrong).
    pub stderr_tail: String,
}

impl Executed {
    pub fn succeeded(&self) -> bool {
        self.status == Some(0)
    }
}

/// Runs `exe ARGS --json` with the given environment (home, store, lake, user).
#[derive(Debug, Clone)]
pub struct ProcessExecutor {
    pub exe: PathBuf,
    pub env: Vec<(String, String)>,
    /// Arguments put before the command's (global flags such as `--home`).
    pub prefix: Vec<String>,
    /// Adds `--json` before the command, so its summary can be read.
    pub json: bool,
    /// A token per run for the creator, when the server the commands reach authenticates.
    pub tokens: Option<RunTokens>,
}

/// Issues the short-lived token each run carries (see the module's notes).
#[derive(Clone)]
pub struct RunTokens {
    pub catalog: Catalog,
    /// How long a run's token lives if the run outlives its revocation (a crash).
    pub lifetime: Duration,
}

impl std::fmt::Debug for RunTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunTokens")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

/// Who issues and revokes run tokens.
pub const SCHEDULER: &str = "keel-scheduler";

impl RunTokens {
    pub fn new(catalog: Catalog) -> RunTokens {
        RunTokens {
            catalog,
            lifetime: Duration::from_secs(24 * 3600),
        }
    }

    fn actor() -> Actor {
        Actor {
            name: SCHEDULER.into(),
            is_admin: true,
            teams: Vec::new(),
        }
    }

    /// A token for `user`: its id and secret.
    async fn issue(&self, user: &str) -> Result<(String, String), String> {
        let scopes = Scopes::known(Scope::ALL.iter().filter(|s| **s != Scope::Admin).map(|s| s.as_str()));
        let request = TokenRequest {
            principal: user,
            scopes,
            label: Some("scheduled run"),
            expires_in: Some(self.lifetime),
        };
        let issued = tokens::issue(&self.catalog, &Self::actor(), request)
            .await
            .map_err(|e| format!("could not issue the run's token for {user}: {e}"))?;
        Ok((issued.id, issued.secret))
    }

    async fn revoke(&self, id: &str) {
        if let Err(e) = tokens::revoke(&self.catalog, &Self::actor(), id).await {
            tracing::warn!(token = %id, error = %e, "scheduler: revoking a run's token failed; it expires on its own");
        }
    }
}

/// Replaces `{date}` and `{datetime}` in each argument with the firing's UTC date
/// (`20261207`) and time (`20261207T060000Z`).
pub fn expand(args: &[String], scheduled_for_ms: i64) -> Vec<String> {
    let at = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(scheduled_for_ms).unwrap_or_default();
    let (date, datetime) = (at.format("%Y%m%d").to_string(), at.format("%Y%m%dT%H%M%SZ").to_string());
    args.iter()
        .map(|a| a.replace("{datetime}", &datetime).replace("{date}", &date))
        .collect()
}

const TAIL: usize = 4096;

impl ProcessExecutor {
    /// Runs one command to its end (or kills it when `cancel` fires). `user` is who it runs as.
    pub async fn run(&self, args: &[String], user: &str, cancel: &CancellationToken) -> std::io::Result<Executed> {
        let token = match &self.tokens {
            Some(tokens) => Some(tokens.issue(user).await.map_err(std::io::Error::other)?),
            None => None,
        };
        let result = self
            .run_with(args, user, token.as_ref().map(|(_, secret)| secret.as_str()), cancel)
            .await;
        if let (Some(tokens), Some((id, _))) = (&self.tokens, &token) {
            tokens.revoke(id).await;
        }
        result
    }

    async fn run_with(
        &self,
        args: &[String],
        user: &str,
        token: Option<&str>,
        cancel: &CancellationToken,
    ) -> std::io::Result<Executed> {
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(&self.prefix);
        if self.json {
            cmd.arg("--json");
        }
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("KEEL_USER", user)
            .env_remove("KEEL_TOKEN")
            .envs(token.map(|t| ("KEEL_TOKEN", t)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let mut stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut stderr = child.stderr.take().ok_or_else(|| std::io::Error::other("no stderr"))?;
        let read_out = async {
            let mut buf = Vec::new();
            stdout.read_to_end(&mut buf).await.map(|_| buf)
        };
        let read_err = async {
            let mut buf = Vec::new();
            stderr.read_to_end(&mut buf).await.map(|_| buf)
        };
        let finished = async {
            let (out, err) = tokio::join!(read_out, read_err);
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out?, err?))
        };
        let (status, out, err) = tokio::select! {
            r = finished => r?,
            () = cancel.cancelled() => {
                return Ok(Executed { status: None, rows: None, stderr_tail: "stopped: the server shut down".into() });
            }
        };
        let tail_from = err.len().saturating_sub(TAIL);
        Ok(Executed {
            status: status.code(),
            rows: rows_of(&out),
            stderr_tail: String::from_utf8_lossy(&err[tail_from..]).trim().to_string(),
        })
    }
}

/// The row count in a command's JSON summary, if any.
fn rows_of(stdout: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(stdout).ok()?;
    ["rows_written", "rows", "decided", "counted", "written"]
        .iter()
        .find_map(|k| v.get(*k).and_then(serde_json::Value::as_i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_expand_in_every_argument() {
        let ms = chrono::DateTime::parse_from_rfc3339("2026-12-07T06:00:00Z")
            .expect("t")
            .timestamp_millis();
        let args = vec![
            "--into".to_string(),
            "sends_{date}".to_string(),
            "run_{datetime}".to_string(),
        ];
        assert_eq!(
            expand(&args, ms),
            vec!["--into", "sends_20261207", "run_20261207T060000Z"]
        );
    }

    #[test]
    fn row_counts_are_read_from_json_summaries() {
        assert_eq!(rows_of(br#"{"rows_written": 5, "rows": 9}"#), Some(5));
        assert_eq!(rows_of(br#"{"decided": 7}"#), Some(7));
        assert_eq!(rows_of(b"not json"), None);
    }
}
