//! JSON Web Tokens from an organisation's identity provider (OIDC), verified against its
//! published keys.
//!
//! The keys (a JWKS document) come from a file or a URL. They are read at start (a server
//! whose keys cannot be read does not start), re-read every [`JwtConfig::refresh`], and at once
//! (at most every [`FORCED_REFRESH`]) when a token names a key id the set does not have, which is
//! how providers rotate keys. A file is also re-read when it changes. If re-reading fails the
//! keys already held keep working and a warning is logged.
//!
//! Only asymmetric algorithms are accepted (RS*, PS*, ES*, EdDSA): a shared secret would make
//! every holder of it an identity provider. `exp` is required; `iss` and `aud` are checked
//! when configured; 30 s of clock skew is allowed.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::RwLock;
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::{AuthError, Credential, Principal, Scopes};

/// Least time between two refreshes forced by an unknown key id.
pub const FORCED_REFRESH: Duration = Duration::from_secs(30);
/// How often a JWKS file is checked for changes.
const FILE_CHECK: Duration = Duration::from_secs(5);
/// Clock skew allowed on `exp` and `nbf`.
const LEEWAY_S: u64 = 30;

/// Where the provider's keys are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

impl FromStr for JwksSource {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<JwksSource, AuthError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(AuthError::Invalid(
                "the JWKS location is empty: give a file or an https:// URL".into(),
            ));
        }
        if s.starts_with("https://") || s.starts_with("http://") {
            Ok(JwksSource::Url(s.to_owned()))
        } else {
            Ok(JwksSource::File(PathBuf::from(s)))
        }
    }
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "{}", p.display()),
            JwksSource::Url(u) => f.write_str(u),
        }
    }
}

/// How JSON Web Tokens are verified and read.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub jwks: JwksSource,
    /// Required `iss`; `None`: any.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's); `None`: not checked.
    pub audience: Option<String>,
    /// The claim naming the principal (default `sub`).
    pub principal_claim: String,
    /// The claim carrying keel scopes: a space-separated string or an array (default `scope`).
    /// Names that are not keel scopes (`openid`, ...) are ignored.
    pub scopes_claim: String,
    /// How often the keys are re-read.
    pub refresh: Duration,
}

impl JwtConfig {
    pub fn new(jwks: JwksSource) -> JwtConfig {
        JwtConfig {
            jwks,
            issuer: None,
            audience: None,
            principal_claim: "sub".into(),
            scopes_claim: "scope".into(),
            refresh: Duration::from_secs(600),
        }
    }
}

struct Key {
    id: Option<String>,
    /// The algorithm the key declares, if it does.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

struct Keys {
    keys: Vec<Key>,
    read_at: Instant,
    /// The file's modification time when read, and when it was last checked.
    file_mtime: Option<SystemTime>,
    checked_at: Instant,
    forced_at: Option<Instant>,
}

pub(crate) struct JwtVerifier {
    config: JwtConfig,
    keys: RwLock<Keys>,
    refresh_lock: tokio::sync::Mutex<()>,
    client: reqwest::Client,
}

impl JwtVerifier {
    pub(crate) async fn new(config: JwtConfig) -> Result<JwtVerifier, AuthError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| AuthError::Jwks(format!("cannot build an HTTP client: {e}")))?;
        let (keys, file_mtime) = load(&config.jwks, &client).await?;
        let now = Instant::now();
        Ok(JwtVerifier {
            config,
            keys: RwLock::new(Keys {
                keys,
                read_at: now,
                file_mtime,
                checked_at: now,
                forced_at: None,
            }),
            refresh_lock: tokio::sync::Mutex::new(()),
            client,
        })
    }

    /// The principal a token names, and when the token expires (ms since the epoch).
    pub(crate) async fn verify(&self, token: &str) -> Result<(Principal, Option<i64>), AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidJwt(format!("not a readable JSON Web Token ({e})")))?;
        if matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
            return Err(AuthError::InvalidJwt(format!(
                "{:?} (a shared secret) is not accepted; the provider must sign with RS*, PS*, ES* or EdDSA",
                header.alg
            )));
        }
        self.refresh_if_due().await;
        let kid = header.kid.as_deref();
        if self.find(kid, header.alg).is_none() {
            self.refresh_for_unknown_key().await;
        }
        let key = self.find(kid, header.alg).ok_or_else(|| {
            AuthError::InvalidJwt(match kid {
                Some(kid) => format!(
                    "no key with id {kid:?} for {:?} in the provider's keys ({})",
                    header.alg, self.config.jwks
                ),
                None => format!("the token names no key id and no single {:?} key fits", header.alg),
            })
        })?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_S;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(iss) = &self.config.issuer {
            validation.set_issuer(&[iss]);
        }
        match &self.config.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(explain)?;
        self.principal(data.claims)
    }

    fn principal(&self, claims: Map<String, Value>) -> Result<(Principal, Option<i64>), AuthError> {
        let claim = &self.config.principal_claim;
        let name = match claims.get(claim) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            _ => {
                return Err(AuthError::InvalidJwt(format!(
                    "the claim {claim:?} that names the principal is missing or not a string (see --jwt-principal-claim)"
                )));
            }
        };
        let scopes = match claims.get(&self.config.scopes_claim) {
            Some(Value::String(s)) => Scopes::known(s.split(' ')),
            Some(Value::Array(items)) => Scopes::known(items.iter().filter_map(Value::as_str)),
            _ => Scopes::NONE,
        };
        let expires_at_ms = claims
            .get("exp")
            .and_then(Value::as_i64)
            .map(|s| s.saturating_mul(1000));
        let issuer = claims.get("iss").and_then(Value::as_str).map(str::to_owned);
        Ok((
            Principal {
                name,
                scopes,
                credential: Credential::Jwt { issuer },
            },
            expires_at_ms,
        ))
    }

    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<DecodingKey> {
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let fits = |k: &&Key| k.alg.is_none_or(|a| a == alg);
        match kid {
            Some(kid) => keys.keys.iter().filter(fits).find(|k| k.id.as_deref() == Some(kid)),
            None => {
                let mut candidates = keys.keys.iter().filter(fits);
                let only = candidates.next();
                if candidates.next().is_some() { None } else { only }
            }
        }
        .map(|k| k.key.clone())
    }

    async fn refresh_if_due(&self) {
        let due = {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            let stale = keys.read_at.elapsed() >= self.config.refresh;
            let file_check = matches!(self.config.jwks, JwksSource::File(_)) && keys.checked_at.elapsed() >= FILE_CHECK;
            stale || file_check
        };
        if due {
            self.refresh(false).await;
        }
    }

    async fn refresh_for_unknown_key(&self) {
        let allowed = {
            let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
            keys.forced_at.is_none_or(|at| at.elapsed() >= FORCED_REFRESH)
        };
        if allowed {
            self.refresh(true).await;
        }
    }

    async fn refresh(&self, forced: bool) {
        let _one_at_a_time = self.refresh_lock.lock().await;
        if let JwksSource::File(path) = &self.config.jwks
            && !forced
        {
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            keys.checked_at = Instant::now();
            if mtime.is_some() && mtime == keys.file_mtime && keys.read_at.elapsed() < self.config.refresh {
                return;
            }
        }
        match load(&self.config.jwks, &self.client).await {
            Ok((fresh, file_mtime)) => {
                let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                keys.keys = fresh;
                keys.read_at = now;
                keys.checked_at = now;
                keys.file_mtime = file_mtime;
                if forced {
                    keys.forced_at = Some(now);
                }
            }
            Err(e) => {
                tracing::warn!(source = %self.config.jwks, error = %e, "cannot re-read the identity provider's keys; the keys held keep working");
                let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                keys.read_at = now;
                if forced {
                    keys.forced_at = Some(now);
                }
            }
        }
    }
}

/// Reads and parses a JWKS document; keys keel cannot use are skipped with a warning.
async fn load(source: &JwksSource, client: &reqwest::Client) -> Result<(Vec<Key>, Option<SystemTime>), AuthError> {
    let (bytes, mtime) = match source {
        JwksSource::File(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| AuthError::Jwks(format!("cannot read {}: {e}", path.display())))?;
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            (bytes, mtime)
        }
        JwksSource::Url(url) => {
            let response = client
                .get(url)
                .send()
                .await
                .map_err(|e| AuthError::Jwks(format!("cannot fetch {url}: {e}")))?;
            if !response.status().is_success() {
                return Err(AuthError::Jwks(format!("{url} answered {}", response.status())));
            }
            let bytes = response
                .bytes()
                .await
                .map_err(|e| AuthError::Jwks(format!("cannot read {url}: {e}")))?;
            (bytes.to_vec(), None)
        }
    };
    let set: JwkSet = serde_json::from_slice(&bytes)
        .map_err(|e| AuthError::Jwks(format!("{source} is not a JWKS document ({{\"keys\": [...]}}): {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let id = jwk.common.key_id.clone();
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        match DecodingKey::from_jwk(jwk) {
            Ok(key) if key.family() != jsonwebtoken::AlgorithmFamily::Hmac => keys.push(Key { id, alg, key }),
            Ok(_) => tracing::warn!(source = %source, kid = ?id, "skipping a symmetric key in the JWKS"),
            Err(e) => tracing::warn!(source = %source, kid = ?id, error = %e, "skipping a key keel cannot use"),
        }
    }
    if keys.is_empty() {
        return Err(AuthError::Jwks(format!("{source} holds no usable public key")));
    }
    Ok((keys, mtime))
}

fn explain(e: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    AuthError::InvalidJwt(match e.kind() {
        K::ExpiredSignature => "the token expired; get a new one from the identity provider".to_owned(),
        K::ImmatureSignature => "the token is not valid yet (nbf)".to_owned(),
        K::InvalidSignature => "its signature does not match the provider's key".to_owned(),
        K::InvalidIssuer => "it was issued by another issuer than this server trusts (--jwt-issuer)".to_owned(),
        K::InvalidAudience => "it was issued for another audience than this server (--jwt-audience)".to_owned(),
        K::MissingRequiredClaim(c) => format!("the claim {c:?} is required"),
        K::InvalidAlgorithm => "its algorithm does not fit the provider's key".to_owned(),
        _ => format!("{e}"),
    })
}
