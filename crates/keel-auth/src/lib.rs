//! Who is calling, and what they may do.
//!
//! Every request to a keel server carries a credential (`Authorization: Bearer ...` over
//! REST, the `authorization` metadata over gRPC). keel-auth turns it into a [`Principal`]: a
//! name and the [`Scopes`] the credential grants. Two kinds of credential are accepted:
//!
//! - **API tokens** issued by keel (`keel access token create`): an opaque secret `keel_...`,
//!   stored only as its sha256, with scopes, an optional expiry and a public id (`tok_...`) to
//!   list and revoke it by ([`tokens`]).
//! - **JSON Web Tokens** from an organisation's OIDC provider, verified against its published
//!   keys (a JWKS file or URL, cached and re-read when a new key id appears), with the principal
//!   and scopes read from configurable claims ([`jwt`]).
//!
//! Checking a credential on every request must cost next to nothing, so verified credentials
//! are cached for a short time ([`AuthConfig::cache_ttl`], 1 s by default). A revocation takes
//! effect on the next request of the server that made it or saw it announced (PostgreSQL
//! announces revocations to every server on the store at once); on a shared SQLite store, other
//! processes stop trusting the token within the cache lifetime. Per-table grants of the lake are
//! checked after this, by keel-catalog.

mod error;
pub mod jwt;
mod scope;
pub mod tokens;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use keel_store::{Revoked, Store};
use serde::Serialize;

pub use error::AuthError;
pub use jwt::{JwksSource, JwtConfig};
pub use scope::{Scope, Scopes};

/// The name requests act under when authentication is off.
pub const ANONYMOUS: &str = "anonymous";

/// Most credentials kept verified in memory; past it the cache starts over.
const CACHE_ENTRIES: usize = 10_000;

/// Who made a request, as their credential proved it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Principal {
    pub name: String,
    pub scopes: Scopes,
    pub credential: Credential,
}

/// What proved a principal's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credential {
    /// A keel API token, by its public id.
    Token { id: String },
    /// A JSON Web Token from this issuer.
    Jwt { issuer: Option<String> },
    /// Nothing: authentication is off on this server.
    Anonymous,
}

impl Principal {
    /// The principal of every request to a server with authentication off: it may do anything
    /// and is recorded as [`ANONYMOUS`], so no one can sign a change with someone else's name.
    pub fn anonymous() -> Principal {
        Principal {
            name: ANONYMOUS.to_owned(),
            scopes: Scopes::all(),
            credential: Credential::Anonymous,
        }
    }

    /// `Ok` if the credential grants `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), AuthError> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(AuthError::Forbidden {
                principal: self.name.clone(),
                needed: scope,
                held: if self.scopes.is_empty() {
                    "no scope".to_owned()
                } else {
                    format!("only {}", self.scopes.names())
                },
            })
        }
    }
}

/// How credentials are checked.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// How long a verified credential is trusted without asking the store again.
    pub cache_ttl: Duration,
    /// JSON Web Tokens from an identity provider; `None`: only keel's API tokens.
    pub jwt: Option<JwtConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            cache_ttl: Duration::from_secs(1),
            jwt: None,
        }
    }
}

struct Cached {
    principal: Arc<Principal>,
    /// When the credential itself expires (ms since the epoch).
    expires_at_ms: Option<i64>,
    verified: Instant,
}

/// Turns credentials into principals.
pub struct Authenticator {
    store: Store,
    ttl: Duration,
    jwt: Option<jwt::JwtVerifier>,
    cache: RwLock<HashMap<String, Cached>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("ttl", &self.ttl)
            .field("jwt", &self.jwt.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator over `store`'s tokens. With JWT configured, the provider's keys are
    /// read now: a server whose keys cannot be read does not start.
    pub async fn new(store: Store, config: AuthConfig) -> Result<Arc<Authenticator>, AuthError> {
        let jwt = match config.jwt {
            Some(c) => Some(jwt::JwtVerifier::new(c).await?),
            None => None,
        };
        Ok(Arc::new(Authenticator {
            store,
            ttl: config.cache_ttl,
            jwt,
            cache: RwLock::new(HashMap::new()),
        }))
    }

    /// The principal behind an `Authorization` header value (`None`: the header is absent).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Principal>, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = bearer(header)?;
        if let Some(found) = self.cached(token) {
            return Ok(found);
        }
        let (principal, expires_at_ms) = if token.starts_with(tokens::SECRET_PREFIX) {
            tokens::verify(&self.store, token).await?
        } else if let Some(jwt) = &self.jwt {
            jwt.verify(token).await?
        } else if token.matches('.').count() == 2 {
            return Err(AuthError::InvalidJwt(
                "this server does not accept JSON Web Tokens; start it with --jwt-jwks to trust an identity provider"
                    .into(),
            ));
        } else {
            return Err(AuthError::UnknownToken);
        };
        let principal = Arc::new(principal);
        self.remember(token, principal.clone(), expires_at_ms);
        Ok(principal)
    }

    /// Forgets every verified credential (after a revocation).
    pub fn forget_all(&self) {
        self.cache.write().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Listens for revocations announced by any server on the store (PostgreSQL) and forgets
    /// the cache at each, until `stop` resolves. On SQLite there is nothing to listen to and
    /// this returns at once.
    pub async fn watch_revocations(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let mut feed = match self.store.watch_token_revocations().await {
                Ok(Some(feed)) => feed,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for token revocations; retrying in 1 s");
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            loop {
                tokio::select! {
                    () = &mut stop => return,
                    next = feed.next() => match next {
                        Ok(Revoked::Token(_) | Revoked::Reconnected) => self.forget_all(),
                        Err(e) => {
                            tracing::warn!(error = %e, "lost the token revocation feed; reconnecting");
                            self.forget_all();
                            break;
                        }
                    },
                }
            }
        }
    }

    fn cached(&self, token: &str) -> Option<Arc<Principal>> {
        let cache = self.cache.read().unwrap_or_else(|p| p.into_inner());
        let entry = cache.get(token)?;
        let fresh = entry.verified.elapsed() < self.ttl
            && entry
                .expires_at_ms
                .is_none_or(|at| chrono::Utc::now().timestamp_millis() < at);
        fresh.then(|| entry.principal.clone())
    }

    fn remember(&self, token: &str, principal: Arc<Principal>, expires_at_ms: Option<i64>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(
            token.to_owned(),
            Cached {
                principal,
                expires_at_ms,
                verified: Instant::now(),
            },
        );
    }
}

/// The token of a `Bearer <token>` header value (the scheme is case-insensitive).
fn bearer(header: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_headers_are_parsed_strictly() {
        assert_eq!(bearer("Bearer abc").expect("ok"), "abc");
        assert_eq!(bearer("bearer  abc ").expect("ok"), "abc");
        for bad in ["", "abc", "Basic abc", "Bearer ", "Bearer"] {
            assert!(matches!(bearer(bad), Err(AuthError::Malformed)), "{bad:?}");
        }
    }

    #[test]
    fn a_principal_without_the_scope_is_told_which_one_it_needs() {
        let p = Principal {
            name: "mailer".into(),
            scopes: Scopes::parse("decide").expect("valid"),
            credential: Credential::Token { id: "tok_1".into() },
        };
        assert!(p.require(Scope::Decide).is_ok());
        let err = p.require(Scope::Deploy).expect_err("no deploy");
        assert_eq!(err.kind(), keel_types::ErrorKind::PermissionDenied);
        let text = err.to_string();
        assert!(text.contains("`deploy`") && text.contains("only decide"), "{text}");
        assert!(Principal::anonymous().require(Scope::Admin).is_ok());
    }
}
