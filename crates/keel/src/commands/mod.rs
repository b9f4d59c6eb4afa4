//! One module per command.

mod access;
#[cfg(feature = "lake")]
mod batch;
mod changes;
#[cfg(feature = "cluster")]
mod cluster;
mod data;
mod demo;
mod deployment;
#[cfg(feature = "lake")]
mod feedback;
mod model;
#[cfg(feature = "lake")]
mod monitor;
mod ope;
mod plan;
mod schedule;
mod serve;
mod simulate;
mod webhook;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Model(cmd) => model::run(&cli.global, cmd).await,
        Command::Serve(args) => serve::run(&cli.global, args).await,
        Command::Demo(args) => demo::run(&cli.global, args).await,
        Command::Changes(args) => changes::run(&cli.global, args).await,
        Command::Deployment(cmd) => deployment::run(&cli.global, cmd).await,
        Command::Experiment(cmd) => deployment::experiment(&cli.global, cmd).await,
        Command::Simulate(cmd) => simulate::run(&cli.global, cmd).await,
        Command::Ope(cmd) => ope::run(&cli.global, cmd).await,
        Command::Data(cmd) => data::run(&cli.global, cmd).await,
        Command::Access(cmd) => access::run(&cli.global, cmd).await,
        Command::Schedule(cmd) => schedule::run(&cli.global, cmd).await,
        Command::Plan(args) => plan::plan(&cli.global, args).await,
        Command::Apply(args) => plan::apply(&cli.global, args).await,
        Command::Export(args) => plan::export(&cli.global, args).await,
        Command::Approve(args) => changes::approve(&cli.global, args).await,
        Command::Reject(args) => changes::reject(&cli.global, args).await,
        Command::Webhook(cmd) => webhook::run(&cli.global, cmd).await,
        #[cfg(feature = "lake")]
        Command::Monitor(cmd) => monitor::run(&cli.global, cmd).await,
        #[cfg(feature = "lake")]
        Command::Batch(cmd) => batch::run(&cli.global, cmd).await,
        #[cfg(feature = "lake")]
        Command::Feedback(cmd) => feedback::run(&cli.global, cmd).await,
        #[cfg(feature = "cluster")]
        Command::Cluster(cmd) => cluster::run(&cli.global, cmd).await,
    }
}
