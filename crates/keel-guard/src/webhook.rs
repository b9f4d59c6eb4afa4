//! The one webhook sender, its signatures, and keel's events delivered through the store's
//! outbox.
//!
//! - [`post`] sends one JSON body and waits (bounded) for the answer; alert notifications
//!   ([`crate::alert::send`]), schedule failure notices and event deliveries all go through it.
//! - [`sign`]: `keel-signature: t=UNIX_SECONDS,v1=HEX` where `HEX` is HMAC-SHA256 of
//!   `"{t}.{body}"` under the subscription's secret, as Stripe signs its webhooks. A receiver
//!   recomputes it over the raw body, compares in constant time, and refuses a `t` older than a
//!   few minutes (replays). [`verify`] does exactly that.
//! - [`Events::emit`] queues an event for every subscribed webhook in the store (durable, so an
//!   event raised by the command line is delivered by whichever `keel serve` runs); a failure
//!   to queue is logged and counted, never returned to the change that raised it.
//! - [`Deliverer`] is the loop `keel serve` runs: it claims due deliveries with a lease, posts
//!   them signed, records every attempt, and retries failures with exponential backoff up to
//!   [`RetryPolicy::max_attempts`].

use std::time::{Duration, Instant};

use hmac::{KeyInit, Mac};
use keel_store::{Attempt, PendingChange, Store};
use serde_json::{Value, json};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "keel-signature";
/// The header naming the event.
pub const EVENT_HEADER: &str = "keel-event";
/// The header carrying the delivery's id (the same on every retry: receivers deduplicate by it).
pub const DELIVERY_HEADER: &str = "keel-delivery";

/// Every event keel raises.
pub const EVENTS: [&str; 8] = [
    "model.pushed",
    "alias.moved",
    "deployment.changed",
    "alert.fired",
    "schedule.run",
    "change.pending",
    "change.approved",
    "change.rejected",
];

/// Refuses a subscription no delivery could honour: `url` must be http(s), every event one of
/// [`EVENTS`] (or `*`), and `secret_env` the NAME of the server's environment variable holding
/// the signing secret, never the secret. The one rule for the CLI (`keel webhook add`) and the
/// API (`POST /v1/webhooks`).
pub fn check_subscription(url: &str, events: &[String], secret_env: Option<&str>) -> crate::Result<()> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(crate::invalid(
            "webhook",
            format!(
                "{} is not an http(s) URL: give the address events are posted to",
                keel_store::redact_url(url)
            ),
        ));
    }
    if let Some(bad) = events.iter().find(|e| *e != "*" && !EVENTS.contains(&e.as_str())) {
        return Err(crate::invalid(
            "webhook",
            format!("unknown event {bad:?}: use * or some of {}", EVENTS.join(", ")),
        ));
    }
    if let Some(var) = secret_env
        && (var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(crate::invalid(
            "webhook",
            "the secret's environment variable is given by its NAME (e.g. KEEL_HOOK_SECRET), never the secret itself",
        ));
    }
    Ok(())
}

/// One delivery with every attempt made so far.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivered {
    pub delivery: keel_store::Delivery,
    pub attempts: Vec<keel_store::AttemptRecord>,
}

/// The newest `limit` deliveries (of `webhook`, or of every webhook), each with its attempts.
pub async fn deliveries(store: &Store, webhook: Option<i64>, limit: i64) -> keel_store::Result<Vec<Delivered>> {
    let mut out = Vec::new();
    for delivery in store.list_deliveries(webhook, limit).await? {
        let attempts = store.delivery_attempts(delivery.id).await?;
        out.push(Delivered { delivery, attempts });
    }
    Ok(out)
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The `keel-signature` value of `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a `keel-signature` value against the raw body: the HMAC must match (compared in
/// constant time) and the timestamp be within `tolerance_seconds` of `now` (Unix seconds).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_seconds: i64) -> bool {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => signatures.extend(hex::decode(s).ok()),
            _ => {}
        }
    }
    let Some(t) = timestamp else { return false };
    if (now - t).abs() > tolerance_seconds {
        return false;
    }
    signatures.iter().any(|s| {
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(s).is_ok()
    })
}

/// Why a post failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    Timeout,
    Status(u16),
    Transport(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Status(s) => write!(f, "HTTP {s}"),
            Failure::Transport(e) => f.write_str(e),
        }
    }
}

/// Posts `body` (JSON) to `url` with `headers`, waiting at most `timeout`; a 2xx is success.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
    timeout: Duration,
) -> Result<u16, Failure> {
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Err(e)) if e.is_timeout() => Err(Failure::Timeout),
        // The error's chain names the cause; the URL (which may hold a secret) is left out.
        Ok(Err(e)) => Err(Failure::Transport(e.without_url().to_string())),
        Ok(Ok(r)) if r.status().is_success() => Ok(r.status().as_u16()),
        Ok(Ok(r)) => Err(Failure::Status(r.status().as_u16())),
    }
}

/// Raises keel's events into the store's webhook outbox.
#[derive(Clone)]
pub struct Events {
    store: Store,
}

impl Events {
    pub fn new(store: Store) -> Events {
        Events { store }
    }

    /// Queues `event` with `data` for every subscribed webhook. Never fails the caller: a store
    /// error is logged and counted in `keel_webhook_events_total{result="not_queued"}`.
    pub async fn emit(&self, event: &str, data: Value) {
        let payload = json!({
            "event": event,
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "data": data,
        });
        let result = match self.store.enqueue_event(event, &payload).await {
            Ok(_) => "queued",
            Err(e) => {
                tracing::warn!(event, error = %e, "webhook event not queued");
                "not_queued"
            }
        };
        metrics::counter!("keel_webhook_events_total", "event" => event.to_string(), "result" => result).increment(1);
    }

    /// `change.pending`, `change.approved` or `change.rejected` for a held change.
    pub async fn change(&self, event: &str, c: &PendingChange) {
        let data = json!({
            "id": c.id, "kind": c.kind, "subject": c.subject, "status": c.status, "diff": c.diff,
            "rule": c.rule, "requested_by": c.requested_by, "decided_by": c.decided_by,
            "note": c.note, "git_commit": c.git_commit,
        });
        self.emit(event, data).await;
    }
}

static INSTALLED: std::sync::OnceLock<Events> = std::sync::OnceLock::new();

/// Makes `events` the process's outbox for events raised where no store is at hand (alert
/// firings, raised by [`crate::alert::notify_all`]); `keel serve` installs its store's at start.
/// A second installation is ignored.
pub fn install(events: Events) {
    let _ = INSTALLED.set(events);
}

/// The installed outbox, if any.
pub fn installed() -> Option<Events> {
    INSTALLED.get().cloned()
}

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: i64,
    /// The wait after the first failure; doubled after each next one, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// How long one attempt may take.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 6 attempts over about 5 minutes: after 10 s, 20 s, 40 s, 80 s, 160 s.
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 6,
            first_backoff: Duration::from_secs(10),
            max_backoff: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `attempt`-th failure (1-based).
    pub fn backoff(&self, attempt: i64) -> Duration {
        let factor = 2u32.saturating_pow(u32::try_from(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
        self.first_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// The loop that drains the outbox.
pub struct Deliverer {
    store: Store,
    client: reqwest::Client,
    retry: RetryPolicy,
    /// Reads a secret by its environment variable name (the process environment in a server).
    secret: fn(&str) -> Option<String>,
}

impl Deliverer {
    pub fn new(store: Store, client: reqwest::Client, retry: RetryPolicy) -> Deliverer {
        Deliverer {
            store,
            client,
            retry,
            secret: |name| std::env::var(name).ok(),
        }
    }

    /// Delivers until `stop` is cancelled, looking for due deliveries every `every`.
    pub async fn run(self, every: Duration, stop: tokio_util::sync::CancellationToken) {
        loop {
            if let Err(e) = self.deliver_due().await {
                tracing::warn!(error = %e, "webhook deliverer: the outbox could not be read");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    /// One pass: claims what is due and sends it; how many were attempted.
    pub async fn deliver_due(&self) -> Result<usize, keel_store::StoreError> {
        let now = chrono::Utc::now().timestamp_millis();
        let lease = now + 2 * self.retry.timeout.as_millis() as i64 + 5_000;
        let due = self.store.claim_deliveries(now, lease, 32).await?;
        let n = due.len();
        for d in due {
            let body = keel_store_payload(&d.delivery.payload);
            let mut headers = vec![
                (EVENT_HEADER, d.delivery.event.clone()),
                (DELIVERY_HEADER, d.delivery.id.to_string()),
            ];
            let secret = d.secret_env.as_deref().map(|name| (name, (self.secret)(name)));
            let outcome = match secret {
                Some((name, None)) => Err(Failure::Transport(format!(
                    "the signing secret's variable {name} is not set in keel serve's environment; set it and the delivery is retried"
                ))),
                Some((_, Some(secret))) => {
                    let t = chrono::Utc::now().timestamp();
                    headers.push((SIGNATURE_HEADER, sign(secret.as_bytes(), t, &body)));
                    Ok(())
                }
                None => Ok(()),
            };
            let started = Instant::now();
            let result = match outcome {
                Ok(()) => post(&self.client, &d.url, body, &headers, self.retry.timeout).await,
                Err(e) => Err(e),
            };
            let attempt_no = d.delivery.attempts + 1;
            let attempt = match &result {
                Ok(status) => Attempt {
                    status_code: Some(i64::from(*status)),
                    error: None,
                    duration_ms: started.elapsed().as_millis() as i64,
                    delivered: true,
                    retry_at: None,
                },
                Err(e) => Attempt {
                    status_code: match e {
                        Failure::Status(s) => Some(i64::from(*s)),
                        _ => None,
                    },
                    error: Some(e.to_string()),
                    duration_ms: started.elapsed().as_millis() as i64,
                    delivered: false,
                    retry_at: (attempt_no < self.retry.max_attempts).then(|| {
                        chrono::Utc::now().timestamp_millis() + self.retry.backoff(attempt_no).as_millis() as i64
                    }),
                },
            };
            let label = match (&result, attempt.retry_at) {
                (Ok(_), _) => "delivered",
                (Err(_), Some(_)) => "retrying",
                (Err(_), None) => "failed",
            };
            metrics::counter!("keel_webhook_deliveries_total", "result" => label).increment(1);
            if let Err(e) = &result {
                tracing::warn!(delivery = d.delivery.id, event = %d.delivery.event, attempt = attempt_no, error = %e, "webhook delivery failed");
            }
            self.store.record_attempt(d.delivery.id, &attempt).await?;
        }
        Ok(n)
    }
}

/// The exact bytes sent: the stored payload as compact JSON.
fn keel_store_payload(payload: &Value) -> Vec<u8> {
    serde_json::to_vec(payload).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscription_no_delivery_could_honour_is_refused_saying_why() {
        let events = |e: &[&str]| e.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let refused = |url: &str, e: &[&str], secret: Option<&str>| {
            check_subscription(url, &events(e), secret)
                .expect_err("refused")
                .to_string()
        };
        assert!(check_subscription("https://hooks.example/keel", &events(&["*"]), Some("KEEL_HOOK_SECRET")).is_ok());
        assert!(check_subscription("http://127.0.0.1:9/x", &events(&["alias.moved", "alert.fired"]), None).is_ok());
        // The URL is redacted in the message (it may carry a token).
        let bad_url = refused("ftp://user:hunter2@hooks.example", &["*"], None);
        assert!(
            bad_url.contains("not an http(s) URL") && !bad_url.contains("hunter2"),
            "{bad_url}"
        );
        let bad_event = refused("https://h.example", &["alias.moved", "model.deleted"], None);
        assert!(
            bad_event.contains("\"model.deleted\"") && bad_event.contains("alias.moved"),
            "{bad_event}"
        );
        for secret in ["", "s3cr3t-value!", "export X=1"] {
            let bad = refused("https://h.example", &["*"], Some(secret));
            assert!(
                bad.contains("by its NAME") && (secret.is_empty() || !bad.contains(secret)),
                "{bad}"
            );
        }
    }

    #[test]
    fn signatures_verify_only_with_the_secret_the_body_and_a_fresh_time() {
        let body = br#"{"event":"alias.moved"}"#;
        let header = sign(b"s3cret", 1_700_000_000, body);
        assert!(header.starts_with("t=1700000000,v1="), "{header}");
        assert!(verify(b"s3cret", &header, body, 1_700_000_100, 300));
        assert!(!verify(b"other", &header, body, 1_700_000_100, 300));
        assert!(!verify(
            b"s3cret",
            &header,
            br#"{"event":"alias.moved "}"#,
            1_700_000_100,
            300
        ));
        assert!(!verify(b"s3cret", &header, body, 1_700_001_000, 300), "too old");
        assert!(!verify(b"s3cret", "v1=00", body, 1_700_000_000, 300), "no time");
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let r = RetryPolicy {
            max_attempts: 10,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
        };
        let waits: Vec<u64> = (1..=5).map(|a| r.backoff(a).as_secs()).collect();
        assert_eq!(waits, vec![1, 2, 4, 5, 5]);
    }
}
