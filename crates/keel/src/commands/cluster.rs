//! `keel cluster scheduler` and `keel cluster executor`: Ballista's processes with keel's
//! scoring function registered. Both run until stopped.

use std::net::SocketAddr;

use anyhow::Context as _;
use keel_cluster::{ExecutorOptions, ModelSource};

use crate::cli::{ClusterCommand, ExecutorArgs, Global, SchedulerArgs};

pub async fn run(global: &Global, cmd: ClusterCommand) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Scheduler(args) => scheduler(args).await,
        ClusterCommand::Executor(args) => executor(global, args).await,
    }
}

/// Ballista's processes answer anyone who reaches them: loopback unless asked otherwise.
fn check_exposure(bind: &SocketAddr, allowed: bool) -> anyhow::Result<()> {
    if !bind.ip().is_loopback() && !allowed {
        anyhow::bail!(
            "--bind {bind} listens beyond this machine, and Ballista's scheduler and executors do not \
             authenticate their callers (anyone reaching them can run plans that read the executors' files); \
             add --unauthenticated-network to do it on a private network, or bind 127.0.0.1"
        );
    }
    Ok(())
}

async fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    check_exposure(&args.bind, args.unauthenticated_network)?;
    eprintln!("keel cluster scheduler: ballista://{}", args.bind);
    Ok(keel_cluster::run_scheduler(args.bind).await?)
}

async fn executor(global: &Global, args: ExecutorArgs) -> anyhow::Result<()> {
    check_exposure(&args.bind, args.unauthenticated_network)?;
    let scheduler = args.scheduler.trim_start_matches("ballista://").trim_end_matches('/');
    let (host, port) = scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
        .filter(|(h, _)| !h.is_empty())
        .with_context(|| {
            format!(
                "--scheduler {:?}: name it as HOST:PORT (e.g. 127.0.0.1:50050)",
                args.scheduler
            )
        })?;
    // The models come from the same store and artifacts the client registered them in.
    let ctx = crate::context::Context::open(global).await?;
    drop(ctx);
    let models = ModelSource {
        store: store_url(global)?,
        artifacts: match &global.artifacts {
            Some(a) => a.clone(),
            None => global.home.join("artifacts").display().to_string(),
        },
    };
    let temporary;
    let work_dir = match args.work_dir {
        Some(dir) => dir,
        None => {
            temporary = tempfile::Builder::new()
                .prefix("keel-executor-")
                .tempdir()
                .context("cannot create a work folder for the executor")?;
            temporary.path().to_path_buf()
        }
    };
    eprintln!("keel cluster executor: {} serving scheduler {host}:{port}", args.bind);
    keel_cluster::run_executor(ExecutorOptions {
        bind: args.bind,
        grpc_port: args.grpc_port,
        scheduler_host: host.to_owned(),
        scheduler_port: port,
        concurrent_tasks: args.concurrent_tasks,
        work_dir,
        models,
    })
    .await?;
    Ok(())
}

/// The metadata store's URL as `Context::open` resolves it.
fn store_url(global: &Global) -> anyhow::Result<String> {
    Ok(match &global.store {
        Some(url) => url.clone(),
        None => {
            let path = std::path::absolute(global.home.join("keel.db"))
                .with_context(|| format!("cannot resolve {}", global.home.display()))?;
            format!("sqlite://{}", path.display())
        }
    })
}
