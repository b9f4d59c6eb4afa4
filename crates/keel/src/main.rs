//! The `keel` binary: parses the command line, sets up logging and the runtime, and
//! dispatches to a command. It stays thin; the work lives in the library crates.

mod cli;
mod commands;
mod context;
mod output;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    init_logging(&cli.global.log_format);
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
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env(cli::env::LOG).unwrap_or_else(|_| {
        EnvFilter::new(
            "warn,keel=info,keel_api=info,keel_serving=info,keel_experiments=info,keel_registry=info,keel_lake=info",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
