//! The gate in front of every route and RPC: admission (a bounded number of requests in
//! flight per server and per class, answered 503 with `Retry-After` at once beyond it, never
//! queued), authentication and authorisation (the credential must grant the route's scope;
//! the principal goes into the request for handlers to record), and a timeout.
//!
//! Refusals are counted (`keel_requests_refused_total{reason, transport}`) and audited in the
//! store (who, route, why; never the credential) by a background writer, so a flood of bad
//! credentials cannot make every request wait for a database write. If the writer falls behind,
//! refusals past its queue are counted in one summary record instead of one record each.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_auth::{AuthError, Authenticator, Principal, Scope};
use keel_store::{NewAuditEvent, Store};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::access::{Class, Lookup, Need, RouteTable, grpc_need};
use crate::error::{ApiError, error_response};

/// Refusals waiting for the audit writer; past this they are counted in a summary record.
const AUDIT_QUEUE: usize = 4096;
/// What `Retry-After` says when a server is at its limit.
const RETRY_AFTER_S: u64 = 1;
/// How long a refused request's body is read (and discarded) before the answer.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// Whether requests must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Required as soon as any listener is on a non-loopback address; off on loopback.
    #[default]
    Auto,
    Required,
    Off,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<AuthMode, String> {
        match s {
            "auto" => Ok(AuthMode::Auto),
            "required" => Ok(AuthMode::Required),
            "off" => Ok(AuthMode::Off),
            other => Err(format!("unknown auth mode {other:?}: use auto, required or off")),
        }
    }
}

/// The default of `--max-model-bytes`: 2 GiB, the most one ONNX protobuf can hold.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// How many requests may be in flight at once, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// In the whole server (probes not counted).
    pub in_flight: usize,
    pub inference: usize,
    pub decide: usize,
    pub admin: usize,
    /// A request still running after this is answered 503 (`timeout`) and abandoned.
    pub request_timeout: Duration,
    /// The largest model a push over the API accepts (`--max-model-bytes`), in bytes.
    pub model_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            in_flight: 512,
            inference: 256,
            decide: 256,
            admin: 32,
            request_timeout: Duration::from_secs(30),
            model_bytes: DEFAULT_MAX_MODEL_BYTES,
        }
    }
}

/// Who may call, how many at once.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    pub mode: AuthMode,
    /// Serve without authentication on a non-loopback address (refused otherwise).
    pub allow_unauthenticated_network: bool,
    pub auth: keel_auth::AuthConfig,
    /// Serve `/metrics` without a credential.
    pub metrics_open: bool,
    pub limits: Limits,
}

/// Why a server's access settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(
        "refusing to serve without authentication on {0}, which is not a loopback address: anyone who can reach it could change deployments and sign as anyone. Use --auth required (and `keel access token create`), or pass --allow-unauthenticated-network-access if this network is truly private"
    )]
    OpenOnNetwork(std::net::SocketAddr),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// Whether authentication is on for listeners at `addrs` under `config`.
pub fn auth_required(config: &AccessConfig, addrs: &[std::net::SocketAddr]) -> Result<bool, AccessError> {
    let exposed = addrs.iter().find(|a| !is_loopback(a.ip()));
    match (config.mode, exposed) {
        (AuthMode::Required, _) => Ok(true),
        (AuthMode::Auto, Some(_)) => Ok(true),
        (AuthMode::Auto, None) | (AuthMode::Off, None) => Ok(false),
        (AuthMode::Off, Some(addr)) if config.allow_unauthenticated_network => {
            tracing::warn!(%addr, "authentication is OFF on a non-loopback address: anyone who can reach it may change this server");
            Ok(false)
        }
        (AuthMode::Off, Some(addr)) => Err(AccessError::OpenOnNetwork(*addr)),
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

struct Refusal {
    actor: String,
    route: String,
    transport: &'static str,
    reason: &'static str,
    status: u16,
}

/// The gate: shared by the REST and gRPC listeners of one server.
pub struct Gate {
    table: RouteTable,
    auth: Option<Arc<Authenticator>>,
    required: bool,
    metrics_open: bool,
    limits: Limits,
    total: Arc<Semaphore>,
    inference: Arc<Semaphore>,
    decide: Arc<Semaphore>,
    admin: Arc<Semaphore>,
    audit: Option<mpsc::Sender<Refusal>>,
    unaudited: Arc<AtomicU64>,
    max_body: usize,
}

/// A request's slots; released when the answer is built.
pub(crate) struct Permits(#[allow(dead_code)] Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>);

impl Gate {
    /// A gate over `table`. With `required`, every request but probes must carry a credential
    /// `auth` accepts; without, a request with no credential acts as [`keel_auth::ANONYMOUS`]
    /// with every scope, and one with a credential is held to it (so per-person grants and
    /// attribution still work on a loopback server). Refusals are audited in `store` by a writer
    /// task, returned to be awaited after the listeners stop.
    pub fn new(
        table: RouteTable,
        auth: Option<Arc<Authenticator>>,
        required: bool,
        metrics_open: bool,
        limits: Limits,
        store: Option<Store>,
        max_body: usize,
    ) -> (Arc<Gate>, Option<JoinHandle<()>>) {
        let unaudited = Arc::new(AtomicU64::new(0));
        let (audit, writer) = match store {
            Some(store) => {
                let (tx, rx) = mpsc::channel(AUDIT_QUEUE);
                (
                    Some(tx),
                    Some(tokio::spawn(write_refusals(store, rx, unaudited.clone()))),
                )
            }
            None => (None, None),
        };
        let gate = Gate {
            table,
            required: required && auth.is_some(),
            auth,
            metrics_open,
            limits,
            total: Arc::new(Semaphore::new(limits.in_flight.max(1))),
            inference: Arc::new(Semaphore::new(limits.inference.max(1))),
            decide: Arc::new(Semaphore::new(limits.decide.max(1))),
            admin: Arc::new(Semaphore::new(limits.admin.max(1))),
            audit,
            unaudited,
            max_body,
        };
        (Arc::new(gate), writer)
    }

    pub fn auth_required(&self) -> bool {
        self.required
    }

    pub fn table(&self) -> &RouteTable {
        &self.table
    }

    /// Slots for one request of `class`, or `None` when the server or the class is full.
    pub(crate) fn admit(&self, class: Class) -> Option<Permits> {
        let pool = match class {
            Class::Probe => return Some(Permits(None)),
            Class::Inference => &self.inference,
            Class::Decide => &self.decide,
            Class::Admin => &self.admin,
        };
        let total = self.total.clone().try_acquire_owned().ok()?;
        let slot = pool.clone().try_acquire_owned().ok()?;
        Some(Permits(Some((total, slot))))
    }

    fn limit_of(&self, class: Class) -> usize {
        match class {
            Class::Probe => usize::MAX,
            Class::Inference => self.limits.inference,
            Class::Decide => self.limits.decide,
            Class::Admin => self.limits.admin,
        }
    }

    /// The principal a request acts as, if the route needs one.
    pub(crate) async fn authorize(
        &self,
        need: Need,
        authorization: Option<&str>,
    ) -> Result<Option<Arc<Principal>>, AuthError> {
        let scope = match need {
            Need::Open | Need::OpenLimited => return Ok(None),
            Need::Scope(Scope::Metrics) if self.metrics_open => return Ok(None),
            Need::Scope(scope) => scope,
        };
        let auth = match (&self.auth, authorization) {
            (Some(auth), Some(_)) => auth,
            (Some(auth), None) if self.required => auth,
            _ => return Ok(Some(Arc::new(Principal::anonymous()))),
        };
        let principal = auth.authenticate(authorization).await?;
        principal.require(scope)?;
        Ok(Some(principal))
    }

    /// Counts and audits a refused request (never its credential).
    fn refused(&self, route: String, transport: &'static str, error: &AuthError, status: u16) {
        let actor = match error {
            AuthError::Forbidden { principal, .. } => principal.clone(),
            _ => "unauthenticated".to_owned(),
        };
        metrics::counter!("keel_requests_refused_total", "reason" => error.reason(), "transport" => transport)
            .increment(1);
        tracing::debug!(%route, transport, reason = error.reason(), %actor, "request refused");
        if let Some(tx) = &self.audit {
            let refusal = Refusal {
                actor,
                route,
                transport,
                reason: error.reason(),
                status,
            };
            if tx.try_send(refusal).is_err() {
                self.unaudited.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn shed(&self, class: Class, transport: &'static str) -> String {
        metrics::counter!("keel_requests_shed_total", "class" => class.as_str(), "transport" => transport).increment(1);
        format!(
            "keel is at its limit of {} {} requests in flight (or {} in all); retry after {RETRY_AFTER_S} s",
            self.limit_of(class),
            class.as_str(),
            self.limits.in_flight
        )
    }
}

async fn write_refusals(store: Store, mut rx: mpsc::Receiver<Refusal>, unaudited: Arc<AtomicU64>) {
    while let Some(r) = rx.recv().await {
        let resource = format!("route/{}", r.route);
        let event = NewAuditEvent {
            actor: &r.actor,
            action: "request.refused",
            resource: &resource,
            allowed: false,
            via: r.transport,
            details: serde_json::json!({ "reason": r.reason, "status": r.status }),
        };
        if let Err(e) = store.audit(event).await {
            tracing::warn!(error = %e, "cannot audit a refused request");
        }
        let missed = unaudited.swap(0, Ordering::Relaxed);
        if missed > 0 {
            let event = NewAuditEvent {
                actor: "unauthenticated",
                action: "request.refused",
                resource: "server",
                allowed: false,
                via: "api",
                details: serde_json::json!({ "not_itemised": missed, "why": "refusals arrived faster than the audit log could record them one by one" }),
            };
            if let Err(e) = store.audit(event).await {
                tracing::warn!(error = %e, "cannot audit refused requests");
            }
        }
    }
}

/// The REST side: `Router::layer(axum::middleware::from_fn_with_state(gate, gate::rest))`.
pub(crate) async fn rest(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned()) else {
        return next.run(req).await;
    };
    let need = match gate.table.need(req.method(), &path) {
        Lookup::Rule(need) => need,
        Lookup::OtherMethod => return next.run(req).await,
        Lookup::NoRule => {
            tracing::error!(%path, "a routed path has no access rule; refusing (this is a keel bug)");
            return error_response(
                StatusCode::FORBIDDEN,
                "no_access_rule",
                &format!("{path} has no access rule, so no one may call it; please report this"),
            );
        }
    };
    let class = need.class();
    let Some(_permits) = gate.admit(class) else {
        let message = gate.shed(class, "rest");
        let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, "overloaded", &message);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
        return after_draining(req, gate.max_body, response).await;
    };
    let console = path == "/ui" || path.starts_with("/ui/");
    let authorization = match req.headers().get(header::AUTHORIZATION) {
        Some(v) => v.to_str().ok().map(str::to_owned),
        // The console's login cookie is a credential for the console's pages only: never for
        // /v1 or /v2, so a cross-site request cannot use it on the API.
        None if console => keel_console::login::cookie_token(req.headers()).map(|t| format!("Bearer {t}")),
        None => None,
    };
    match gate.authorize(need, authorization.as_deref()).await {
        Ok(Some(principal)) => {
            req.extensions_mut().insert(principal);
        }
        Ok(None) => {}
        Err(e) => {
            let route = format!("{} {path}", req.method());
            let status = crate::error::http_status(e.kind());
            gate.refused(route, "rest", &e, status.as_u16());
            if console && wants_html(&req) {
                let response = console_refusal(&req, status, &e.to_string());
                return after_draining(req, gate.max_body, response).await;
            }
            let mut response = ApiError::from(e).into_response();
            if status == StatusCode::UNAUTHORIZED {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            return after_draining(req, gate.max_body, response).await;
        }
    }
    match tokio::time::timeout(gate.limits.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            metrics::counter!("keel_requests_timed_out_total", "class" => class.as_str()).increment(1);
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                &format!(
                    "the request took longer than {:?} and was abandoned; retry, or raise --request-timeout",
                    gate.limits.request_timeout
                ),
            )
        }
    }
}

/// Whether a request comes from a browser showing pages (rather than a program).
fn wants_html(req: &Request) -> bool {
    req.headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// A console page refused to a browser: without a valid credential, to the login form (and a
/// stale cookie is cleared); with one that lacks the scope, a page saying so.
fn console_refusal(req: &Request, status: StatusCode, message: &str) -> Response {
    if status != StatusCode::UNAUTHORIZED {
        return keel_console::refused_page(message);
    }
    let next = req.uri().path_and_query().map_or("/ui/", |p| p.as_str());
    let to = format!("/ui/login?next={}", keel_console::html::query_value(next));
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    if keel_console::login::cookie_token(req.headers()).is_some() {
        response.headers_mut().insert(
            header::SET_COOKIE,
            HeaderValue::from_static("keel_console=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0"),
        );
    }
    response
}

/// `response` to a request refused before its body was read: the body is read and discarded
/// first (up to `limit` bytes, for at most [`DRAIN_TIME`]; nothing is kept), so that an HTTP/1.1
/// client still sending it receives the answer rather than a reset connection. A body that was
/// not drained closes the connection after the answer.
pub(crate) async fn after_draining(req: Request, limit: usize, mut response: Response) -> Response {
    use http_body_util::BodyExt;
    let mut body = req.into_body();
    let drained = tokio::time::timeout(DRAIN_TIME, async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > limit {
                return false;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if !drained {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// The gRPC side, as a tower layer on tonic's server.
#[derive(Clone)]
pub(crate) struct GrpcLayer(pub Arc<Gate>);

impl<S> tower::Layer<S> for GrpcLayer {
    type Service = GrpcGate<S>;
    fn layer(&self, inner: S) -> GrpcGate<S> {
        GrpcGate {
            inner,
            gate: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub(crate) struct GrpcGate<S> {
    inner: S,
    gate: Arc<Gate>,
}

type GrpcRequest = axum::http::Request<tonic::body::Body>;
type GrpcResponse = axum::http::Response<tonic::body::Body>;

impl<S> tower::Service<GrpcRequest> for GrpcGate<S>
where
    S: tower::Service<GrpcRequest, Response = GrpcResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = GrpcResponse;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<GrpcResponse, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: GrpcRequest) -> Self::Future {
        // The service that was polled ready serves this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = self.gate.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            // Every method keel implements has a rule (tests/serving/access.rs checks the
            // .proto files), so a path without one is not served: never passed on.
            let Some(need) = grpc_need(&path) else {
                let status = tonic::Status::unimplemented(format!("keel does not implement {path}"));
                return Ok(status.into_http());
            };
            let class = need.class();
            let Some(_permits) = gate.admit(class) else {
                return Ok(tonic::Status::unavailable(gate.shed(class, "grpc")).into_http());
            };
            let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            match gate.authorize(need, authorization).await {
                Ok(Some(principal)) => {
                    req.extensions_mut().insert(principal);
                }
                Ok(None) => {}
                Err(e) => {
                    gate.refused(path, "grpc", &e, crate::error::http_status(e.kind()).as_u16());
                    return Ok(crate::error::grpc_status(&e).into_http());
                }
            }
            match tokio::time::timeout(gate.limits.request_timeout, inner.call(req)).await {
                Ok(answer) => answer,
                Err(_) => {
                    metrics::counter!("keel_requests_timed_out_total", "class" => class.as_str()).increment(1);
                    Ok(tonic::Status::deadline_exceeded(format!(
                        "the call took longer than {:?} and was abandoned; retry, or raise --request-timeout",
                        gate.limits.request_timeout
                    ))
                    .into_http())
                }
            }
        })
    }
}
