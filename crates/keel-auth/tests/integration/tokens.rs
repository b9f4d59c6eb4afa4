//! keel API tokens against a real store: issuing rules, verification, scopes, expiry,
//! revocation (at once on the revoking server; announced to every server on PostgreSQL).

use std::sync::Arc;
use std::time::Duration;

use keel_auth::tokens::{self, TokenRequest};
use keel_auth::{AuthConfig, AuthError, Authenticator, Credential, Scope, Scopes};
use keel_catalog::Catalog;
use keel_store::{NewToken, Store};

async fn sqlite() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("keel.db").to_str().expect("utf-8"))
        .await
        .expect("store");
    (dir, Catalog::new(store))
}

fn request<'a>(principal: &'a str, scopes: &str) -> TokenRequest<'a> {
    TokenRequest {
        principal,
        scopes: Scopes::parse(scopes).expect("scopes"),
        label: Some("test"),
        expires_in: None,
    }
}

fn no_cache() -> AuthConfig {
    AuthConfig {
        cache_ttl: Duration::ZERO,
        jwt: None,
    }
}

#[tokio::test]
async fn an_issued_token_proves_its_principal_and_scopes_and_nothing_more() {
    let (_dir, catalog) = sqlite().await;
    let admin = catalog.actor("ana").await.expect("first principal is admin");
    let issued = tokens::issue(&catalog, &admin, request("mailer", "infer decide"))
        .await
        .expect("issued");
    assert!(issued.secret.starts_with("keel_") && issued.id.starts_with("tok_"));
    let auth = Authenticator::new(catalog.store().clone(), AuthConfig::default())
        .await
        .expect("auth");
    let p = auth
        .authenticate(Some(&format!("Bearer {}", issued.secret)))
        .await
        .expect("valid");
    assert_eq!(p.name, "mailer");
    assert_eq!(p.credential, Credential::Token { id: issued.id.clone() });
    assert!(p.require(Scope::Decide).is_ok() && p.require(Scope::Infer).is_ok());
    let refused = p.require(Scope::Deploy).expect_err("no deploy scope");
    assert!(matches!(
        refused,
        AuthError::Forbidden {
            needed: Scope::Deploy,
            ..
        }
    ));

    // Only the hash is stored.
    let listed = tokens::list(&catalog, &admin, Some("mailer")).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].scopes, "infer decide");
    let dump = serde_json::to_string(&listed).expect("json");
    assert!(!dump.contains(&issued.secret[5..]), "a listing never shows the secret");

    for (header, reason) in [
        (None, "missing"),
        (Some("keel_abc".to_owned()), "malformed"),
        (Some("Basic abc".to_owned()), "malformed"),
        (Some("Bearer keel_0000".to_owned()), "unknown_token"),
        (Some("Bearer whatever".to_owned()), "unknown_token"),
        (Some("Bearer a.b.c".to_owned()), "invalid_jwt"),
    ] {
        let err = auth.authenticate(header.as_deref()).await.expect_err("refused");
        assert_eq!(err.reason(), reason, "{header:?}: {err}");
        assert_eq!(err.kind(), keel_types::ErrorKind::Unauthenticated);
    }
}

#[tokio::test]
async fn issuing_rules_keep_admin_power_with_admins() {
    let (_dir, catalog) = sqlite().await;
    let admin = catalog.actor("ana").await.expect("admin");
    let bob = catalog.actor("bob").await.expect("bob");
    let err = tokens::issue(&catalog, &bob, request("svc", "infer"))
        .await
        .expect_err("not for others");
    assert_eq!(err.kind(), keel_types::ErrorKind::PermissionDenied, "{err}");
    let err = tokens::issue(&catalog, &bob, request("bob", "admin"))
        .await
        .expect_err("no admin scope");
    assert_eq!(err.kind(), keel_types::ErrorKind::PermissionDenied, "{err}");
    let err = tokens::issue(&catalog, &bob, request("bob", ""))
        .await
        .expect_err("no scope");
    assert_eq!(err.kind(), keel_types::ErrorKind::InvalidArgument, "{err}");
    let own = tokens::issue(&catalog, &bob, request("bob", "infer"))
        .await
        .expect("own token");
    tokens::issue(&catalog, &admin, request("svc", "admin"))
        .await
        .expect("admins may");
    // bob sees and revokes only his own.
    assert_eq!(tokens::list(&catalog, &bob, None).await.expect("own list").len(), 1);
    assert!(tokens::list(&catalog, &bob, Some("svc")).await.is_err());
    let svc_id = tokens::list(&catalog, &admin, Some("svc")).await.expect("list")[0]
        .id
        .clone();
    let err = tokens::revoke(&catalog, &bob, &svc_id).await.expect_err("not his");
    assert_eq!(err.kind(), keel_types::ErrorKind::PermissionDenied, "{err}");
    tokens::revoke(&catalog, &bob, &own.id).await.expect("his own");
    assert_eq!(tokens::revoke_all(&catalog, &admin, "svc").await.expect("admin"), 1);
}

#[tokio::test]
async fn revocation_and_expiry_take_effect_on_the_next_request() {
    let (_dir, catalog) = sqlite().await;
    let admin = catalog.actor("ana").await.expect("admin");
    let issued = tokens::issue(&catalog, &admin, request("svc", "infer"))
        .await
        .expect("issued");
    let header = format!("Bearer {}", issued.secret);
    // A server that caches verified tokens, and one that asks the store every time.
    let cached = Authenticator::new(catalog.store().clone(), AuthConfig::default())
        .await
        .expect("auth");
    let strict = Authenticator::new(catalog.store().clone(), no_cache())
        .await
        .expect("auth");
    cached.authenticate(Some(&header)).await.expect("valid");
    strict.authenticate(Some(&header)).await.expect("valid");
    tokens::revoke(&catalog, &admin, &issued.id).await.expect("revoked");
    let err = strict.authenticate(Some(&header)).await.expect_err("revoked");
    assert!(
        matches!(err, AuthError::Revoked { ref id } if *id == issued.id),
        "{err}"
    );
    // The cache trusts it for at most its lifetime; forgetting (what the revocation feed does)
    // makes the next request ask the store.
    cached.forget_all();
    assert!(matches!(
        cached.authenticate(Some(&header)).await,
        Err(AuthError::Revoked { .. })
    ));

    // An expired token (stored as if issued long ago).
    catalog
        .store()
        .create_token(NewToken {
            id: "tok_old",
            principal: "svc",
            token_hash: &tokens::secret_hash("keel_expired"),
            label: None,
            scopes: "infer",
            expires_at_ms: Some(chrono::Utc::now().timestamp_millis() - 1_000),
            by: "ana",
        })
        .await
        .expect("stored");
    let err = strict
        .authenticate(Some("Bearer keel_expired"))
        .await
        .expect_err("expired");
    assert!(matches!(err, AuthError::Expired { .. }), "{err}");
    assert_eq!(err.code(), "token_expired");
}

/// Two servers on one PostgreSQL store: a revocation made through one store handle reaches the
/// other server's cache through the announcement, with no wait for the cache to expire.
#[tokio::test]
async fn a_revocation_is_announced_to_every_server_on_postgres() {
    let url =
        std::env::var("KEEL_TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let Ok(store) = Store::open(&url).await else {
        panic!("PostgreSQL at {url} is needed for this test (scripts/ensure-postgres starts it)");
    };
    let catalog = Catalog::new(store.clone());
    // The shared test database may have an admin already: this principal issues for itself.
    let me = format!("auth-test-{}", uuid::Uuid::new_v4().simple());
    let admin = catalog.actor(&me).await.expect("actor");
    let issued = tokens::issue(&catalog, &admin, request(&admin.name, "infer"))
        .await
        .expect("issued");
    let header = format!("Bearer {}", issued.secret);
    let other = Authenticator::new(
        store.clone(),
        AuthConfig {
            cache_ttl: Duration::from_secs(3600),
            jwt: None,
        },
    )
    .await
    .expect("auth");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(Arc::clone(&other).watch_revocations(async {
        let _ = stop_rx.await;
    }));
    other
        .authenticate(Some(&header))
        .await
        .expect("valid and now cached for an hour");
    // Give the listener time to subscribe, then revoke through a different store handle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elsewhere = Catalog::new(Store::open(&url).await.expect("second handle"));
    tokens::revoke(&elsewhere, &admin, &issued.id).await.expect("revoked");
    let mut refused = false;
    for _ in 0..50 {
        if other.authenticate(Some(&header)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop_tx.send(());
    watcher.await.expect("watcher stops");
    assert!(
        refused,
        "the other server kept trusting a revoked token for its whole cache lifetime"
    );
}

/// Two servers on one SQLite file: a revocation made by another process (here: another store
/// handle) reaches a server that caches tokens for an hour through the marker beside the
/// database, within moments.
#[tokio::test]
async fn a_revocation_reaches_every_server_on_an_sqlite_file() {
    let (dir, catalog) = sqlite().await;
    let admin = catalog.actor("ana").await.expect("admin");
    let issued = tokens::issue(&catalog, &admin, request("svc", "infer"))
        .await
        .expect("issued");
    let header = format!("Bearer {}", issued.secret);
    let server = Authenticator::new(
        catalog.store().clone(),
        AuthConfig {
            cache_ttl: Duration::from_secs(3600),
            jwt: None,
        },
    )
    .await
    .expect("auth");
    server
        .authenticate(Some(&header))
        .await
        .expect("valid and cached for an hour");
    let elsewhere = Catalog::new(
        Store::open(dir.path().join("keel.db").to_str().expect("utf-8"))
            .await
            .expect("second handle"),
    );
    tokens::revoke(&elsewhere, &admin, &issued.id).await.expect("revoked");
    let mut refused = None;
    for _ in 0..40 {
        if let Err(e) = server.authenticate(Some(&header)).await {
            refused = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        matches!(refused, Some(AuthError::Revoked { .. })),
        "the server kept trusting a revoked token: {refused:?}"
    );
}
