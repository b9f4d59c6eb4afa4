//! Aliases: movable names for model versions, with their full history.

use serde_json::json;

use crate::changes::{NewChange, append_change};
use crate::error::{Result, StoreError, require_non_empty};
use crate::records::{Alias, AliasEvent};
use crate::rows::{AliasEventRow, AliasRow, convert_all, now_ms, time_from_ms};
use crate::store::{Store, in_write_tx, on_pool};

/// A no-op write that locks the model row until the transaction ends, so
/// alias moves on one model are serialised on PostgreSQL and each event's
/// `from_version` is exact. Affects zero rows when the model does not exist.
const LOCK_MODEL: &str = "UPDATE models SET updated_at = updated_at WHERE name = $1";

const MODEL_EXISTS: &str = "SELECT COUNT(*) FROM models WHERE name = $1";

const VERSION_EXISTS: &str = "SELECT COUNT(*) FROM model_versions WHERE model = $1 AND version = $2";

const GET_ALIAS: &str = "SELECT model, alias, version, updated_at, updated_by FROM aliases \
     WHERE model = $1 AND alias = $2";

const LIST_ALIASES: &str = "SELECT model, alias, version, updated_at, updated_by FROM aliases WHERE model = $1";

const UPSERT_ALIAS: &str = "INSERT INTO aliases (model, alias, version, updated_at, updated_by) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model, alias) DO UPDATE SET \
     version = excluded.version, updated_at = excluded.updated_at, updated_by = excluded.updated_by";

const DELETE_ALIAS: &str = "DELETE FROM aliases WHERE model = $1 AND alias = $2";

const INSERT_EVENT: &str = "INSERT INTO alias_events \
     (model, alias, from_version, to_version, occurred_at, actor, reason) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

const HISTORY: &str = "SELECT model, alias, from_version, to_version, occurred_at, actor, reason \
     FROM alias_events WHERE model = $1 ORDER BY occurred_at, id";

const HISTORY_OF_ALIAS: &str = "SELECT model, alias, from_version, to_version, occurred_at, \
     actor, reason FROM alias_events WHERE model = $1 AND alias = $2 ORDER BY occurred_at, id";

impl Store {
    /// Points `alias` at `version` of `model`, recording an alias event and an
    /// `alias.set` change in the same transaction. Setting an alias to the
    /// version it already has changes nothing and returns it as it is.
    pub async fn set_alias(
        &self,
        model: &str,
        alias: &str,
        version: i64,
        by: &str,
        reason: Option<&str>,
    ) -> Result<Alias> {
        require_non_empty("model name", model)?;
        require_non_empty("alias name", alias)?;
        require_non_empty("actor", by)?;
        let at_ms = in_write_tx!(self, |tx| {
            sqlx::query(LOCK_MODEL).bind(model).execute(&mut *tx).await?;
            // Read the clock only once the model is locked, so event times
            // follow the order in which the changes were made.
            let at_ms = now_ms();
            let found: i64 = sqlx::query_scalar(VERSION_EXISTS)
                .bind(model)
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
            if found == 0 {
                return Err(StoreError::not_found(format!(
                    "cannot point alias '{alias}' at version {version}: model '{model}' has no version {version}; \
                     list the model's versions and pick one that exists"
                )));
            }
            let previous: Option<AliasRow> = sqlx::query_as(GET_ALIAS)
                .bind(model)
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await?;
            let from_version = match previous {
                Some(row) if row.version == version => return row.try_into(),
                Some(row) => Some(row.version),
                None => None,
            };
            sqlx::query(UPSERT_ALIAS)
                .bind(model)
                .bind(alias)
                .bind(version)
                .bind(at_ms)
                .bind(by)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_EVENT)
                .bind(model)
                .bind(alias)
                .bind(from_version)
                .bind(Some(version))
                .bind(at_ms)
                .bind(by)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            let change = NewChange {
                at_ms,
                actor: by,
                kind: "alias.set",
                subject: alias_subject(model, alias),
                details: json!({
                    "model": model,
                    "alias": alias,
                    "from_version": from_version,
                    "to_version": version,
                    "reason": reason,
                }),
            };
            append_change!(&mut *tx, change);
            tx.commit().await?;
            at_ms
        });
        Ok(Alias {
            model: model.to_owned(),
            alias: alias.to_owned(),
            version,
            updated_at: time_from_ms(at_ms)?,
            updated_by: by.to_owned(),
        })
    }

    /// Removes `alias` from `model`, recording an alias event (with no
    /// `to_version`, with the reason) and an `alias.delete` change in the same transaction.
    pub async fn delete_alias(&self, model: &str, alias: &str, by: &str, reason: Option<&str>) -> Result<()> {
        require_non_empty("model name", model)?;
        require_non_empty("alias name", alias)?;
        require_non_empty("actor", by)?;
        in_write_tx!(self, |tx| {
            sqlx::query(LOCK_MODEL).bind(model).execute(&mut *tx).await?;
            // Read the clock only once the model is locked, so event times
            // follow the order in which the changes were made.
            let at_ms = now_ms();
            let previous: Option<AliasRow> = sqlx::query_as(GET_ALIAS)
                .bind(model)
                .bind(alias)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(previous) = previous else {
                return Err(alias_not_found(model, alias));
            };
            sqlx::query(DELETE_ALIAS)
                .bind(model)
                .bind(alias)
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT_EVENT)
                .bind(model)
                .bind(alias)
                .bind(Some(previous.version))
                .bind(None::<i64>)
                .bind(at_ms)
                .bind(by)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            let change = NewChange {
                at_ms,
                actor: by,
                kind: "alias.delete",
                subject: alias_subject(model, alias),
                details: json!({
                    "model": model,
                    "alias": alias,
                    "from_version": previous.version,
                    "reason": reason,
                }),
            };
            append_change!(&mut *tx, change);
            tx.commit().await?;
        });
        Ok(())
    }

    /// One alias of a model.
    pub async fn get_alias(&self, model: &str, alias: &str) -> Result<Alias> {
        let row: Option<AliasRow> = on_pool!(self, |pool| {
            sqlx::query_as(GET_ALIAS)
                .bind(model)
                .bind(alias)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| alias_not_found(model, alias))?.try_into()
    }

    /// Every alias of a model, sorted by alias name.
    pub async fn list_aliases(&self, model: &str) -> Result<Vec<Alias>> {
        self.require_model(model).await?;
        let rows: Vec<AliasRow> = on_pool!(self, |pool| {
            sqlx::query_as(LIST_ALIASES).bind(model).fetch_all(pool).await?
        });
        let mut aliases: Vec<Alias> = convert_all(rows)?;
        aliases.sort_by(|a, b| a.alias.cmp(&b.alias));
        Ok(aliases)
    }

    /// Every move of one alias (or of all aliases) of a model, oldest first.
    pub async fn alias_history(&self, model: &str, alias: Option<&str>) -> Result<Vec<AliasEvent>> {
        self.require_model(model).await?;
        let rows: Vec<AliasEventRow> = on_pool!(self, |pool| match alias {
            Some(alias) => {
                sqlx::query_as(HISTORY_OF_ALIAS)
                    .bind(model)
                    .bind(alias)
                    .fetch_all(pool)
                    .await?
            }
            None => sqlx::query_as(HISTORY).bind(model).fetch_all(pool).await?,
        });
        convert_all(rows)
    }

    async fn require_model(&self, model: &str) -> Result<()> {
        let count: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar(MODEL_EXISTS).bind(model).fetch_one(pool).await?
        });
        if count == 0 {
            return Err(crate::models::model_not_found(model));
        }
        Ok(())
    }
}

fn alias_subject(model: &str, alias: &str) -> String {
    format!("model/{model}/alias/{alias}")
}

fn alias_not_found(model: &str, alias: &str) -> StoreError {
    StoreError::not_found(format!(
        "model '{model}' has no alias '{alias}'; list the model's aliases or set this one first"
    ))
}
