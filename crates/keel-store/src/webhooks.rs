//! Webhooks: subscriptions to keel's events, and a durable outbox of deliveries.
//!
//! An event is written as one delivery row per subscribed webhook ([`Store::enqueue_event`]);
//! a deliverer claims due rows with a lease ([`Store::claim_deliveries`]), sends them and
//! records every attempt ([`Store::record_attempt`]), which either finishes the delivery or
//! sets its next attempt. A deliverer that dies leaves its claim to lapse and another takes it,
//! so an event is delivered at least once. The signing secret is never stored: a subscription
//! names the environment variable of the server that holds it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::changes::{NewChange, append_change};
use crate::error::{Result, StoreError, require_non_empty};
use crate::rows::{json_from_text, json_to_text, now_ms, time_from_ms};
use crate::store::{Store, in_write_tx, on_pool};

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookRecord {
    pub id: i64,
    /// Where events are posted. Shown to people only through [`redact_url`].
    #[serde(serialize_with = "ser_redacted")]
    pub url: String,
    /// Event names, or `*` for every event.
    pub events: Vec<String>,
    /// The server environment variable holding the signing secret (never the secret).
    pub secret_env: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

fn ser_redacted<S: serde::Serializer>(url: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

/// A URL as shown to people: scheme, host and port only, since chat webhooks carry their secret
/// in the path (`https://hooks.slack.com/…`) and a URL may carry a password before the host
/// (`https://user:secret@host`, shown as `https://…@host`).
pub fn redact_url(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let (scheme, rest) = url.split_at(start);
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = match authority.rfind('@') {
        Some(at) => format!("…@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    let path = if path.len() > 1 { "/…" } else { path };
    format!("{scheme}{host}{path}")
}

/// One event's delivery to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    pub event: String,
    pub payload: Value,
    /// `pending`, `delivering`, `delivered`, `failed` or `cancelled`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
}

/// A delivery a deliverer claimed, with where and how to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub url: String,
    pub secret_env: Option<String>,
}

/// What one attempt got.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
    /// The receiver took it (a 2xx).
    pub delivered: bool,
    /// When to try again (ms); `None` with `delivered` false: failed for good.
    pub retry_at: Option<i64>,
}

/// One recorded attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub delivery_id: i64,
    pub attempt: i64,
    pub at: DateTime<Utc>,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

#[derive(sqlx::FromRow)]
struct WebhookRow {
    id: i64,
    url: String,
    events: String,
    secret_env: Option<String>,
    created_at: i64,
    created_by: String,
}

impl TryFrom<WebhookRow> for WebhookRecord {
    type Error = StoreError;
    fn try_from(r: WebhookRow) -> Result<WebhookRecord> {
        let events = json_from_text("events", &r.events)?;
        Ok(WebhookRecord {
            id: r.id,
            url: r.url,
            events: serde_json::from_value(events).unwrap_or_default(),
            secret_env: r.secret_env,
            created_at: time_from_ms(r.created_at)?,
            created_by: r.created_by,
        })
    }
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    webhook_id: i64,
    event: String,
    payload: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    created_at: i64,
    finished_at: Option<i64>,
    last_status_code: Option<i64>,
    last_error: Option<String>,
}

impl TryFrom<DeliveryRow> for Delivery {
    type Error = StoreError;
    fn try_from(r: DeliveryRow) -> Result<Delivery> {
        Ok(Delivery {
            id: r.id,
            webhook_id: r.webhook_id,
            event: r.event,
            payload: json_from_text("payload", &r.payload)?,
            status: r.status,
            attempts: r.attempts,
            next_attempt_at: time_from_ms(r.next_attempt_at)?,
            created_at: time_from_ms(r.created_at)?,
            finished_at: r.finished_at.map(time_from_ms).transpose()?,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
        })
    }
}

macro_rules! select_deliveries {
    () => {
        "SELECT id, webhook_id, event, payload, status, attempts, next_attempt_at, created_at, finished_at, \
         last_status_code, last_error FROM webhook_deliveries"
    };
}

macro_rules! select_webhooks {
    () => {
        "SELECT id, url, events, secret_env, created_at, created_by FROM webhooks"
    };
}

impl Store {
    /// Subscribes `url` to `events` (`*` for all), logged as `webhook.added` (without the
    /// URL's path, which may hold a secret).
    pub async fn add_webhook(
        &self,
        url: &str,
        events: &[String],
        secret_env: Option<&str>,
        by: &str,
    ) -> Result<WebhookRecord> {
        require_non_empty("webhook url", url)?;
        require_non_empty("actor", by)?;
        if events.is_empty() {
            return Err(StoreError::Invalid(
                "a webhook needs at least one event (or * for every event)".into(),
            ));
        }
        let at = now_ms();
        let id: i64 = in_write_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO webhooks (url, events, secret_env, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(url)
            .bind(json_to_text(&json!(events)))
            .bind(secret_env)
            .bind(at)
            .bind(by)
            .fetch_one(&mut *tx)
            .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: by,
                    kind: "webhook.added",
                    subject: format!("webhook/{id}"),
                    details: json!({"url": redact_url(url), "events": events, "secret_env": secret_env}),
                }
            );
            tx.commit().await?;
            id
        });
        self.webhook(id).await
    }

    pub async fn webhook(&self, id: i64) -> Result<WebhookRecord> {
        let row: Option<WebhookRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(select_webhooks!(), " WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| webhook_not_found(id))?.try_into()
    }

    /// Every subscription, oldest first.
    pub async fn list_webhooks(&self) -> Result<Vec<WebhookRecord>> {
        let rows: Vec<WebhookRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(select_webhooks!(), " ORDER BY id"))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Removes a subscription; its deliveries not yet made are cancelled (the record stays).
    pub async fn remove_webhook(&self, id: i64, by: &str) -> Result<()> {
        let at = now_ms();
        in_write_tx!(self, |tx| {
            let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(webhook_not_found(id));
            }
            sqlx::query(
                "UPDATE webhook_deliveries SET status = 'cancelled', finished_at = $2 \
                 WHERE webhook_id = $1 AND status IN ('pending', 'delivering')",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: by,
                    kind: "webhook.removed",
                    subject: format!("webhook/{id}"),
                    details: json!({}),
                }
            );
            tx.commit().await?;
        });
        Ok(())
    }

    /// Queues `event` for every webhook subscribed to it, in one transaction; how many.
    pub async fn enqueue_event(&self, event: &str, payload: &Value) -> Result<usize> {
        let hooks = self.list_webhooks().await?;
        let targets: Vec<i64> = hooks
            .iter()
            .filter(|h| h.events.iter().any(|e| e == "*" || e == event))
            .map(|h| h.id)
            .collect();
        if targets.is_empty() {
            return Ok(0);
        }
        let at = now_ms();
        let text = json_to_text(payload);
        in_write_tx!(self, |tx| {
            for id in &targets {
                sqlx::query(
                    "INSERT INTO webhook_deliveries (webhook_id, event, payload, status, attempts, next_attempt_at, created_at) \
                     VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
                )
                .bind(id)
                .bind(event)
                .bind(&text)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(targets.len())
    }

    /// Claims up to `limit` deliveries due at `now_ms` (waiting ones, and claims that lapsed)
    /// until `lease_until`, oldest first.
    pub async fn claim_deliveries(&self, now_ms: i64, lease_until: i64, limit: i64) -> Result<Vec<DueDelivery>> {
        let due: Vec<DeliveryRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
                select_deliveries!(),
                " WHERE (status = 'pending' AND next_attempt_at <= $1) OR (status = 'delivering' AND lease_until < $1) \
                 ORDER BY next_attempt_at, id LIMIT $2"
            ))
            .bind(now_ms)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let mut out = Vec::new();
        for row in due {
            let taken = on_pool!(self, |pool| {
                sqlx::query(
                    "UPDATE webhook_deliveries SET status = 'delivering', lease_until = $3 WHERE id = $1 \
                     AND ((status = 'pending' AND next_attempt_at <= $2) OR (status = 'delivering' AND lease_until < $2))",
                )
                .bind(row.id)
                .bind(now_ms)
                .bind(lease_until)
                .execute(pool)
                .await?
            .rows_affected()
            });
            if taken == 0 {
                continue;
            }
            let hook = match self.webhook(row.webhook_id).await {
                Ok(h) => h,
                Err(StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            let mut delivery: Delivery = row.try_into()?;
            delivery.status = "delivering".into();
            out.push(DueDelivery {
                delivery,
                url: hook.url,
                secret_env: hook.secret_env,
            });
        }
        Ok(out)
    }

    /// Records one attempt of a claimed delivery and moves it on: delivered, waiting for its
    /// retry, or failed for good.
    pub async fn record_attempt(&self, delivery_id: i64, attempt: &Attempt) -> Result<()> {
        let at = now_ms();
        in_write_tx!(self, |tx| {
            let attempts: Option<i64> = sqlx::query_scalar("SELECT attempts FROM webhook_deliveries WHERE id = $1")
                .bind(delivery_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(attempts) = attempts else {
                return Err(StoreError::not_found(format!(
                    "webhook delivery {delivery_id} does not exist"
                )));
            };
            let n = attempts + 1;
            sqlx::query(
                "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error, duration_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(delivery_id)
            .bind(n)
            .bind(at)
            .bind(attempt.status_code)
            .bind(attempt.error.as_deref())
            .bind(attempt.duration_ms)
            .execute(&mut *tx)
            .await?;
            let (status, next, finished) = match (attempt.delivered, attempt.retry_at) {
                (true, _) => ("delivered", at, Some(at)),
                (false, Some(retry)) => ("pending", retry, None),
                (false, None) => ("failed", at, Some(at)),
            };
            sqlx::query(
                "UPDATE webhook_deliveries SET status = $2, attempts = $3, next_attempt_at = $4, finished_at = $5, \
                 lease_until = NULL, last_status_code = $6, last_error = $7 WHERE id = $1 AND status = 'delivering'",
            )
            .bind(delivery_id)
            .bind(status)
            .bind(n)
            .bind(next)
            .bind(finished)
            .bind(attempt.status_code)
            .bind(attempt.error.as_deref())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The newest `limit` deliveries (of one webhook, or all), newest first.
    pub async fn list_deliveries(&self, webhook: Option<i64>, limit: i64) -> Result<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = on_pool!(self, |pool| match webhook {
            Some(id) => {
                sqlx::query_as(concat!(
                    select_deliveries!(),
                    " WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2"
                ))
                .bind(id)
                .bind(limit)
                .fetch_all(pool)
                .await?
            }
            None => {
                sqlx::query_as(concat!(select_deliveries!(), " ORDER BY id DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Every attempt of one delivery, in order.
    pub async fn delivery_attempts(&self, delivery_id: i64) -> Result<Vec<AttemptRecord>> {
        #[derive(sqlx::FromRow)]
        struct Row {
            delivery_id: i64,
            attempt: i64,
            at: i64,
            status_code: Option<i64>,
            error: Option<String>,
            duration_ms: i64,
        }
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT delivery_id, attempt, at, status_code, error, duration_ms FROM webhook_attempts \
                 WHERE delivery_id = $1 ORDER BY attempt",
            )
            .bind(delivery_id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(AttemptRecord {
                    delivery_id: r.delivery_id,
                    attempt: r.attempt,
                    at: time_from_ms(r.at)?,
                    status_code: r.status_code,
                    error: r.error,
                    duration_ms: r.duration_ms,
                })
            })
            .collect()
    }
}

fn webhook_not_found(id: i64) -> StoreError {
    StoreError::not_found(format!("there is no webhook {id}; `keel webhook ls` lists them"))
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn a_redacted_url_keeps_only_the_scheme_host_and_port() {
        for (url, shown) in [
            (
                "https://hooks.slack.com/services/T0/B0/XYZ",
                "https://hooks.slack.com/…",
            ),
            ("http://127.0.0.1:9000/hook?token=abc", "http://127.0.0.1:9000/…"),
            ("https://user:hunter2@example.com/x", "https://…@example.com/…"),
            ("https://token@example.com", "https://…@example.com"),
            ("https://example.com/", "https://example.com/"),
            ("https://example.com", "https://example.com"),
            ("ftp://a:b@host", "ftp://…@host"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
