//! `keel serve`

use std::sync::Arc;

use anyhow::Context as _;
use keel_api::{BoundServer, ServeConfig, Services};
use keel_experiments::{Deployments, Durability};
use keel_runtime::{ModelOptions, Runtime};
use keel_serving::{InferenceService, ModelRepository};
use tokio_util::sync::CancellationToken;

use crate::cli::{Global, ServeArgs};
use crate::context::Context;

/// Builds the service over the registry, with the metrics recorder installed first so the
/// per-model handles register with it.
pub fn service(ctx: &Context, args: &ServeArgs) -> Arc<InferenceService> {
    let _ = keel_api::prometheus();
    let mut options = ModelOptions::default();
    if let Some(n) = args.sessions {
        options.sessions = n.max(1);
    }
    InferenceService::new(ModelRepository::new(ctx.registry.clone(), options))
}

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let runtime = Runtime::global()?;
    tracing::info!(library = %runtime.library().display(), "ONNX Runtime ready");
    let service = service(&ctx, &args);
    let experiments = open_deployments(&ctx, &args, Some(service.clone())).await?;
    // One lake for the prediction logs, the /v1/data routes and monitors' references.
    let lake = open_lake(&ctx).await?;
    set_reference_source(&lake, &experiments);
    if let Some(log) = prediction_log(&lake, &args)? {
        service.set_prediction_log(log.clone());
        experiments.set_prediction_log(log);
        eprintln!(
            "logging predictions to {} (--no-log-predictions to turn off)",
            crate::context::lake_location(global)
        );
    }
    let config = ServeConfig {
        http_addr: args.http_addr,
        grpc_addr: args.grpc_addr,
        max_body_bytes: args.max_body_bytes,
    };
    let server = BoundServer::bind(config).await?;
    let (http, grpc) = (server.http_addr()?, server.grpc_addr()?);
    let shutdown = CancellationToken::new();
    let services = Services {
        inference: service.clone(),
        experiments: Some(experiments.clone()),
        extra_rest: data_routes(&ctx, &lake, &args)?,
    };
    let run = tokio::spawn(server.run(services, shutdown.clone()));
    let failures = service.load_all().await;
    for (name, e) in &failures {
        eprintln!("warning: model {name} not loaded: {e}");
    }
    let loaded = service.repository().loaded();
    eprintln!(
        "keel serving {} model(s) on http://{http} (REST, /metrics) and {grpc} (gRPC); Ctrl-C to stop",
        loaded.len()
    );
    for m in &loaded {
        eprintln!("  {} version {}", m.name, m.version);
    }
    for name in experiments.names() {
        eprintln!("  deployment {name}: POST http://{http}/v1/deployments/{name}/decide");
    }
    tokio::select! {
        r = tokio::signal::ctrl_c() => { r.context("cannot listen for Ctrl-C")?; }
        () = terminate() => {}
    }
    eprintln!("shutting down: draining requests in flight");
    service.set_ready(false);
    shutdown.cancel();
    run.await.context("server task failed")??;
    Ok(())
}

/// The lake the server logs predictions to and serves `/v1/data` from (`--lake`, else
/// `--home/lake`); nothing in a build without lake tables.
#[cfg(feature = "lake")]
pub type ServerLake = keel_lake::Lake;
#[cfg(not(feature = "lake"))]
pub struct ServerLake;

/// Opens the server's lake.
#[cfg(feature = "lake")]
pub async fn open_lake(ctx: &Context) -> anyhow::Result<ServerLake> {
    ctx.open_lake().await.with_context(|| {
        format!(
            "cannot open the lake for prediction logs and data routes at {}",
            ctx.lake
                .clone()
                .unwrap_or_else(|| ctx.home.join("lake").display().to_string())
        )
    })
}

#[cfg(not(feature = "lake"))]
pub async fn open_lake(_: &Context) -> anyhow::Result<ServerLake> {
    Ok(ServerLake)
}

/// The prediction log, unless turned off (or not built in).
#[cfg(feature = "lake")]
pub fn prediction_log(lake: &ServerLake, args: &ServeArgs) -> anyhow::Result<Option<Arc<keel_predlog::PredictionLog>>> {
    if args.no_log_predictions {
        return Ok(None);
    }
    let sink = Arc::new(keel_predlog::lake_sink::LakeSink::new(
        lake.clone(),
        args.log_retention_days,
    ));
    let config = keel_predlog::LogConfig {
        queue: args.log_queue.max(1),
        batch_rows: args.log_batch_rows.max(1),
        flush: std::time::Duration::from_millis(args.log_flush_ms.max(1)),
        ..keel_predlog::LogConfig::default()
    };
    Ok(Some(keel_predlog::PredictionLog::start(sink, config)?))
}

#[cfg(not(feature = "lake"))]
pub fn prediction_log(_: &ServerLake, args: &ServeArgs) -> anyhow::Result<Option<Arc<keel_predlog::PredictionLog>>> {
    if args.log_predictions {
        anyhow::bail!(
            "this keel was built without the lake feature, so it cannot log predictions: drop --log-predictions or build with the default features"
        );
    }
    Ok(None)
}

#[cfg(unix)]
async fn terminate() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut s) => {
            s.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn terminate() {
    std::future::pending().await
}

/// Opens every deployment, recovering each from its decision log under `--home/experiments`;
/// model variants run on `inference`.
pub async fn open_deployments(
    ctx: &Context,
    args: &ServeArgs,
    inference: Option<std::sync::Arc<InferenceService>>,
) -> anyhow::Result<std::sync::Arc<Deployments>> {
    let durability = if args.no_fsync {
        Durability::Os
    } else {
        Durability::Fsync
    };
    Deployments::open_with_models(
        ctx.registry.store().clone(),
        ctx.home.join("experiments"),
        durability,
        inference,
    )
    .await
    .context("cannot open the deployments")
}

/// Deployments' live monitors read their reference tables from the server's lake.
#[cfg(feature = "lake")]
pub fn set_reference_source(lake: &ServerLake, experiments: &Deployments) {
    experiments.set_reference_source(std::sync::Arc::new(LakeReferences(lake.clone())));
}

#[cfg(not(feature = "lake"))]
pub fn set_reference_source(_: &ServerLake, _: &Deployments) {}

/// Reads a whole reference table (the monitor samples it).
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

/// The `/v1/data` routes over the server's lake, when the binary has it.
#[cfg(feature = "lake")]
fn data_routes(ctx: &Context, lake: &ServerLake, args: &ServeArgs) -> anyhow::Result<Option<axum::Router>> {
    Ok(Some(keel_api::data::router(
        ctx.catalog(),
        lake.clone(),
        args.max_body_bytes,
    )))
}

#[cfg(not(feature = "lake"))]
fn data_routes(_: &Context, _: &ServerLake, _: &ServeArgs) -> anyhow::Result<Option<axum::Router>> {
    Ok(None)
}
