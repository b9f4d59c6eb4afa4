//! `--max-body-bytes` on every REST route that reads a body: one byte past the limit is a 413
//! with the JSON error body (`"code": "payload_too_large"`), never a 400 or a 503, and a body
//! within the limit reaches the route as before.

use std::sync::Arc;

use keel_api::{BoundServer, ServeConfig, ServerAccess, Services};
use keel_store::Store;
use tokio_util::sync::CancellationToken;

const LIMIT: usize = 1024;

/// A server with a small body limit and no models (a body past the limit is refused before
/// any model is looked up); with the lake feature, the `/v1/data` routes too.
struct LimitedServer {
    http: std::net::SocketAddr,
    client: reqwest::Client,
    /// A bearer token for `/v1/data` (lake builds only).
    token: Option<String>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for LimitedServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl LimitedServer {
    async fn start() -> LimitedServer {
        let _ = keel_api::prometheus();
        let dir = tempfile::tempdir().expect("tempdir");
        let crate::support::Parts {
            store,
            service,
            experiments,
            ..
        } = crate::support::parts(dir.path()).await;
        let (extra_rest, token) = data_routes(&store, dir.path()).await;
        let server = BoundServer::bind(ServeConfig {
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            max_body_bytes: LIMIT,
            tls: None,
        })
        .await
        .expect("bind");
        let http = server.http_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let auth = keel_auth::Authenticator::new(store.clone(), keel_auth::AuthConfig::default())
            .await
            .expect("authenticator");
        let services = Services {
            inference: Arc::clone(&service),
            experiments: Some(experiments),
            extra_rest,
            extra_grpc: None,
            access: ServerAccess {
                auth: Some(auth),
                ..ServerAccess::default()
            },
        };
        tokio::spawn(server.run(services, shutdown.clone()));
        LimitedServer {
            http,
            client: reqwest::Client::new(),
            token,
            shutdown,
            _dir: dir,
        }
    }

    /// Sends `body` with `method` to `path` (with the bearer token on `/v1/data`); the status
    /// and the JSON body.
    async fn send(&self, method: reqwest::Method, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let mut request = self
            .client
            .request(method, format!("http://{}{}", self.http, path))
            .header("content-type", "application/json")
            .body(body);
        if let (true, Some(token)) = (path.starts_with("/v1/data"), &self.token) {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path}: answer {status} is not JSON ({e}): {bytes:?}"));
        (status, json)
    }
}

/// The `/v1/data` routes over a fresh local lake, and a token of the catalog's first principal.
#[cfg(feature = "lake")]
async fn data_routes(store: &Store, home: &std::path::Path) -> (Option<keel_api::access::Routes>, Option<String>) {
    let catalog = keel_catalog::Catalog::new(store.clone());
    let admin = catalog.actor("admin").await.expect("first principal");
    let request = keel_auth::tokens::TokenRequest {
        principal: "admin",
        scopes: keel_auth::Scopes::parse("data:read").expect("scope"),
        label: None,
        expires_in: None,
    };
    let token = keel_auth::tokens::issue(&catalog, &admin, request)
        .await
        .expect("token")
        .secret;
    let lake = keel_lake::Lake::open(&home.join("lake")).expect("lake");
    (Some(keel_api::data::router(catalog, lake, LIMIT)), Some(token))
}

#[cfg(not(feature = "lake"))]
async fn data_routes(_: &Store, _: &std::path::Path) -> (Option<keel_api::access::Routes>, Option<String>) {
    (None, None)
}

/// A JSON body of exactly `len` bytes: `{"pad":"xxx…"}`.
fn body_of(len: usize) -> Vec<u8> {
    let head = br#"{"pad":""#;
    let tail = br#""}"#;
    let mut body = head.to_vec();
    body.resize(len - tail.len(), b'x');
    body.extend_from_slice(tail);
    assert_eq!(body.len(), len);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_that_reads_a_body_answers_413_past_the_limit() {
    let server = LimitedServer::start().await;
    let mut routes = vec![
        (reqwest::Method::POST, "/v2/models/bc-lr/infer"),
        (reqwest::Method::POST, "/v2/models/bc-lr/versions/1/infer"),
        (reqwest::Method::POST, "/v2/repository/index"),
        (reqwest::Method::POST, "/v2/repository/models/bc-lr/load"),
        (reqwest::Method::PUT, "/v1/deployments/checkout"),
        (reqwest::Method::POST, "/v1/deployments/checkout/decide"),
        (reqwest::Method::POST, "/v1/deployments/checkout/feedback"),
        (reqwest::Method::POST, "/v1/deployments/checkout/feedback/batch"),
        (reqwest::Method::POST, "/v1/labels"),
    ];
    if cfg!(feature = "lake") {
        routes.push((reqwest::Method::POST, "/v1/data/sql"));
    }
    for (method, path) in routes {
        let (status, body) = server.send(method.clone(), path, body_of(LIMIT + 1)).await;
        assert_eq!(status, 413, "{method} {path}: {body}");
        assert_eq!(body["code"], "payload_too_large", "{method} {path}: {body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("over the limit of {LIMIT} bytes")) && message.contains("--max-body-bytes"),
            "{method} {path}: {body}"
        );
        // At the limit, the body reaches the route, which answers on its own grounds (mostly a
        // 4xx for the padding, a 200 where unknown fields are ignored), never a 413.
        let (status, body) = server.send(method.clone(), path, body_of(LIMIT)).await;
        assert_ne!(status, 413, "{method} {path}: {body}");
        assert!(status < 500 || status == 503, "{method} {path}: {status} {body}");
    }
}

/// The data routes check the caller before reading the body: no token is a 401 even past the
/// limit, so an anonymous caller learns nothing from the limit.
#[cfg(feature = "lake")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_sql_checks_the_token_before_the_body() {
    let server = LimitedServer::start().await;
    let response = server
        .client
        .post(format!("http://{}/v1/data/sql", server.http))
        .body(body_of(LIMIT + 1))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    let (status, body) = server
        .send(
            reqwest::Method::POST,
            "/v1/data/sql",
            serde_json::to_vec(&serde_json::json!({"sql": "SELECT 1 AS one"})).expect("json"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["rows"], serde_json::json!([{"one": 1}]));
}
