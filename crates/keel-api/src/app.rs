//! Assembling a server: everything `keel serve` runs (and `keel demo` starts on a free port),
//! from a registry, a lake and a few settings. The binary turns flags into an [`AppConfig`] and
//! prints; the parts and the order they start and stop in are decided here, once.
//!
//! Start: the metrics recorder (so per-model handles register with it), the inference service
//! over the registry, the deployments recovered from their decision logs (model variants run on
//! that service), monitors' references read from the lake, the prediction log into the lake;
//! then both listeners, then every model version with an alias or a deployment is loaded.
//! Stop ([`RunningApp::stop`]): readiness off, listeners drain the requests in flight, the
//! deployments' background work is drained, and the prediction log writes what it holds.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use keel_experiments::{Deployments, Durability};
use keel_predlog::PredictionLog;
use keel_registry::Registry;
use keel_runtime::ModelOptions;
use keel_serving::{InferenceService, ModelRepository, ServingError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::gate::{AccessConfig, AccessError};
use crate::server::{BoundServer, ServeConfig, ServerAccess, Services};

/// The lake a server logs predictions to, serves `/v1/data` from and reads monitors'
/// references from; a unit type in a build without lake tables.
#[cfg(feature = "lake")]
pub type AppLake = keel_lake::Lake;
/// The lake a server logs predictions to; a unit type in a build without lake tables.
#[cfg(not(feature = "lake"))]
#[derive(Debug, Clone, Copy)]
pub struct AppLake;

/// What a server runs with, beside its registry and lake.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// ONNX Runtime sessions per loaded model; `None`: the runtime's default (one per core).
    pub sessions: Option<usize>,
    /// The folder of the deployments' decision logs.
    pub deployments_dir: PathBuf,
    /// When a decision or reward is acknowledged: after `fdatasync`, or once the OS has it.
    pub durability: Durability,
    /// Logging predictions, decisions and rewards into lake tables; `None`: off.
    pub prediction_log: Option<PredictionLogConfig>,
    /// Largest request body (REST) or message (gRPC), in bytes.
    pub max_body_bytes: usize,
    /// Authentication, authorisation and admission.
    pub access: AccessConfig,
    /// Both listeners over TLS with these files; `None`: plain HTTP and gRPC.
    pub tls: Option<crate::tls::TlsConfig>,
}

/// How the prediction log batches (see keel-predlog's `LogConfig`).
#[derive(Debug, Clone, Copy)]
pub struct PredictionLogConfig {
    pub queue: usize,
    pub batch_rows: usize,
    pub flush: Duration,
    /// Rows older than this many days are deleted from the log tables (hourly); `None`: kept.
    pub retention_days: Option<u32>,
}

/// Why a server could not be assembled or started.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot open the deployments: {0}")]
    Deployments(#[from] keel_experiments::DeploymentError),
    #[error("cannot start the prediction log: {0}")]
    PredictionLog(#[from] keel_predlog::PredlogError),
    #[error(
        "this keel was built without the lake feature, so it cannot log predictions: turn prediction logging off or build with the default features"
    )]
    NoLake,
    #[error("{0}")]
    Listen(#[from] std::io::Error),
    #[error(transparent)]
    Access(#[from] AccessError),
}

/// The assembled parts of a server, not yet listening.
pub struct App {
    pub inference: Arc<InferenceService>,
    pub deployments: Arc<Deployments>,
    pub prediction_log: Option<Arc<PredictionLog>>,
    max_body_bytes: usize,
    access: AccessConfig,
    store: keel_store::Store,
    tls: Option<crate::tls::TlsConfig>,
    #[cfg_attr(not(feature = "lake"), allow(dead_code))]
    data: Option<(keel_store::Store, AppLake)>,
    /// The job table both transports serve (REST `/v1/jobs`, gRPC `keel.jobs.v1.Jobs`).
    #[cfg(feature = "lake")]
    jobs: Option<crate::jobs::Jobs>,
}

impl App {
    /// Opens every part over `registry` and `lake` (`None`: no prediction log, no `/v1/data`,
    /// no monitor references).
    pub async fn open(registry: Registry, lake: Option<AppLake>, config: AppConfig) -> Result<App, AppError> {
        // The recorder first, so the per-model handles register with it.
        let _ = crate::prometheus();
        let mut options = ModelOptions::default();
        if let Some(n) = config.sessions {
            options.sessions = n.max(1);
        }
        let store = registry.store().clone();
        let inference = InferenceService::new(ModelRepository::new(registry, options));
        // Before the deployments open: a start may read records archived there.
        #[cfg(feature = "lake")]
        if let Some(lake) = &lake {
            keel_experiments::archive::register(
                &config.deployments_dir,
                Arc::new(keel_experiments::archive_lake::LakeArchive::new(lake.clone())),
            );
        }
        let deployments = Deployments::open_with_models(
            store.clone(),
            config.deployments_dir.clone(),
            config.durability,
            Some(inference.clone()),
        )
        .await?;
        let prediction_log = match (&config.prediction_log, &lake) {
            (None, _) => None,
            (Some(log), Some(lake)) => Some(start_log(lake, log)?),
            (Some(_), None) => return Err(AppError::NoLake),
        };
        if let Some(log) = &prediction_log {
            inference.set_prediction_log(log.clone());
            deployments.set_prediction_log(log.clone());
        }
        #[cfg(feature = "lake")]
        if let Some(lake) = &lake {
            deployments.set_reference_source(Arc::new(LakeReferences(lake.clone())));
        }
        #[cfg(feature = "lake")]
        let jobs = lake.as_ref().map(|lake| {
            let ws = keel_data::Workspace::new(keel_catalog::Catalog::new(store.clone()), lake.clone());
            crate::jobs::Jobs::new(ws, inference.registry().clone(), deployments.clone())
        });
        Ok(App {
            #[cfg(feature = "lake")]
            jobs,
            inference,
            deployments,
            prediction_log,
            max_body_bytes: config.max_body_bytes,
            access: config.access,
            store: store.clone(),
            tls: config.tls,
            data: lake.map(|lake| (store, lake)),
        })
    }

    /// Binds both listeners, starts serving, then loads the models (a model that fails to
    /// load is reported in [`RunningApp::load_failures`], the others serve). Authentication is
    /// decided here, from the addresses (see [`crate::gate::auth_required`]); a server whose
    /// access settings are unsafe or whose identity provider's keys cannot be read does not
    /// start.
    pub async fn start(self, http_addr: SocketAddr, grpc_addr: SocketAddr) -> Result<RunningApp, AppError> {
        let required = crate::gate::auth_required(&self.access, &[http_addr, grpc_addr])?;
        let auth = keel_auth::Authenticator::new(self.store.clone(), self.access.auth.clone())
            .await
            .map_err(AccessError::from)?;
        let server = BoundServer::bind(ServeConfig {
            http_addr,
            grpc_addr,
            max_body_bytes: self.max_body_bytes,
            tls: self.tls.clone(),
        })
        .await?;
        let tls = server.tls().is_some();
        let (http, grpc) = (server.http_addr()?, server.grpc_addr()?);
        let services = Services {
            inference: self.inference.clone(),
            experiments: Some(self.deployments.clone()),
            extra_rest: Some(self.own_routes()),
            extra_grpc: self.grpc_services(),
            access: ServerAccess {
                auth: Some(auth),
                required,
                metrics_open: self.access.metrics_open,
                limits: self.access.limits,
                audit: Some(self.store.clone()),
                tables: self.table_uses(),
            },
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.run(services, shutdown.clone()));
        let load_failures = self.inference.load_all().await;
        Ok(RunningApp {
            http,
            grpc,
            auth_required: required,
            tls,
            inference: self.inference,
            deployments: self.deployments,
            load_failures,
            shutdown,
            task,
        })
    }

    /// The registry and batch routes ([`client_routes`]), with the data routes when the build
    /// has the lake.
    fn own_routes(&self) -> crate::access::Routes {
        let routes = client_routes(
            self.inference.registry().clone(),
            self.deployments.clone(),
            self.max_body_bytes,
            self.access.limits.model_bytes,
            self.table_uses(),
        );
        match self.data_routes() {
            Some(data) => routes.merge(data),
            None => routes,
        }
    }

    #[cfg(feature = "lake")]
    fn table_uses(&self) -> Option<Arc<dyn crate::TableUses>> {
        let (store, lake) = self.data.clone()?;
        Some(Arc::new(WorkspaceTables(keel_data::Workspace::new(
            keel_catalog::Catalog::new(store),
            lake,
        ))))
    }

    #[cfg(not(feature = "lake"))]
    fn table_uses(&self) -> Option<Arc<dyn crate::TableUses>> {
        None
    }

    #[cfg(feature = "lake")]
    fn data_routes(&self) -> Option<crate::access::Routes> {
        let (store, lake) = self.data.clone()?;
        Some(
            data_routes(store, lake, self.max_body_bytes)
                .merge(crate::jobs::router(self.jobs.clone()?, self.max_body_bytes)),
        )
    }

    /// The jobs service (`keel.jobs.v1.Jobs`) over the same job table as `/v1/jobs`.
    #[cfg(feature = "lake")]
    fn grpc_services(&self) -> Option<tonic::service::Routes> {
        let jobs = crate::jobs::GrpcJobs::server(self.jobs.clone()?).max_decoding_message_size(self.max_body_bytes);
        Some(tonic::service::Routes::new(jobs))
    }

    #[cfg(not(feature = "lake"))]
    fn grpc_services(&self) -> Option<tonic::service::Routes> {
        None
    }

    #[cfg(not(feature = "lake"))]
    fn data_routes(&self) -> Option<crate::access::Routes> {
        None
    }
}

/// The model registry's routes (`/v1/models/...`, pushes up to `max_model_bytes`) and the batch
/// decide and feedback routes, as `keel serve` mounts them.
pub fn client_routes(
    registry: Registry,
    deployments: Arc<Deployments>,
    max_body_bytes: usize,
    max_model_bytes: u64,
    tables: Option<Arc<dyn crate::TableUses>>,
) -> crate::access::Routes {
    crate::models::router(registry.clone(), max_body_bytes, max_model_bytes, tables)
        .merge(crate::webhooks::router(registry.store().clone(), max_body_bytes))
        .merge(crate::changes::router(registry, deployments.clone(), max_body_bytes))
        .merge(crate::batch_routes::router(deployments, max_body_bytes))
}

/// The `/v1/data` routes and the console's data pages over `lake`, checked by the catalog in
/// `store`.
#[cfg(feature = "lake")]
pub fn data_routes(store: keel_store::Store, lake: AppLake, max_body_bytes: usize) -> crate::access::Routes {
    let console = keel_console::DataConsole::new(
        keel_data::Workspace::new(keel_catalog::Catalog::new(store.clone()), lake.clone()),
        |kind| crate::error::http_status(kind).as_u16(),
    );
    let ws = keel_data::Workspace::new(keel_catalog::Catalog::new(store.clone()), lake.clone());
    crate::data::router(keel_catalog::Catalog::new(store), lake, max_body_bytes)
        .merge(crate::histograms::router(ws))
        .merge(crate::access::console(keel_console::data_routes(), Arc::new(console)))
}

/// A server listening and serving until [`RunningApp::stop`].
pub struct RunningApp {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    /// Whether requests must authenticate (decided from the addresses and `--auth`).
    pub auth_required: bool,
    /// Both listeners serve TLS.
    pub tls: bool,
    pub inference: Arc<InferenceService>,
    pub deployments: Arc<Deployments>,
    /// Models that did not load at start, with why.
    pub load_failures: Vec<(String, ServingError)>,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningApp {
    /// Stops taking requests, drains those in flight and the background work, and writes what
    /// the prediction log holds; returns once all of it is done.
    pub async fn stop(self) -> Result<(), AppError> {
        self.inference.set_ready(false);
        self.shutdown.cancel();
        match self.task.await {
            Ok(result) => Ok(result?),
            Err(e) => Err(AppError::Listen(std::io::Error::other(format!(
                "the server task failed: {e}"
            )))),
        }
    }
}

#[cfg(feature = "lake")]
fn start_log(lake: &AppLake, config: &PredictionLogConfig) -> Result<Arc<PredictionLog>, AppError> {
    let sink = Arc::new(keel_predlog::lake_sink::LakeSink::new(
        lake.clone(),
        config.retention_days,
    ));
    let config = keel_predlog::LogConfig {
        queue: config.queue.max(1),
        batch_rows: config.batch_rows.max(1),
        flush: config.flush.max(Duration::from_millis(1)),
        ..keel_predlog::LogConfig::default()
    };
    Ok(PredictionLog::start(sink, config)?)
}

#[cfg(not(feature = "lake"))]
fn start_log(_: &AppLake, _: &PredictionLogConfig) -> Result<Arc<PredictionLog>, AppError> {
    Err(AppError::NoLake)
}

/// Deployments' live monitors read their reference tables from the server's lake (the whole
/// table; the monitor samples it).
#[cfg(feature = "lake")]
struct LakeReferences(keel_lake::Lake);

#[cfg(feature = "lake")]
impl keel_experiments::ReferenceSource for LakeReferences {
    fn load(
        &self,
        table: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<keel_experiments::Batches, String>> + Send>> {
        let (lake, table) = (self.0.clone(), table.to_owned());
        Box::pin(async move { lake.scan(&table, None).await.map_err(|e| e.to_string()) })
    }
}

/// The tables requests name, checked by the data library as on the command line: a principal
/// applying a monitored deployment must be able to read its reference table, and one pushing a
/// model trained on a catalogued table must be able to read that.
#[cfg(feature = "lake")]
struct WorkspaceTables(keel_data::Workspace);

#[cfg(feature = "lake")]
impl crate::TableUses for WorkspaceTables {
    fn check_reference<'a>(
        &'a self,
        principal: &'a str,
        table: &'a str,
        deployment: &'a str,
    ) -> crate::experiments::Checked<'a, ()> {
        Box::pin(async move {
            let caller = self.0.api_caller(principal).await?;
            Ok(self.0.check_monitor_reference(&caller, table, deployment).await?)
        })
    }

    fn training_source<'a>(
        &'a self,
        principal: &'a str,
        reference: &'a str,
    ) -> crate::experiments::Checked<'a, Option<String>> {
        Box::pin(async move {
            let caller = self.0.api_caller(principal).await?;
            Ok(self.0.training_source(&caller, reference).await?)
        })
    }

    fn record_trained_on<'a>(
        &'a self,
        principal: &'a str,
        source: &'a str,
        model: &'a str,
        version: i64,
    ) -> crate::experiments::Checked<'a, ()> {
        Box::pin(async move {
            let caller = self.0.api_caller(principal).await?;
            Ok(self.0.record_trained_on(&caller, source, model, version).await?)
        })
    }
}
