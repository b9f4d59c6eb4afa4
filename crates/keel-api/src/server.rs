//! Binding both listeners and running them until shutdown.

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::future::Either;

use keel_experiments::Deployments;
use keel_serving::InferenceService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use keel_auth::Authenticator;
use keel_store::Store;

use crate::access::{RouteTable, Routes};
use crate::experiments::TableUses;
use crate::experiments_proto::experiments_server::ExperimentsServer;
use crate::gate::{Gate, GrpcLayer, Limits};
use crate::grpc::GrpcService;
use crate::grpc_experiments::GrpcDeployments;
use crate::proto::grpc_inference_service_server::GrpcInferenceServiceServer;
use crate::tls::{TlsCerts, TlsConfig, TlsListener};

/// How long shutdown waits for deployments' background tasks (webhooks time out sooner).
const DEPLOYMENTS_DRAIN: std::time::Duration = std::time::Duration::from_secs(15);

/// Where and how to listen.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// Largest request body (REST) or message (gRPC) accepted, in bytes.
    pub max_body_bytes: usize,
    /// Serve both listeners over TLS with these files; `None`: plain HTTP and gRPC.
    pub tls: Option<TlsConfig>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            max_body_bytes: 16 * 1024 * 1024,
            tls: None,
        }
    }
}

/// What the server exposes.
#[derive(Clone)]
pub struct Services {
    pub inference: Arc<InferenceService>,
    pub experiments: Option<Arc<Deployments>>,
    /// More REST routes merged into the app (the `/v1/data` routes when the binary has the lake).
    pub extra_rest: Option<Routes>,
    /// More gRPC services beside inference and experiments (the jobs service when the binary
    /// has the lake), behind the same gate.
    pub extra_grpc: Option<tonic::service::Routes>,
    /// Who may call, how many at once.
    pub access: ServerAccess,
}

/// How a server's gate is set up (see [`crate::gate`]). The default: no credentials checked
/// (every request acts as `anonymous`), default limits, refusals not audited.
#[derive(Clone, Default)]
pub struct ServerAccess {
    /// Checks credentials; `None`: none are accepted (every request is `anonymous`).
    pub auth: Option<Arc<Authenticator>>,
    /// Every request (but probes) must carry a credential.
    pub required: bool,
    /// Serve `/metrics` without a credential.
    pub metrics_open: bool,
    pub limits: Limits,
    /// Where refused requests are audited.
    pub audit: Option<Store>,
    /// Checks the lake tables requests name (a monitor's reference when a deployment is
    /// applied, a push's training data).
    pub tables: Option<Arc<dyn TableUses>>,
}

impl Services {
    /// The REST routes this server serves, each with its rule.
    pub fn rest_routes(&self, max_body_bytes: usize) -> Routes {
        let routes = crate::rest::router(
            self.inference.clone(),
            self.experiments.clone(),
            crate::prometheus(),
            max_body_bytes,
            self.access.tables.clone(),
        );
        // The web console (/ui/), over the same deployments and registry.
        let routes = match &self.experiments {
            Some(deployments) => {
                let console = Arc::new(keel_console::Console::new(
                    deployments.clone(),
                    self.inference.registry().clone(),
                    self.access.auth.clone(),
                    self.access.required,
                    |kind| crate::error::http_status(kind).as_u16(),
                ));
                // One follower of the decision logs for the charts and the timeline route.
                console.keep_timelines_current();
                routes
                    .merge(crate::timeline::router(deployments.clone(), console.timelines()))
                    .merge(crate::access::console(keel_console::routes(), console))
            }
            None => routes,
        };
        match self.extra_rest.clone() {
            Some(extra) => routes.merge(extra),
            None => routes,
        }
    }
}

/// Both listeners, bound (so port 0 resolves to a real port before serving starts).
pub struct BoundServer {
    http: TcpListener,
    grpc: TcpListener,
    config: ServeConfig,
    tls: Option<Tls>,
}

/// The certificates and one acceptor per listener (ALPN: HTTP/1.1 for REST, h2 for gRPC).
struct Tls {
    certs: Arc<TlsCerts>,
    http: TlsAcceptor,
    grpc: TlsAcceptor,
}

impl BoundServer {
    /// Binds both addresses (and reads the TLS files, if any); the error names the address
    /// that could not be bound, or the file that is wrong.
    pub async fn bind(config: ServeConfig) -> std::io::Result<BoundServer> {
        let tls = match &config.tls {
            Some(files) => {
                let certs = TlsCerts::load(files.clone())?;
                Some(Tls {
                    http: certs.acceptor(&[b"http/1.1"])?,
                    grpc: certs.acceptor(&[b"h2"])?,
                    certs,
                })
            }
            None => None,
        };
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen for {what} on {addr}: {e}; choose another address with --{what}-addr"),
                )
            })
        };
        let http = bind(config.http_addr, "http").await?;
        let grpc = bind(config.grpc_addr, "grpc").await?;
        Ok(BoundServer {
            http,
            grpc,
            config,
            tls,
        })
    }

    /// The certificates both listeners serve, when TLS is on.
    pub fn tls(&self) -> Option<&Arc<TlsCerts>> {
        self.tls.as_ref().map(|tls| &tls.certs)
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    /// Serves REST and gRPC until `shutdown` is cancelled, then drains in-flight requests.
    /// With deployments, their upkeep runs every second meanwhile, and their background tasks
    /// are drained before this returns.
    pub async fn run(self, services: Services, shutdown: CancellationToken) -> std::io::Result<()> {
        let metrics = crate::prometheus();
        // The exporter keeps histogram samples until they are folded into buckets: do it every
        // few seconds so memory stays flat whether or not anyone scrapes /metrics.
        let upkeep = {
            let stop = shutdown.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = tick.tick() => metrics.run_upkeep(),
                    }
                }
            })
        };
        let (router, rules) = services.rest_routes(self.config.max_body_bytes).into_parts();
        let access = &services.access;
        let (gate, audit_writer) = Gate::new(
            RouteTable::new(&rules),
            access.auth.clone(),
            access.required,
            access.metrics_open,
            access.limits,
            access.audit.clone(),
            self.config.max_body_bytes,
        );
        if let Some(auth) = access.auth.clone() {
            let stop = shutdown.clone();
            tokio::spawn(auth.watch_revocations(async move { stop.cancelled().await }));
        }
        let app = crate::rest::finish(
            router
                .layer(axum::middleware::from_fn_with_state(gate.clone(), crate::gate::rest))
                .layer(axum::Extension(keel_console::Tls(self.tls.is_some()))),
        );
        // Server spans only when something exports them: the middleware is not free.
        let traced = tracing::enabled!(target: crate::trace::TRACE_TARGET, tracing::Level::INFO);
        let app = if traced {
            app.layer(axum::middleware::from_fn(crate::trace::http))
        } else {
            app
        };
        let http_shutdown = shutdown.clone();
        let http_shutdown = async move { http_shutdown.cancelled().await };
        // TLS or not, decided once here: the plain path keeps axum's own TCP listener.
        let http = match &self.tls {
            None => Either::Left(
                axum::serve(self.http, app)
                    .with_graceful_shutdown(http_shutdown)
                    .into_future(),
            ),
            Some(tls) => Either::Right(
                axum::serve(TlsListener::rest(self.http, tls.http.clone()), app)
                    .with_graceful_shutdown(http_shutdown)
                    .into_future(),
            ),
        };

        let grpc_service = GrpcInferenceServiceServer::new(GrpcService::new(services.inference.clone()))
            .max_decoding_message_size(self.config.max_body_bytes)
            .max_encoding_message_size(usize::MAX);
        let grpc_shutdown = shutdown.clone();
        let grpc_shutdown = async move { grpc_shutdown.cancelled().await };
        let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
        if traced {
            builder = builder.trace_fn(crate::trace::grpc);
        }
        let mut routes = services
            .extra_grpc
            .clone()
            .unwrap_or_default()
            .add_service(grpc_service);
        if let Some(experiments) = services.experiments.clone() {
            routes = routes.add_service(
                ExperimentsServer::new(GrpcDeployments::new(experiments.clone()))
                    .max_decoding_message_size(self.config.max_body_bytes),
            );
            // Attribution windows, safeguards and drift every second, on the deployments'
            // own task tracker (drained by `shutdown` below).
            experiments.spawn_upkeep();
        }
        let router = builder.layer(GrpcLayer(gate.clone())).add_routes(routes);
        let grpc = match &self.tls {
            None => Either::Left(router.serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(self.grpc),
                grpc_shutdown,
            )),
            Some(tls) => Either::Right(router.serve_with_incoming_shutdown(
                TlsListener::grpc(self.grpc, tls.grpc.clone()).into_stream(),
                grpc_shutdown,
            )),
        };
        let reloader = self
            .tls
            .as_ref()
            .map(|tls| tls.certs.clone().spawn_reloader(shutdown.clone()));

        drop(gate);
        let (h, g) = tokio::join!(http, grpc);
        let _ = upkeep.await;
        // The listeners are gone, and with them the gate: the audit writer drains and ends.
        if let Some(writer) = audit_writer
            && tokio::time::timeout(std::time::Duration::from_secs(5), writer)
                .await
                .is_err()
        {
            tracing::warn!("some refused requests were not audited before shutdown");
        }
        if let Some(reloader) = reloader {
            let _ = reloader.await;
        }
        // Background work of deployments (shadows, drift, webhooks) finishes, bounded, before
        // their logs close.
        if let Some(e) = &services.experiments {
            e.shutdown(DEPLOYMENTS_DRAIN).await;
        }
        // Last: requests and deployments are done, so everything they logged is queued.
        if let Some(log) = services.inference.prediction_log() {
            log.shutdown().await;
        }
        h?;
        g.map_err(std::io::Error::other)?;
        Ok(())
    }
}
