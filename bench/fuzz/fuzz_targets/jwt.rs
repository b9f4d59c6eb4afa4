//! An `Authorization` header: `Bearer <input>` (or, when the input starts with `!`, the rest
//! as the whole header value), checked by `keel_auth::Authenticator::authenticate` exactly as
//! every route does, with JSON Web Tokens trusted from a fixed JWKS file (one Ed25519 key,
//! kid `fuzz-1`) and keel API tokens looked up in a real SQLite store. Every refusal must be
//! the caller's (401/403), never a server fault; the seeds include tokens signed by the key.
#![no_main]

use std::sync::{Arc, LazyLock};

use keel_auth::{AuthConfig, Authenticator, JwksSource, JwtConfig};
use keel_fuzz::{assert_user_fault, runtime};
use libfuzzer_sys::fuzz_target;

/// The public half of a throwaway key; the seeds were signed with its private half, which is
/// not kept.
const JWKS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": "fuzz-1", "x": "bOCbApU0-QWptP5qS54bTdARHM0ntAgBOhT7JaQ3G6g"}]}"#;

struct Fixture {
    _dir: tempfile::TempDir,
    auth: Arc<Authenticator>,
    rt: tokio::runtime::Runtime,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, JWKS).expect("write the JWKS");
    let rt = runtime();
    let auth = rt.block_on(async {
        let url = format!("sqlite://{}", dir.path().join("keel.db").display());
        let store = keel_store::Store::open(&url).await.expect("store");
        let config = AuthConfig {
            // No cache: every input is verified, not looked up.
            cache_ttl: std::time::Duration::ZERO,
            jwt: Some(JwtConfig::new(JwksSource::File(jwks))),
        };
        Authenticator::new(store, config).await.expect("authenticator")
    });
    Fixture { _dir: dir, auth, rt }
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let header = match text.strip_prefix('!') {
        Some(raw) => raw.to_string(),
        None => format!("Bearer {text}"),
    };
    let f = &*FIXTURE;
    match f.rt.block_on(f.auth.authenticate(Some(&header))) {
        Ok(principal) => assert!(!principal.name.trim().is_empty(), "a principal has a name"),
        Err(e) => assert_user_fault("jwt", e.kind(), &e),
    }
});
