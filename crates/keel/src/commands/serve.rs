//! `keel serve`: flags into a [`keel_api::AppConfig`], then start, report, and stop on a signal.

use anyhow::Context as _;
use keel_api::{App, AppConfig, AppLake, PredictionLogConfig, RunningApp};
use keel_experiments::Durability;
use keel_runtime::Runtime;

use std::time::Duration;

use keel_api::gate::{AccessConfig, Limits};
use keel_auth::{AuthConfig, JwtConfig};

use crate::cli::{Global, ServeAccessArgs, ServeArgs};
use crate::context::Context;

pub async fn run(global: &Global, args: ServeArgs) -> anyhow::Result<()> {
    // Listen for SIGTERM and Ctrl-C before anything starts, so a stop that arrives while the
    // server is still starting (a supervisor, a test) is a clean shutdown, not a kill.
    let mut stop = Stop::listen()?;
    let ctx = Context::open(global).await?;
    let runtime = Runtime::global()?;
    tracing::info!(library = %runtime.library().display(), "ONNX Runtime ready");
    let app = start(&ctx, &args).await?;
    if app_logs(&args) {
        eprintln!(
            "logging predictions to {} (--no-log-predictions to turn off)",
            crate::context::lake_location(global)
        );
    }
    for (name, e) in &app.load_failures {
        eprintln!("warning: model {name} not loaded: {e}");
    }
    if app.auth_required {
        eprintln!(
            "authentication required: send `Authorization: Bearer <token>` (keel access token create NAME --scope ...)"
        );
    } else {
        eprintln!("authentication off: loopback only (--auth required to demand credentials here too)");
    }
    let loaded = app.inference.repository().loaded();
    let (scheme, grpc_tls) = if app.tls { ("https", " with TLS") } else { ("http", "") };
    eprintln!(
        "keel serving {} model(s) on {scheme}://{} (REST, /metrics) and {} (gRPC{grpc_tls}); Ctrl-C to stop",
        loaded.len(),
        app.http,
        app.grpc
    );
    for m in &loaded {
        eprintln!("  {} version {}", m.name, m.version);
    }
    for name in app.deployments.names() {
        eprintln!(
            "  deployment {name}: POST {scheme}://{}/v1/deployments/{name}/decide",
            app.http
        );
    }
    let own_url = format!("{scheme}://{}", app.http);
    let scheduler = (!args.no_schedules).then(|| start_schedules(global, &ctx, &own_url, app.auth_required));
    keel_guard::webhook::install(keel_guard::webhook::Events::new(ctx.registry.store().clone()));
    let hooks = (!args.no_webhooks).then(|| start_webhooks(&ctx, &args));
    stop.wait().await;
    eprintln!("shutting down: draining requests in flight");
    if let Some((stop_hooks, task)) = hooks {
        // A delivery in flight finishes (bounded by its timeout); the rest wait in the outbox.
        stop_hooks.cancel();
        let _ = task.await;
    }
    if let Some(s) = scheduler {
        // Commands still running are stopped and handed back as retries.
        s.shutdown(Duration::from_secs(10)).await;
    }
    app.stop().await?;
    Ok(())
}

/// Delivers the store's webhook outbox from this server until the returned token is cancelled.
fn start_webhooks(
    ctx: &Context,
    args: &ServeArgs,
) -> (tokio_util::sync::CancellationToken, tokio::task::JoinHandle<()>) {
    let retry = keel_guard::webhook::RetryPolicy {
        max_attempts: args.webhook_attempts.max(1),
        first_backoff: Duration::from_secs_f64(args.webhook_backoff.clamp(0.01, 86_400.0)),
        ..Default::default()
    };
    let deliverer = keel_guard::webhook::Deliverer::new(ctx.registry.store().clone(), reqwest::Client::new(), retry);
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(deliverer.run(Duration::from_millis(250), stop.clone()));
    (stop, task)
}

/// Runs the store's schedules from this server: each firing as a child process of this
/// binary, on the same home, store and lake, as the schedule's creator (with a token of its
/// own for the run when this server requires authentication).
fn start_schedules(
    global: &Global,
    ctx: &Context,
    own_url: &str,
    auth_required: bool,
) -> std::sync::Arc<keel_schedule::Scheduler> {
    let mut prefix = vec!["--home".to_string(), global.home.display().to_string()];
    for (flag, value) in [
        ("--store", &global.store),
        ("--artifacts", &global.artifacts),
        ("--lake", &ctx.lake),
    ] {
        if let Some(v) = value {
            prefix.extend([flag.to_string(), v.clone()]);
        }
    }
    let executor = keel_schedule::ProcessExecutor {
        exe: std::env::current_exe().unwrap_or_else(|_| "keel".into()),
        // Jobs on deployments this server holds (batch decide, feedback ingest) run in it.
        env: vec![("KEEL_SERVER".to_string(), own_url.to_string())],
        prefix,
        json: true,
        tokens: auth_required.then(|| keel_schedule::RunTokens::new(ctx.catalog())),
    };
    let scheduler = keel_schedule::Scheduler::new(
        ctx.registry.store().clone(),
        executor,
        keel_schedule::SchedulerConfig::default(),
    );
    scheduler.spawn();
    eprintln!("running schedules from this server (`keel schedule ls`; --no-schedules to leave them to another)");
    scheduler
}

/// Assembles the server the flags describe over the workspace, and starts it.
pub async fn start(ctx: &Context, args: &ServeArgs) -> anyhow::Result<RunningApp> {
    let config = AppConfig {
        sessions: args.sessions,
        deployments_dir: ctx.home.join("experiments"),
        durability: if args.no_fsync {
            Durability::Os
        } else {
            Durability::Fsync
        },
        prediction_log: app_logs(args).then(|| PredictionLogConfig {
            queue: args.log_queue,
            batch_rows: args.log_batch_rows,
            flush: std::time::Duration::from_millis(args.log_flush_ms),
            retention_days: args.log_retention_days,
        }),
        max_body_bytes: args.max_body_bytes,
        access: access_config(&args.access)?,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(keel_api::tls::TlsConfig::new(cert, key)),
            _ => None,
        },
    };
    let app = App::open(ctx.registry.clone(), open_lake(ctx).await?, config).await?;
    Ok(app.start(args.http_addr, args.grpc_addr).await?)
}

fn access_config(args: &ServeAccessArgs) -> anyhow::Result<AccessConfig> {
    let jwt = match &args.jwt_jwks {
        None => None,
        Some(location) => {
            let mut jwt = JwtConfig::new(location.parse()?);
            jwt.issuer = args.jwt_issuer.clone();
            jwt.audience = args.jwt_audience.clone();
            jwt.principal_claim = args.jwt_principal_claim.clone();
            jwt.scopes_claim = args.jwt_scopes_claim.clone();
            Some(jwt)
        }
    };
    Ok(AccessConfig {
        mode: args.auth.parse().map_err(anyhow::Error::msg)?,
        allow_unauthenticated_network: args.allow_unauthenticated_network_access,
        auth: AuthConfig {
            cache_ttl: Duration::from_millis(args.token_cache_ms),
            jwt,
        },
        metrics_open: args.metrics_open,
        limits: Limits {
            in_flight: args.max_in_flight,
            inference: args.max_in_flight_inference,
            decide: args.max_in_flight_decide,
            admin: args.max_in_flight_admin,
            request_timeout: Duration::from_secs(args.request_timeout_s.max(1)),
            model_bytes: args.max_model_bytes,
        },
    })
}

/// Predictions are logged by default in a build with lake tables, and only on request (which
/// then fails with a clear error) in one without.
fn app_logs(args: &ServeArgs) -> bool {
    if cfg!(feature = "lake") {
        !args.no_log_predictions
    } else {
        args.log_predictions
    }
}

/// One lake for the prediction logs, the /v1/data routes and monitors' references (`--lake`,
/// else `--home/lake`).
#[cfg(feature = "lake")]
async fn open_lake(ctx: &Context) -> anyhow::Result<Option<AppLake>> {
    let lake = ctx.open_lake().await.with_context(|| {
        format!(
            "cannot open the lake for prediction logs and data routes at {}",
            ctx.lake
                .clone()
                .unwrap_or_else(|| ctx.home.join("lake").display().to_string())
        )
    })?;
    Ok(Some(lake))
}

#[cfg(not(feature = "lake"))]
async fn open_lake(_: &Context) -> anyhow::Result<Option<AppLake>> {
    Ok(None)
}

/// The signals that stop a server: SIGTERM and SIGINT (Ctrl-C), listened for from the start.
struct Stop {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Stop {
    #[cfg(unix)]
    fn listen() -> anyhow::Result<Stop> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Stop {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("cannot listen for Ctrl-C")?,
        })
    }

    #[cfg(unix)]
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }

    #[cfg(not(unix))]
    fn listen() -> anyhow::Result<Stop> {
        Ok(Stop {})
    }

    #[cfg(not(unix))]
    async fn wait(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}
