use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use keel_api::{BoundServer, ServeConfig, Services};
use keel_registry::{PushRequest, Registry, VersionSelector};
use keel_runtime::ModelOptions;
use keel_serving::{InferenceService, ModelRepository};
use keel_store::Store;
use tokio_util::sync::CancellationToken;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixtures().join(format!("{name}.onnx"))).expect("fixture exists")
}

pub fn expected() -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(fixtures().join("expected.json")).expect("expected.json")).expect("json")
}

/// A fresh workspace's parts in `dir`: store, registry, inference service and deployments
/// (not yet serving).
pub struct Parts {
    pub store: Store,
    pub registry: Registry,
    pub service: Arc<InferenceService>,
    pub experiments: Arc<keel_experiments::Deployments>,
}

pub async fn parts(dir: &std::path::Path) -> Parts {
    let store = Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store");
    let registry = Registry::open(store.clone(), &dir.join("artifacts").display().to_string()).expect("registry");
    let service = InferenceService::new(ModelRepository::new(registry.clone(), ModelOptions::default()));
    let experiments = keel_experiments::Deployments::open_with_models(
        store.clone(),
        dir.join("experiments"),
        keel_experiments::Durability::Fsync,
        Some(service.clone()),
    )
    .await
    .expect("experiments");
    Parts {
        store,
        registry,
        service,
        experiments,
    }
}

/// A running server over a fresh registry; stops when dropped.
pub struct TestServer {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub service: Arc<InferenceService>,
    pub registry: Registry,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestServer {
    /// Starts a server with the given fixtures registered (`@production` on each).
    pub async fn start(models: &[&str]) -> TestServer {
        TestServer::start_with(models, 1024 * 1024).await
    }

    pub async fn start_with(models: &[&str], max_body_bytes: usize) -> TestServer {
        let _ = keel_api::prometheus();
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("keel.db").display()))
            .await
            .expect("store");
        let registry = Registry::open(store, &dir.path().join("artifacts").display().to_string()).expect("registry");
        for name in models {
            push(&registry, name, &fixture(name)).await;
        }
        let service = InferenceService::new(ModelRepository::new(registry.clone(), ModelOptions::default()));
        let server = BoundServer::bind(ServeConfig {
            http_addr: "127.0.0.1:0".parse().expect("addr"),
            grpc_addr: "127.0.0.1:0".parse().expect("addr"),
            max_body_bytes,
            tls: None,
        })
        .await
        .expect("bind");
        let (http, grpc) = (server.http_addr().expect("addr"), server.grpc_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let experiments = keel_experiments::Deployments::open_with_models(
            registry.store().clone(),
            dir.path().join("experiments"),
            keel_experiments::Durability::Fsync,
            Some(service.clone()),
        )
        .await
        .expect("experiments");
        let services = Services {
            inference: service.clone(),
            experiments: Some(experiments),
            extra_rest: None,
            extra_grpc: None,
            access: keel_api::ServerAccess::default(),
        };
        tokio::spawn(server.run(services, shutdown.clone()));
        let failures = service.load_all().await;
        assert!(failures.is_empty(), "models failed to load: {failures:?}");
        TestServer {
            http,
            grpc,
            service,
            registry,
            client: reqwest::Client::new(),
            shutdown,
            _dir: dir,
        }
    }

    pub fn home(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub async fn post_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.send_json(reqwest::Method::PUT, path, body).await
    }

    async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = self
            .client
            .request(method, self.url(path))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON response body"))
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON response body"))
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self.client.get(self.url(path)).send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON response body"))
    }
}

pub async fn push(registry: &Registry, name: &str, bytes: &[u8]) -> keel_registry::ModelVersion {
    let v = registry
        .push(
            PushRequest {
                name: name.to_string(),
                author: "test".into(),
                ..Default::default()
            },
            bytes.to_vec().into(),
        )
        .await
        .expect("push");
    registry
        .set_alias(name, "production", &VersionSelector::Number(v.version), "test", None)
        .await
        .expect("alias");
    v
}

/// One breast-cancer row as a V2 request for `bc-*` models.
pub fn bc_request(rows: usize) -> serde_json::Value {
    let exp = expected();
    let row: Vec<f64> = exp["models"]["bc-lr"]["rows"][0]
        .as_array()
        .expect("rows")
        .iter()
        .map(|v| v.as_f64().expect("number"))
        .collect();
    let data: Vec<f64> = (0..rows).flat_map(|_| row.clone()).collect();
    serde_json::json!({"inputs": [{"name": "input", "shape": [rows, 30], "datatype": "FP32", "data": data}]})
}
