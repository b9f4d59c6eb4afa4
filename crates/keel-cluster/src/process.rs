//! The cluster's processes: Ballista's scheduler and executor, started with keel's codecs so
//! that plans carrying `keel_score` are understood, and executors score with models from the
//! keel home they are given.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;

use crate::ClusterError;
use crate::codec::{LogicalCodec, PhysicalCodec};
use crate::udf::{ModelSource, Models};

/// Runs a scheduler listening on `bind` until the process is stopped.
pub async fn run_scheduler(bind: SocketAddr) -> Result<(), ClusterError> {
    let failed = |e: &dyn std::fmt::Display| ClusterError::Cluster {
        at: format!("ballista://{bind}"),
        message: format!("the scheduler stopped: {e}"),
    };
    let config = SchedulerConfig {
        bind_host: bind.ip().to_string(),
        bind_port: bind.port(),
        external_host: bind.ip().to_string(),
        override_logical_codec: Some(Arc::new(LogicalCodec::new(None))),
        override_physical_codec: Some(Arc::new(PhysicalCodec::new(None))),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| failed(&e))?;
    start_server(cluster, bind, Arc::new(config))
        .await
        .map_err(|e| failed(&e))
}

/// One executor.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The address its Arrow Flight service listens on (results and shuffles are fetched there).
    pub bind: SocketAddr,
    /// The port of its gRPC service.
    pub grpc_port: u16,
    /// The scheduler's host and port.
    pub scheduler_host: String,
    pub scheduler_port: u16,
    /// Tasks run at once (0: one per core).
    pub concurrent_tasks: usize,
    /// Where shuffle files are written.
    pub work_dir: PathBuf,
    /// Where model versions are read.
    pub models: ModelSource,
}

/// Runs an executor until the process is stopped (or the scheduler asks it to stop).
pub async fn run_executor(options: ExecutorOptions) -> Result<(), ClusterError> {
    let at = format!("ballista://{}:{}", options.scheduler_host, options.scheduler_port);
    let work_dir = options
        .work_dir
        .to_str()
        .ok_or_else(|| ClusterError::Invalid(format!("work folder {} is not UTF-8", options.work_dir.display())))?
        .to_owned();
    std::fs::create_dir_all(&options.work_dir).map_err(|e| {
        ClusterError::Invalid(format!(
            "cannot create the work folder {}: {e}",
            options.work_dir.display()
        ))
    })?;
    let models = Some(Arc::new(Models::new(options.models)));
    let config = ExecutorProcessConfig {
        bind_host: options.bind.ip().to_string(),
        external_host: Some(options.bind.ip().to_string()),
        port: options.bind.port(),
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler_host,
        scheduler_port: options.scheduler_port,
        // Wait for a scheduler that is still starting instead of failing at once.
        scheduler_connect_timeout_seconds: 30,
        vcores: options.concurrent_tasks,
        work_dir: Some(work_dir),
        print_thread_info: false,
        override_logical_codec: Some(Arc::new(LogicalCodec::new(models.clone()))),
        override_physical_codec: Some(Arc::new(PhysicalCodec::new(models))),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| ClusterError::Cluster {
            at,
            message: format!("the executor stopped: {e}"),
        })
}
