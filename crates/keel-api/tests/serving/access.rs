//! The test that cannot be forgotten: every REST route and every gRPC method of a server that
//! requires authentication, called with no credential, a bad one, an expired one and one of
//! the wrong scope, answers 401/403 and changes nothing; with the right scope, it is let
//! through. Routes are only added with their rule (`access::Routes`), and gRPC methods are read
//! from the `.proto` files, so a route or method added later without a rule fails here.

use std::sync::Arc;

use keel_api::access::{GRPC_RULES, Need, Rule};
use keel_api::{BoundServer, ServeConfig, ServerAccess, Services};
use keel_auth::tokens::{self, TokenRequest};
use keel_auth::{AuthConfig, Authenticator, Scope, Scopes};
use keel_catalog::Catalog;
use keel_serving::InferenceService;
use keel_store::{NewToken, Store};
use tokio_util::sync::CancellationToken;

use crate::support::{fixture, push};

struct Secured {
    http: std::net::SocketAddr,
    grpc: std::net::SocketAddr,
    store: Store,
    catalog: Catalog,
    service: Arc<InferenceService>,
    rules: Vec<Rule>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Secured {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn secured() -> Secured {
    let _ = keel_api::prometheus();
    let dir = tempfile::tempdir().expect("tempdir");
    let crate::support::Parts {
        store,
        registry,
        service,
        experiments,
    } = crate::support::parts(dir.path()).await;
    push(&registry, "bc-lr", &fixture("bc-lr")).await;
    let catalog = Catalog::new(store.clone());
    let root = catalog.actor("root").await.expect("the first principal is the admin");
    // The tokens' principal may do anything the catalog decides (table grants), so that a 403
    // below can only come from the gate's scope check.
    catalog
        .set_admin(&root, "svc", true)
        .await
        .expect("svc is a workspace admin");
    let auth = Authenticator::new(
        store.clone(),
        AuthConfig {
            cache_ttl: std::time::Duration::ZERO,
            jwt: None,
        },
    )
    .await
    .expect("auth");
    let services = Services {
        inference: service.clone(),
        experiments: Some(experiments.clone()),
        // The registry's and the batch routes, and the data routes, as `keel serve` mounts them.
        extra_rest: Some({
            let routes = keel_api::app::client_routes(registry.clone(), experiments, 1 << 20, 1 << 20, None);
            match data_routes(&catalog, dir.path()) {
                Some(data) => routes.merge(data),
                None => routes,
            }
        }),
        extra_grpc: None,
        access: ServerAccess {
            auth: Some(auth),
            required: true,
            audit: Some(store.clone()),
            ..ServerAccess::default()
        },
    };
    let rules = services.rest_routes(1 << 20).into_parts().1;
    let server = BoundServer::bind(ServeConfig {
        http_addr: "127.0.0.1:0".parse().expect("addr"),
        grpc_addr: "127.0.0.1:0".parse().expect("addr"),
        max_body_bytes: 1 << 20,
        tls: None,
    })
    .await
    .expect("bind");
    let (http, grpc) = (server.http_addr().expect("addr"), server.grpc_addr().expect("addr"));
    let shutdown = CancellationToken::new();
    tokio::spawn(server.run(services, shutdown.clone()));
    assert!(service.load_all().await.is_empty());
    Secured {
        http,
        grpc,
        store,
        catalog,
        service,
        rules,
        shutdown,
        _dir: dir,
    }
}

#[cfg(feature = "lake")]
fn data_routes(catalog: &Catalog, home: &std::path::Path) -> Option<keel_api::access::Routes> {
    let lake = keel_lake::Lake::open(&home.join("lake")).expect("lake");
    // The /v1/data routes and the console's data pages, as `keel serve` mounts them.
    Some(keel_api::app::data_routes(catalog.store().clone(), lake, 1 << 20))
}

#[cfg(not(feature = "lake"))]
fn data_routes(_: &Catalog, _: &std::path::Path) -> Option<keel_api::access::Routes> {
    None
}

impl Secured {
    async fn token(&self, scopes: Scopes) -> String {
        let root = self.catalog.actor("root").await.expect("root");
        let request = TokenRequest {
            principal: "svc",
            scopes,
            label: None,
            expires_in: None,
        };
        tokens::issue(&self.catalog, &root, request)
            .await
            .expect("token")
            .secret
    }

    async fn expired_token(&self) -> String {
        let secret = "keel_expired_for_the_access_test".to_owned();
        self.store
            .create_token(NewToken {
                id: "tok_expired",
                principal: "svc",
                token_hash: &tokens::secret_hash(&secret),
                label: None,
                scopes: "admin",
                expires_at_ms: Some(chrono::Utc::now().timestamp_millis() - 60_000),
                by: "root",
            })
            .await
            .expect("stored");
        secret
    }

    /// What a refused request must not have changed: the change log, the deployments, the
    /// models loaded.
    async fn state(&self) -> (usize, usize, Vec<String>) {
        let changes = self.store.list_changes(10_000, None).await.expect("changes").len();
        let deployments = self.store.list_deployments().await.expect("deployments").len();
        let mut loaded: Vec<String> = self
            .service
            .repository()
            .loaded()
            .into_iter()
            .map(|m| format!("{}@{}", m.name, m.version))
            .collect();
        loaded.sort();
        (changes, deployments, loaded)
    }
}

/// Every scope but the one a route needs (and those that imply it).
fn all_but(needed: Scope) -> Scopes {
    Scope::ALL
        .into_iter()
        .filter(|s| *s != needed && *s != Scope::Admin && !(needed == Scope::DataRead && *s == Scope::DataWrite))
        .collect()
}

fn concrete(path: &str) -> String {
    path.replace("{name}", "bc-lr")
        .replace("{version}", "1")
        .replace("{alias}", "staging")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rest_route_refuses_missing_bad_expired_and_wrong_scope_credentials() {
    let s = secured().await;
    // Redirects are not followed: each route's own answer is checked (the console's `/ui`
    // sends browsers on to `/ui/`, which needs a credential of its own).
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let expired = s.expired_token().await;
    assert!(s.rules.len() >= 20, "the table lists every route: {:?}", s.rules);
    assert!(
        s.rules.iter().any(|r| r.path == "/ui/deployments/{name}"),
        "the console's routes are in the table"
    );
    #[cfg(feature = "lake")]
    assert!(
        s.rules.iter().any(|r| r.path == "/ui/data/{table}"),
        "and its data pages"
    );
    let mut checked = 0;
    for rule in &s.rules {
        let url = format!("http://{}{}", s.http, concrete(rule.path));
        let send = |token: Option<String>| {
            let mut request = client
                .request(rule.method.clone(), &url)
                .header("content-type", "application/json")
                .body(r#"{"spec": {}, "inputs": []}"#);
            if let Some(t) = token {
                request = request.header("authorization", t);
            }
            request.send()
        };
        let Need::Scope(scope) = rule.need else {
            let status = send(None).await.expect("request").status().as_u16();
            assert!(
                status != 401 && status != 403,
                "{} {} is open but answered {status}",
                rule.method,
                rule.path
            );
            continue;
        };
        let wrong = s.token(all_but(scope)).await;
        let before = s.state().await;
        for (what, header, expected) in [
            ("no credential", None, 401),
            ("a bad token", Some("Bearer keel_not_a_token".to_owned()), 401),
            ("a malformed header", Some("Token abc".to_owned()), 401),
            ("an expired token", Some(format!("Bearer {expired}")), 401),
            ("a token of the wrong scope", Some(format!("Bearer {wrong}")), 403),
        ] {
            let response = send(header).await.expect("request");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert_eq!(status, expected, "{} {} with {what}: {body}", rule.method, rule.path);
            assert!(
                body["error"].as_str().is_some_and(|e| !e.contains("keel_not_a_token")),
                "{body}"
            );
        }
        assert_eq!(
            s.state().await,
            before,
            "{} {}: a refused request changed something",
            rule.method,
            rule.path
        );
        let right = s.token(Scopes::from_iter([scope])).await;
        let status = send(Some(format!("Bearer {right}")))
            .await
            .expect("request")
            .status()
            .as_u16();
        assert!(
            status != 401 && status != 403,
            "{} {} with the {scope} scope answered {status}",
            rule.method,
            rule.path
        );
        checked += 1;
    }
    assert!(checked >= 18, "only {checked} routes needed a scope");
    // Every refusal was audited (by a background writer: wait for it), without the secret.
    let mut audit = Vec::new();
    for _ in 0..100 {
        audit = s.store.audit_events(10_000, Some("route/"), None).await.expect("audit");
        if audit.len() >= checked * 5 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(audit.len(), checked * 5, "one audit record per refused request");
    let dump = serde_json::to_string(&audit).expect("json");
    assert!(
        !dump.contains("keel_not_a_token") && !dump.contains(&expired),
        "no secret in the audit log"
    );
}

#[tokio::test]
async fn the_console_cookie_opens_the_console_only_and_browsers_are_sent_to_the_login_form() {
    let s = secured().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let viewer = s.token(Scopes::from_iter([Scope::View])).await;
    let cookie = format!("keel_console={viewer}");
    let get = |path: &str, cookie: Option<&str>, html: bool| {
        let mut request = client.get(format!("http://{}{path}", s.http));
        if let Some(c) = cookie {
            request = request.header("cookie", c.to_owned());
        }
        if html {
            request = request.header("accept", "text/html,application/xhtml+xml");
        }
        request.send()
    };
    // The cookie is the credential of /ui pages...
    let page = get("/ui/", Some(&cookie), true).await.expect("request");
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .expect("ascii")
            .contains("default-src 'self'")
    );
    assert!(page.text().await.expect("body").contains("signed in as <b>svc</b>"));
    // ...and of nothing else: the API ignores it (no cross-site requests with a cookie).
    for path in ["/v1/deployments", "/v2/models/bc-lr"] {
        let api = get(path, Some(&cookie), false).await.expect("request");
        assert_eq!(api.status().as_u16(), 401, "{path} with the console cookie");
    }
    // A browser without a credential is sent to the login form, a program gets the JSON 401.
    let browser = get("/ui/models/bc-lr", None, true).await.expect("request");
    assert_eq!(browser.status().as_u16(), 303);
    assert_eq!(browser.headers()["location"], "/ui/login?next=%2Fui%2Fmodels%2Fbc-lr");
    let program = get("/ui/models/bc-lr", None, false).await.expect("request");
    assert_eq!(program.status().as_u16(), 401);
    // A revoked or bad cookie is cleared on the way to the login form.
    let stale = get("/ui/", Some("keel_console=keel_not_a_token"), true)
        .await
        .expect("request");
    assert_eq!(stale.status().as_u16(), 303);
    assert!(
        stale.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .contains("Max-Age=0")
    );
    // A credential without the page's scope: a page saying so, not the login form.
    let infer = s.token(Scopes::from_iter([Scope::Infer])).await;
    let refused = get("/ui/", Some(&format!("keel_console={infer}")), true)
        .await
        .expect("request");
    assert_eq!(refused.status().as_u16(), 403);
    assert!(refused.text().await.expect("body").contains("Not allowed"));
    // Logging in checks the token with the same authenticator and sets the cookie.
    let login = |token: &str| {
        client
            .post(format!("http://{}/ui/login", s.http))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}&next=%2Fui%2Fchanges"))
            .send()
    };
    let bad = login("keel_not_a_token").await.expect("request");
    assert_eq!(bad.status().as_u16(), 401);
    assert!(bad.headers().get("set-cookie").is_none());
    let good = login(&viewer).await.expect("request");
    assert_eq!(good.status().as_u16(), 303);
    assert_eq!(good.headers()["location"], "/ui/changes");
    let set = good.headers()["set-cookie"].to_str().expect("ascii");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/ui"),
        "{set}"
    );
}

#[tokio::test]
async fn a_forged_author_is_refused_and_the_change_is_recorded_as_who_authenticated() {
    let s = secured().await;
    let client = reqwest::Client::new();
    let deployer = s.token(Scopes::from_iter([Scope::Deploy])).await;
    let url = format!("http://{}/v1/deployments/promo", s.http);
    let spec = serde_json::json!({"variants": [{"name": "a"}, {"name": "b"}], "policy": {"type": "thompson_beta"}});
    let forged = client
        .put(&url)
        .bearer_auth(&deployer)
        .json(&serde_json::json!({"spec": spec, "author": "ceo@corp"}))
        .send()
        .await
        .expect("request");
    assert_eq!(forged.status().as_u16(), 400);
    let body: serde_json::Value = forged.json().await.expect("json");
    assert!(
        body["error"].as_str().expect("error").contains("\"ceo@corp\""),
        "{body}"
    );
    assert!(
        s.store.list_deployments().await.expect("list").is_empty(),
        "nothing recorded"
    );

    let ok = client
        .put(&url)
        .bearer_auth(&deployer)
        .json(&serde_json::json!({"spec": spec, "reason": "launch"}))
        .send()
        .await
        .expect("request");
    assert_eq!(ok.status().as_u16(), 200, "{:?}", ok.text().await);
    let revision = s.store.get_deployment("promo").await.expect("recorded");
    assert_eq!(revision.created_by, "svc");
    let change = s
        .store
        .list_changes(1, Some("deployment/promo"))
        .await
        .expect("changes");
    assert_eq!(change[0].actor, "svc", "the change log names who authenticated");
}

/// A minimal gRPC codec over raw bytes, so any method can be called by its path.
#[derive(Clone, Default)]
struct Raw;

impl tonic::codec::Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// `/package.Service/Method` of every rpc in the `.proto` files.
fn proto_methods() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let mut methods = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("proto dir") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
        let package = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("package "))
            .map(|p| p.trim_end_matches(';').trim().to_owned())
            .expect("package");
        let mut service = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("service ") {
                service = rest.split_whitespace().next().map(str::to_owned);
            } else if let (Some(rest), Some(svc)) = (line.strip_prefix("rpc "), &service) {
                let name = rest.split(['(', ' ']).next().expect("rpc name");
                methods.push(format!("/{package}.{svc}/{name}"));
            }
        }
    }
    methods.sort();
    methods
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_method_refuses_missing_bad_expired_and_wrong_scope_credentials() {
    let methods = proto_methods();
    assert!(methods.len() >= 13, "{methods:?}");
    let mut listed: Vec<String> = GRPC_RULES.iter().map(|(p, _)| (*p).to_owned()).collect();
    listed.sort();
    assert_eq!(listed, methods, "every gRPC method has exactly one access rule");

    let s = secured().await;
    let expired = s.expired_token().await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", s.grpc))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    for (path, need) in GRPC_RULES {
        let call = |token: Option<String>| {
            let mut grpc = tonic::client::Grpc::new(channel.clone());
            let path: tonic::codegen::http::uri::PathAndQuery = path.parse().expect("path");
            async move {
                grpc.ready().await.expect("ready");
                let mut request = tonic::Request::new(Vec::new());
                if let Some(t) = token {
                    request
                        .metadata_mut()
                        .insert("authorization", t.parse().expect("ascii"));
                }
                grpc.unary::<Vec<u8>, Vec<u8>, Raw>(request, path, Raw).await
            }
        };
        let Need::Scope(scope) = *need else {
            let answer = call(None).await;
            assert!(answer.is_ok(), "{path} is open: {answer:?}");
            continue;
        };
        let wrong = s.token(all_but(scope)).await;
        let before = s.state().await;
        for (what, header, expected) in [
            ("no credential", None, tonic::Code::Unauthenticated),
            (
                "a bad token",
                Some("Bearer keel_nope".to_owned()),
                tonic::Code::Unauthenticated,
            ),
            (
                "an expired token",
                Some(format!("Bearer {expired}")),
                tonic::Code::Unauthenticated,
            ),
            (
                "a token of the wrong scope",
                Some(format!("Bearer {wrong}")),
                tonic::Code::PermissionDenied,
            ),
        ] {
            let status = call(header).await.expect_err("refused");
            assert_eq!(status.code(), expected, "{path} with {what}: {status:?}");
        }
        assert_eq!(s.state().await, before, "{path}: a refused call changed something");
        let right = s.token(Scopes::from_iter([scope])).await;
        if let Err(status) = call(Some(format!("Bearer {right}"))).await {
            assert!(
                !matches!(
                    status.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ),
                "{path} with the {scope} scope: {status:?}"
            );
        }
    }
}
