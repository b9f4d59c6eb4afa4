//! API tokens: who a bearer secret stands for, what it may do and until when.
//!
//! Only the sha256 of a secret is stored. A token has a public id (`tok_...`) that listings
//! show and revocation names; its scopes are kept as the space-separated names the issuer gave
//! (keel-auth knows what they mean). On PostgreSQL a revocation is announced on the
//! `keel_token_revoked` channel after it commits, so every server sharing the store forgets the
//! token at once ([`Store::watch_token_revocations`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use crate::changes::{NewChange, append_change};
use crate::error::{Result, StoreError, is_unique_violation_on, require_non_empty};
use crate::rows::{now_ms, time_from_ms};
use crate::store::{Pool, Store, in_write_tx, on_pool};

/// The PostgreSQL channel revocations are announced on (payload: the token id, or `*`).
const REVOKED_CHANNEL: &str = "keel_token_revoked";

/// A token to store.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub id: &'a str,
    pub principal: &'a str,
    /// The sha256 hex of the secret.
    pub token_hash: &'a str,
    pub label: Option<&'a str>,
    /// Scope names, space separated.
    pub scopes: &'a str,
    pub expires_at_ms: Option<i64>,
    /// Who issued it.
    pub by: &'a str,
}

/// A stored token (never its secret or hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenRecord {
    pub id: String,
    pub principal: String,
    pub label: Option<String>,
    /// Scope names, space separated.
    pub scopes: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    principal: String,
    label: Option<String>,
    scopes: String,
    created_at: i64,
    created_by: String,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;
    fn try_from(row: TokenRow) -> Result<TokenRecord> {
        Ok(TokenRecord {
            id: row.id,
            principal: row.principal,
            label: row.label,
            scopes: row.scopes,
            created_at: time_from_ms(row.created_at)?,
            created_by: row.created_by,
            expires_at: row.expires_at.map(time_from_ms).transpose()?,
            revoked_at: row.revoked_at.map(time_from_ms).transpose()?,
        })
    }
}

macro_rules! select_tokens {
    () => {
        "SELECT id, principal, label, COALESCE(scopes, '') AS scopes, created_at, created_by, \
         expires_at, revoked_at FROM api_tokens"
    };
}

/// Announcements of revoked tokens from other servers (PostgreSQL only).
pub struct TokenRevocations(sqlx::postgres::PgListener);

/// What [`TokenRevocations::next`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    /// This token id (`*`: every token of some principal) was revoked.
    Token(String),
    /// The connection was lost and re-established: announcements may have been missed.
    Reconnected,
}

impl TokenRevocations {
    /// Waits for the next announcement.
    pub async fn next(&mut self) -> Result<Revoked> {
        match self.0.try_recv().await? {
            Some(n) => Ok(Revoked::Token(n.payload().to_owned())),
            None => Ok(Revoked::Reconnected),
        }
    }
}

impl Store {
    /// Stores a token (the principal is created on first sight) and records it in the change
    /// log. Fails with a conflict if the id is taken.
    pub async fn create_token(&self, token: NewToken<'_>) -> Result<()> {
        require_non_empty("token id", token.id)?;
        self.ensure_principal(token.principal).await?;
        in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            sqlx::query(
                "INSERT INTO api_tokens (id, token_hash, principal, label, scopes, expires_at, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(token.id)
            .bind(token.token_hash)
            .bind(token.principal)
            .bind(token.label)
            .bind(token.scopes)
            .bind(token.expires_at_ms)
            .bind(at_ms)
            .bind(token.by)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation_on(&e, "api_tokens_id") || is_unique_violation_on(&e, "api_tokens.id") {
                    StoreError::conflict(format!("a token with id {} exists; pick another id", token.id))
                } else {
                    e.into()
                }
            })?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: token.by,
                    kind: "token.create",
                    subject: format!("principal/{}/token/{}", token.principal, token.id),
                    details: json!({
                        "id": token.id,
                        "principal": token.principal,
                        "label": token.label,
                        "scopes": token.scopes,
                        "expires_at_ms": token.expires_at_ms,
                    }),
                }
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// The token whose secret hashes to `token_hash`, revoked or not.
    pub async fn token_by_hash(&self, token_hash: &str) -> Result<Option<TokenRecord>> {
        let row: Option<TokenRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            select_tokens!(),
            " WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(pool)
        .await?);
        row.map(TokenRecord::try_from).transpose()
    }

    /// The token `id`, revoked or not.
    pub async fn token_by_id(&self, id: &str) -> Result<Option<TokenRecord>> {
        let row: Option<TokenRow> = on_pool!(self, |pool| sqlx::query_as(concat!(select_tokens!(), " WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?);
        row.map(TokenRecord::try_from).transpose()
    }

    /// Tokens, newest first: all of them, or those of one principal.
    pub async fn list_tokens(&self, principal: Option<&str>) -> Result<Vec<TokenRecord>> {
        let rows: Vec<TokenRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            select_tokens!(),
            " WHERE ($1 IS NULL OR principal = $1) ORDER BY created_at DESC, id"
        ))
        .bind(principal)
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(TokenRecord::try_from).collect()
    }

    /// Revokes the token `id`; returns it as it was, or `None` if there is no such token.
    /// Revoking a revoked token changes nothing.
    pub async fn revoke_token(&self, id: &str, by: &str) -> Result<Option<TokenRecord>> {
        let Some(found) = self.token_by_id(id).await? else {
            return Ok(None);
        };
        if found.revoked_at.is_some() {
            return Ok(Some(found));
        }
        in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "token.revoke",
                    subject: format!("principal/{}/token/{id}", found.principal),
                    details: json!({ "id": id, "principal": found.principal }),
                }
            );
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        self.announce_revocation(id).await;
        Ok(Some(found))
    }

    /// Revokes every live token of `principal`; returns how many.
    pub async fn revoke_tokens(&self, principal: &str, by: &str) -> Result<u64> {
        let revoked = in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            let done = sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE principal = $1 AND revoked_at IS NULL")
                .bind(principal)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "token.revoke",
                    subject: format!("principal/{principal}/token"),
                    details: json!({ "principal": principal, "revoked": done.rows_affected() }),
                }
            );
            tx.commit().await?;
            Ok::<u64, StoreError>(done.rows_affected())
        })?;
        if revoked > 0 {
            self.announce_revocation("*").await;
        }
        Ok(revoked)
    }

    /// Announcements of revocations made by any server on this store; `None` on SQLite (one
    /// machine: servers there bound how long they trust a cached token instead).
    pub async fn watch_token_revocations(&self) -> Result<Option<TokenRevocations>> {
        match &self.pool {
            Pool::Sqlite(_) => Ok(None),
            Pool::Postgres(pool) => {
                let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
                listener.listen(REVOKED_CHANNEL).await?;
                Ok(Some(TokenRevocations(listener)))
            }
        }
    }

    /// Tells the other servers on a PostgreSQL store (after the revocation committed). A lost
    /// announcement is bounded by the servers' cache lifetime, so failure is only logged.
    async fn announce_revocation(&self, id: &str) {
        if let Pool::Postgres(pool) = &self.pool
            && let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
                .bind(REVOKED_CHANNEL)
                .bind(id)
                .execute(pool)
                .await
        {
            tracing::warn!(error = %e, "could not announce a token revocation; other servers forget it when their cache expires");
        }
    }
}
