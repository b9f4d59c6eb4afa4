//! keel's API tokens: issuing, verifying, listing and revoking them.
//!
//! A token's secret is `keel_` and 64 random hex digits, shown once when it is issued; the
//! store keeps its sha256 only. Rules: anyone may issue tokens for themselves, workspace admins
//! for anyone; only workspace admins may issue or hold the `admin` scope's power over others
//! (issuing `admin` requires being a workspace admin); anyone may list and revoke their own
//! tokens, admins everyone's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_catalog::{Actor, Catalog};
use keel_store::{NewToken, Store, TokenRecord};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{AuthError, Credential, Principal, Scope, Scopes};

/// How every keel token secret starts (so a server can tell one from a JWT at a glance).
pub const SECRET_PREFIX: &str = "keel_";

/// The sha256 hex of a secret, the only form in which it is stored.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A token to issue.
#[derive(Debug, Clone)]
pub struct TokenRequest<'a> {
    /// Who the token acts as.
    pub principal: &'a str,
    pub scopes: Scopes,
    pub label: Option<&'a str>,
    /// How long it is valid; `None`: until revoked.
    pub expires_in: Option<Duration>,
}

/// A token just issued: the only time its secret is seen.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedToken {
    pub id: String,
    pub secret: String,
    pub principal: String,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Issues a token (see the module's rules) and records it in the change log as `by`'s act.
pub async fn issue(catalog: &Catalog, by: &Actor, request: TokenRequest<'_>) -> Result<IssuedToken, AuthError> {
    if request.scopes.is_empty() {
        return Err(AuthError::Invalid(format!(
            "name at least one --scope: {}",
            Scope::ALL.map(Scope::as_str).join(", ")
        )));
    }
    if !by.is_admin && by.name != request.principal {
        return Err(forbidden(
            by,
            format!("create a token for {}", request.principal),
            "only workspace admins create tokens for others",
        ));
    }
    if request.scopes.contains(Scope::Admin) && !by.is_admin {
        return Err(forbidden(
            by,
            "create a token with the admin scope".into(),
            "only workspace admins may",
        ));
    }
    let expires_at = match request.expires_in {
        None => None,
        Some(d) => {
            let d =
                chrono::Duration::from_std(d).map_err(|_| AuthError::Invalid("the expiry is too far away".into()))?;
            Some(
                Utc::now()
                    .checked_add_signed(d)
                    .ok_or_else(|| AuthError::Invalid("the expiry is too far away".into()))?,
            )
        }
    };
    let id = format!("tok_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let secret = format!(
        "{SECRET_PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    catalog
        .store()
        .create_token(NewToken {
            id: &id,
            principal: request.principal,
            token_hash: &secret_hash(&secret),
            label: request.label,
            scopes: &request.scopes.names(),
            expires_at_ms: expires_at.map(|t| t.timestamp_millis()),
            by: &by.name,
        })
        .await?;
    Ok(IssuedToken {
        id,
        secret,
        principal: request.principal.to_owned(),
        scopes: request.scopes,
        expires_at,
    })
}

/// Tokens `by` may see: their own, or (admins) anyone's, optionally of one principal.
pub async fn list(catalog: &Catalog, by: &Actor, principal: Option<&str>) -> Result<Vec<TokenRecord>, AuthError> {
    let whose = match principal {
        Some(p) if p != by.name && !by.is_admin => {
            return Err(forbidden(
                by,
                format!("list {p}'s tokens"),
                "only workspace admins see others' tokens",
            ));
        }
        Some(p) => Some(p),
        None if by.is_admin => None,
        None => Some(by.name.as_str()),
    };
    Ok(catalog.store().list_tokens(whose).await?)
}

/// Revokes one token by id.
pub async fn revoke(catalog: &Catalog, by: &Actor, id: &str) -> Result<TokenRecord, AuthError> {
    let store = catalog.store();
    let owner = store.token_by_id(id).await?.map(|t| t.principal);
    match owner {
        None => Err(AuthError::Invalid(format!(
            "no token has id {id:?}; see `keel access token ls`"
        ))),
        Some(owner) if owner != by.name && !by.is_admin => Err(forbidden(
            by,
            format!("revoke {owner}'s token {id}"),
            "only workspace admins revoke others' tokens",
        )),
        Some(_) => store
            .revoke_token(id, &by.name)
            .await?
            .ok_or_else(|| AuthError::Invalid(format!("no token has id {id:?}"))),
    }
}

/// Revokes every live token of `principal`; returns how many.
pub async fn revoke_all(catalog: &Catalog, by: &Actor, principal: &str) -> Result<u64, AuthError> {
    if !by.is_admin && by.name != principal {
        return Err(forbidden(
            by,
            format!("revoke {principal}'s tokens"),
            "only workspace admins revoke others' tokens",
        ));
    }
    Ok(catalog.store().revoke_tokens(principal, &by.name).await?)
}

/// The principal a keel token secret stands for, and when the token expires.
pub(crate) async fn verify(store: &Store, secret: &str) -> Result<(Principal, Option<i64>), AuthError> {
    let record = store
        .token_by_hash(&secret_hash(secret))
        .await?
        .ok_or(AuthError::UnknownToken)?;
    if record.revoked_at.is_some() {
        return Err(AuthError::Revoked { id: record.id });
    }
    if let Some(at) = record.expires_at
        && at <= Utc::now()
    {
        return Err(AuthError::Expired {
            id: record.id,
            at: at.to_rfc3339(),
        });
    }
    Ok((
        Principal {
            name: record.principal,
            scopes: Scopes::known(record.scopes.split(' ')),
            credential: Credential::Token { id: record.id },
        },
        record.expires_at.map(|t| t.timestamp_millis()),
    ))
}

/// Parses a lifetime such as `90s`, `15m`, `12h`, `30d` or `2w`.
pub fn parse_lifetime(text: &str) -> Result<Duration, AuthError> {
    let text = text.trim();
    let bad = || {
        AuthError::Invalid(format!(
            "cannot read {text:?} as a lifetime: write a number and a unit, e.g. 90s, 15m, 12h, 30d or 2w"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(bad()),
    };
    if n == 0 {
        return Err(AuthError::Invalid("a token's lifetime must be more than zero".into()));
    }
    n.checked_mul(seconds).map(Duration::from_secs).ok_or_else(bad)
}

fn forbidden(by: &Actor, what: String, why: &str) -> AuthError {
    AuthError::Catalog(keel_catalog::CatalogError::Forbidden {
        actor: by.name.clone(),
        what,
        why: why.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_read_like_people_write_them() {
        assert_eq!(parse_lifetime("30d").expect("ok"), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_lifetime("90s").expect("ok"), Duration::from_secs(90));
        assert_eq!(parse_lifetime("2w").expect("ok"), Duration::from_secs(14 * 86_400));
        for bad in ["", "30", "d", "30 days", "-1d", "0d", "1y", "99999999999999999999d"] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }
}
