//! `keel cluster`: the processes of the distributed engine.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Run a Ballista scheduler that understands keel's scoring plans; `keel batch score
    /// --engine ballista://HOST:PORT` sends them to it
    Scheduler(SchedulerArgs),
    /// Run a Ballista executor that scores with the models of this keel home (--home, --store,
    /// --artifacts) and reads the lake's files where they are
    Executor(ExecutorArgs),
}

#[derive(Debug, Args)]
pub struct SchedulerArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub bind: SocketAddr,
    /// Allow listening beyond loopback. Ballista's scheduler and executors do not authenticate
    /// their callers: only on a private network
    #[arg(long)]
    pub unauthenticated_network: bool,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The scheduler, HOST:PORT (or ballista://HOST:PORT)
    #[arg(long, default_value = "127.0.0.1:50050")]
    pub scheduler: String,
    /// Address of its Arrow Flight service (results and shuffles are fetched there)
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub bind: SocketAddr,
    /// Port of its gRPC service (same host as --bind)
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Tasks run at once (0: one per core)
    #[arg(long, default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Folder for shuffle files (default: a temporary folder removed when the executor stops)
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Allow listening beyond loopback. Ballista's scheduler and executors do not authenticate
    /// their callers: only on a private network
    #[arg(long)]
    pub unauthenticated_network: bool,
}
