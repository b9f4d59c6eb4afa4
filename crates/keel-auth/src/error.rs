//! The one error type of keel-auth.

use keel_catalog::CatalogError;
use keel_store::StoreError;

use crate::Scope;

/// Why a request was refused or a token could not be issued. Messages say what to do and
/// never contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "this server requires authentication: send `Authorization: Bearer <token>` (create a token with `keel access token create NAME --scope ...`)"
    )]
    Missing,
    #[error("the Authorization header must be `Bearer <token>`")]
    Malformed,
    #[error("the bearer token is unknown; create one with `keel access token create NAME --scope ...`")]
    UnknownToken,
    #[error("token {id} was revoked; ask for a new one")]
    Revoked { id: String },
    #[error("token {id} expired at {at}; ask for a new one")]
    Expired { id: String, at: String },
    #[error("the JSON Web Token was refused: {0}")]
    InvalidJwt(String),
    #[error(
        "{principal} may not do this: it needs the `{needed}` scope and the credential grants {held}; ask an admin for a token with --scope {needed}"
    )]
    Forbidden {
        principal: String,
        needed: Scope,
        held: String,
    },
    /// The identity provider's keys could not be read.
    #[error("cannot read the identity provider's keys (JWKS): {0}")]
    Jwks(String),
    /// A request to issue or revoke a token is wrong (an unknown scope, a bad expiry...).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    pub fn kind(&self) -> keel_types::ErrorKind {
        use keel_types::ErrorKind as K;
        match self {
            AuthError::Missing
            | AuthError::Malformed
            | AuthError::UnknownToken
            | AuthError::Revoked { .. }
            | AuthError::Expired { .. }
            | AuthError::InvalidJwt(_) => K::Unauthenticated,
            AuthError::Forbidden { .. } => K::PermissionDenied,
            AuthError::Jwks(_) => K::Unavailable,
            AuthError::Invalid(_) => K::InvalidArgument,
            AuthError::Catalog(e) => e.kind(),
            AuthError::Store(e) => e.kind(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Malformed | AuthError::UnknownToken | AuthError::InvalidJwt(_) => {
                "unauthenticated"
            }
            AuthError::Revoked { .. } => "token_revoked",
            AuthError::Expired { .. } => "token_expired",
            AuthError::Forbidden { .. } => "forbidden",
            AuthError::Jwks(_) => "unavailable",
            AuthError::Invalid(_) => "invalid",
            AuthError::Catalog(e) => e.code(),
            AuthError::Store(e) => e.code(),
        }
    }

    /// A short reason for counters and the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::UnknownToken => "unknown_token",
            AuthError::Revoked { .. } => "revoked",
            AuthError::Expired { .. } => "expired",
            AuthError::InvalidJwt(_) => "invalid_jwt",
            AuthError::Forbidden { .. } => "scope",
            AuthError::Jwks(_) => "jwks_unavailable",
            AuthError::Invalid(_) => "invalid",
            AuthError::Catalog(_) => "catalog",
            AuthError::Store(_) => "store",
        }
    }
}

impl keel_types::KeelError for AuthError {
    fn kind(&self) -> keel_types::ErrorKind {
        AuthError::kind(self)
    }

    fn code(&self) -> &'static str {
        AuthError::code(self)
    }
}
