//! The append-only change log: every change, who made it, what it touched.

use crate::error::{Result, StoreError};
use crate::records::ChangeEvent;
use crate::rows::{ChangeRow, convert_all};
use crate::store::{Store, on_pool};

pub(crate) const INSERT_CHANGE: &str = "INSERT INTO change_events \
     (occurred_at, actor, kind, subject, details) VALUES ($1, $2, $3, $4, $5)";

const RECENT: &str = "SELECT id, occurred_at, actor, kind, subject, details FROM change_events \
     ORDER BY occurred_at DESC, id DESC LIMIT $1";

// `substr`/`length` count characters on both backends, and unlike LIKE they
// treat `%` and `_` in the prefix literally.
const RECENT_WITH_PREFIX: &str = "SELECT id, occurred_at, actor, kind, subject, details \
     FROM change_events WHERE substr(subject, 1, length($1)) = $1 \
     ORDER BY occurred_at DESC, id DESC LIMIT $2";

/// A change to append inside the transaction that makes it.
pub(crate) struct NewChange<'a> {
    pub(crate) at_ms: i64,
    pub(crate) actor: &'a str,
    pub(crate) kind: &'static str,
    pub(crate) subject: String,
    pub(crate) details: serde_json::Value,
}

/// Appends a [`NewChange`] through `$conn` (a connection inside the
/// transaction making the change), returning early on error.
macro_rules! append_change {
    ($conn:expr, $change:expr) => {{
        let change: $crate::changes::NewChange<'_> = $change;
        sqlx::query($crate::changes::INSERT_CHANGE)
            .bind(change.at_ms)
            .bind(change.actor)
            .bind(change.kind)
            .bind(&change.subject)
            .bind($crate::rows::json_to_text(&change.details))
            .execute($conn)
            .await?;
    }};
}
pub(crate) use append_change;

impl Store {
    /// The newest `limit` changes, newest first, optionally only those whose
    /// subject starts with `subject_prefix` (e.g. `"model/bc-lr/"`).
    pub async fn list_changes(&self, limit: i64, subject_prefix: Option<&str>) -> Result<Vec<ChangeEvent>> {
        if limit < 0 {
            return Err(StoreError::Invalid(format!(
                "change limit {limit} is negative; pass zero or more"
            )));
        }
        let rows: Vec<ChangeRow> = on_pool!(self, |pool| match subject_prefix {
            Some(prefix) => {
                sqlx::query_as(RECENT_WITH_PREFIX)
                    .bind(prefix)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
            None => sqlx::query_as(RECENT).bind(limit).fetch_all(pool).await?,
        });
        convert_all(rows)
    }
}
