//! The `keel` binary: parses the command line, sets up logging and the runtime, and
//! dispatches to a command. It stays thin; the work lives in the library crates.

mod cli;
mod commands;
mod context;
mod output;

use clap::Parser;

/// Servers (`keel serve`, a cluster's scheduler and executors) log their lifecycle at info; commands that run and exit only warn (`KEEL_LOG`
/// overrides both).
fn log_default(command: &cli::Command) -> keel_api::telemetry::LogDefault {
    match command {
        cli::Command::Serve(_) => keel_api::telemetry::LogDefault::Server,
        #[cfg(feature = "cluster")]
        cli::Command::Cluster(_) => keel_api::telemetry::LogDefault::Server,
        _ => keel_api::telemetry::LogDefault::Command,
    }
}

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let cli::Command::Serve(args) = &cli.command
        && let Some(n) = args.workers
    {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let telemetry = keel_api::telemetry::init(keel_api::telemetry::TelemetryConfig {
            log_format: &cli.global.log_format,
            filter_env: cli::env::LOG,
            otlp_endpoint: cli.global.otlp_endpoint.as_deref(),
            default: log_default(&cli.command),
        })?;
        let result = commands::run(cli).await;
        telemetry.shutdown().await;
        result
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
