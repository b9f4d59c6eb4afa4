//! `keel simulate email`

use keel_sim::email::{EmailConfig, run as run_email};

use crate::cli::{Global, SimulateCommand};
use crate::output;

pub async fn run(global: &Global, cmd: SimulateCommand) -> anyhow::Result<()> {
    match cmd {
        SimulateCommand::Email(a) => {
            let cfg = EmailConfig {
                url: a.url,
                prefix: a.prefix,
                customers: a.customers,
                promotions: a.promotions,
                base_rate: a.base_rate,
                seed: a.seed,
                drawn_world: a.drawn_world,
                drift_at: a.drift_at,
                policy_seed: a.policy_seed,
                concurrency: a.concurrency,
                delay_decisions: a.delay,
                batch: a.batch,
                policies: a.policies,
                control_share: a.control_share,
                share_buckets: 5,
                token: global.token.clone(),
            };
            let quiet = global.json;
            let report = run_email(&cfg, &|line: &str| {
                if !quiet {
                    eprintln!("{line}");
                }
            })
            .await?;
            if global.json {
                return output::json(&report);
            }
            println!(
                "\nexpected conversion rates: uniform {:.4}, best single promotion ({}) {:.4}, oracle {:.4}\n",
                report.uniform_rate, report.best_single.0, report.best_single.1, report.oracle_rate
            );
            let rows: Vec<Vec<String>> = report
                .results
                .iter()
                .map(|r| {
                    vec![
                        r.policy.clone(),
                        r.conversions.to_string(),
                        format!("{:.4}", r.rate),
                        format!("{:+.1}%", r.lift_over_uniform * 100.0),
                        format!("{:+.1}%", r.lift_over_best_single * 100.0),
                        format!("{:.2}", r.regret_per_1000),
                        format!("{:.0}", r.decisions_per_second),
                    ]
                })
                .collect();
            output::table(
                &[
                    "POLICY",
                    "CONVERSIONS",
                    "RATE",
                    "VS UNIFORM",
                    "VS BEST SINGLE",
                    "REGRET/1000",
                    "DECISIONS/S",
                ],
                &rows,
            );
            let names = cfg.promotions;
            println!("\ntraffic share per promotion over time (fifths of the run):");
            for r in &report.results {
                let cells: Vec<String> = r
                    .share_over_time
                    .iter()
                    .map(|b| {
                        b.iter()
                            .map(|s| format!("{:>3.0}", s * 100.0))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect();
                println!("  {:<14} {}", r.policy, cells.join(" | "));
            }
            let _ = names;
            println!(
                "\n(lifts use the expected conversion rate of the promotions chosen; conversions are one draw of it)"
            );
        }
    }
    Ok(())
}
