//! JSON Web Tokens from an identity provider, with keys this test generates (no outside
//! service): signatures, claims, scopes, expiry, issuer and audience, and key rotation.

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use keel_auth::{AuthConfig, AuthError, Authenticator, Credential, JwksSource, JwtConfig, Scope};
use keel_store::Store;
use serde_json::{Value, json};

/// A signing key of the simulated provider and its public JWK.
struct ProviderKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn ed25519(kid: &str) -> ProviderKey {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse");
    ProviderKey {
        kid: kid.into(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        }),
    }
}

fn es256(kid: &str) -> ProviderKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("generate");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).expect("parse");
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    ProviderKey {
        kid: kid.into(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }),
    }
}

fn publish(path: &Path, keys: &[&ProviderKey]) {
    let set = json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
    // Write then rename, as a provider's key sync would: a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec(&set).expect("json")).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

fn sign(key: &ProviderKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims(sub: &str, scope: Value) -> Value {
    json!({
        "iss": "https://id.example.test", "aud": "keel", "sub": sub,
        "scope": scope, "iat": now(), "exp": now() + 600,
    })
}

async fn server(jwks: &Path) -> std::sync::Arc<Authenticator> {
    let store = Store::open("sqlite::memory:").await.expect("store");
    let mut jwt = JwtConfig::new(JwksSource::File(jwks.to_owned()));
    jwt.issuer = Some("https://id.example.test".into());
    jwt.audience = Some("keel".into());
    Authenticator::new(
        store,
        AuthConfig {
            cache_ttl: Duration::ZERO,
            jwt: Some(jwt),
        },
    )
    .await
    .expect("authenticator")
}

async fn check(auth: &Authenticator, token: &str) -> Result<keel_auth::Principal, AuthError> {
    auth.authenticate(Some(&format!("Bearer {token}")))
        .await
        .map(|p| (*p).clone())
}

#[tokio::test]
async fn tokens_signed_by_the_provider_name_principal_and_scopes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    let (ed, ec) = (ed25519("ed-1"), es256("ec-1"));
    publish(&jwks, &[&ed, &ec]);
    let auth = server(&jwks).await;

    let p = check(&auth, &sign(&ed, &claims("alice@corp", json!("openid infer decide"))))
        .await
        .expect("valid");
    assert_eq!(p.name, "alice@corp");
    assert_eq!(
        p.scopes.names(),
        "infer decide",
        "openid is not a keel scope and is ignored"
    );
    assert_eq!(
        p.credential,
        Credential::Jwt {
            issuer: Some("https://id.example.test".into())
        }
    );
    assert!(p.require(Scope::Deploy).is_err());
    let p = check(&auth, &sign(&ec, &claims("bot", json!(["deploy", "view"]))))
        .await
        .expect("array scopes");
    assert_eq!(p.scopes.names(), "view deploy");
}

#[tokio::test]
async fn forged_expired_and_misdirected_tokens_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    let ed = ed25519("ed-1");
    publish(&jwks, &[&ed]);
    let auth = server(&jwks).await;
    let refused = |r: Result<keel_auth::Principal, AuthError>| {
        let e = r.expect_err("refused");
        assert_eq!(e.kind(), keel_types::ErrorKind::Unauthenticated, "{e}");
        e.to_string()
    };

    // Signed by a key the provider never published, under a published key id.
    let mut forger = ed25519("ed-1");
    forger.kid = "ed-1".into();
    let msg = refused(check(&auth, &sign(&forger, &claims("ceo@corp", json!("admin")))).await);
    assert!(msg.contains("signature"), "{msg}");
    // A payload swapped under a valid signature.
    let good = sign(&ed, &claims("alice", json!("infer")));
    let evil = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims("ceo@corp", json!("admin"))).expect("json"));
    let parts: Vec<&str> = good.split('.').collect();
    refused(check(&auth, &format!("{}.{evil}.{}", parts[0], parts[2])).await);

    let mut expired = claims("alice", json!("infer"));
    expired["exp"] = json!(now() - 120);
    assert!(refused(check(&auth, &sign(&ed, &expired)).await).contains("expired"));
    let mut other_issuer = claims("alice", json!("infer"));
    other_issuer["iss"] = json!("https://evil.example.test");
    assert!(refused(check(&auth, &sign(&ed, &other_issuer)).await).contains("issuer"));
    let mut other_audience = claims("alice", json!("infer"));
    other_audience["aud"] = json!("someone-else");
    assert!(refused(check(&auth, &sign(&ed, &other_audience)).await).contains("audience"));
    let mut no_exp = claims("alice", json!("infer"));
    no_exp.as_object_mut().expect("object").remove("exp");
    refused(check(&auth, &sign(&ed, &no_exp)).await);
    let mut no_sub = claims("alice", json!("infer"));
    no_sub.as_object_mut().expect("object").remove("sub");
    assert!(refused(check(&auth, &sign(&ed, &no_sub)).await).contains("\"sub\""));
    // A shared-secret token is refused whatever its secret.
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("alice", json!("admin")),
        &EncodingKey::from_secret(b"guess").expect("key"),
    )
    .expect("sign");
    assert!(refused(check(&auth, &hs).await).contains("shared secret"));
    refused(check(&auth, "eyJhbGciOiJub25lIn0.e30.").await);
}

#[tokio::test]
async fn a_rotated_key_is_picked_up_when_a_token_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwks = dir.path().join("jwks.json");
    let (old, new) = (ed25519("2026-11"), ed25519("2026-12"));
    publish(&jwks, &[&old]);
    let auth = server(&jwks).await;
    check(&auth, &sign(&old, &claims("alice", json!("infer"))))
        .await
        .expect("old key");
    // The provider rotates: new key published, old one withdrawn.
    publish(&jwks, &[&new]);
    let p = check(&auth, &sign(&new, &claims("alice", json!("infer"))))
        .await
        .expect("new key found");
    assert_eq!(p.name, "alice");
    // The withdrawn key no longer verifies once the set was re-read.
    let err = check(&auth, &sign(&old, &claims("alice", json!("infer"))))
        .await
        .expect_err("withdrawn");
    assert!(err.to_string().contains("2026-11"), "{err}");
}

#[tokio::test]
async fn a_server_whose_keys_cannot_be_read_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open("sqlite::memory:").await.expect("store");
    for (content, expect) in [
        (None, "cannot read"),
        (Some("{\"keys\": []}"), "no usable"),
        (Some("not json"), "not a JWKS"),
    ] {
        let path = dir.path().join("jwks.json");
        match content {
            Some(c) => std::fs::write(&path, c).expect("write"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
        let err = Authenticator::new(
            store.clone(),
            AuthConfig {
                cache_ttl: Duration::ZERO,
                jwt: Some(JwtConfig::new(JwksSource::File(path.clone()))),
            },
        )
        .await
        .expect_err("refused");
        assert!(err.to_string().contains(expect), "{err}");
    }
}

/// A JWKS served over HTTP, as an OIDC provider's `jwks_uri` is: a one-route server on
/// loopback whose document the test swaps to rotate keys.
async fn jwks_server(document: std::sync::Arc<std::sync::Mutex<Vec<u8>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let body = document.lock().expect("lock").clone();
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut request = vec![0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}/.well-known/jwks.json")
}

#[tokio::test]
async fn keys_fetched_from_a_url_verify_tokens_and_follow_a_rotation() {
    let (old, new) = (es256("url-1"), es256("url-2"));
    let set = |keys: &[&ProviderKey]| {
        serde_json::to_vec(&json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })).expect("json")
    };
    let document = std::sync::Arc::new(std::sync::Mutex::new(set(&[&old])));
    let url = jwks_server(document.clone()).await;
    let store = Store::open("sqlite::memory:").await.expect("store");
    let auth = Authenticator::new(
        store,
        AuthConfig {
            cache_ttl: Duration::ZERO,
            jwt: Some(JwtConfig::new(url.parse().expect("a URL source"))),
        },
    )
    .await
    .expect("keys fetched at start");
    let p = check(&auth, &sign(&old, &claims("svc", json!("decide"))))
        .await
        .expect("valid");
    assert_eq!(p.name, "svc");
    *document.lock().expect("lock") = set(&[&old, &new]);
    check(&auth, &sign(&new, &claims("svc", json!("decide"))))
        .await
        .expect("new key fetched on sight");
    // A token naming a key the provider never published is refused without a fetch storm: the
    // forced refresh happened moments ago.
    let stranger = es256("url-3");
    let err = check(&auth, &sign(&stranger, &claims("svc", json!("decide"))))
        .await
        .expect_err("unknown key");
    assert!(err.to_string().contains("url-3"), "{err}");
}
