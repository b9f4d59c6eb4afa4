//! `keel demo`: the main job on embedded defaults, end to end.
//!
//! Registers the fixture models (idempotently), promotes them to `@production`, starts the
//! server, and checks every model over REST and gRPC against the outputs onnxruntime produced
//! for the same rows (`fixtures/models/expected.json`), then prints what it saw.

use std::path::Path;

use anyhow::{Context as _, bail};
use keel_api::selfcheck;
use keel_registry::PushRequest;

use crate::cli::{DemoArgs, Global, ServeArgs};
use crate::context::Context;
use crate::output;

#[cfg(feature = "lake")]
mod weekly;

pub async fn run(global: &Global, args: DemoArgs) -> anyhow::Result<()> {
    let expected = selfcheck::Expected::read(&args.fixtures)?;
    let ctx = Context::open(global).await?;
    let runtime = keel_runtime::Runtime::global()?;
    eprintln!("ONNX Runtime: {}", runtime.library().display());

    eprintln!("1/7 registering {} fixture models", expected.models.len());
    for name in expected.models.keys() {
        register(&ctx, &args.fixtures, name).await?;
    }

    let serve_args = ServeArgs {
        no_schedules: true,
        no_webhooks: true,
        webhook_attempts: 6,
        webhook_backoff: 10.0,
        http_addr: if args.keep_serving {
            "127.0.0.1:8080"
        } else {
            "127.0.0.1:0"
        }
        .parse()?,
        grpc_addr: if args.keep_serving {
            "127.0.0.1:8081"
        } else {
            "127.0.0.1:0"
        }
        .parse()?,
        max_body_bytes: 16 * 1024 * 1024,
        sessions: None,
        workers: None,
        no_fsync: false,
        // decisions and rewards of the campaign flow into lake tables (step 5)
        log_predictions: cfg!(feature = "lake"),
        no_log_predictions: !cfg!(feature = "lake"),
        log_queue: keel_predlog::DEFAULT_QUEUE,
        log_batch_rows: keel_predlog::DEFAULT_BATCH_ROWS,
        log_flush_ms: keel_predlog::DEFAULT_FLUSH_MS,
        log_retention_days: None,
        // loopback: no credential needed, as the README's first command promises
        access: Default::default(),
        tls_cert: None,
        tls_key: None,
    };
    let app = super::serve::start(&ctx, &serve_args).await?;
    if let Some((name, e)) = app.load_failures.first() {
        bail!("model {name} did not load: {e}");
    }
    let (http, grpc) = (app.http, app.grpc);
    eprintln!("2/7 serving on http://{http} and grpc://{grpc}");

    eprintln!("3/7 checking every model over REST and gRPC against onnxruntime's outputs");
    let checks = selfcheck::check_models(http, grpc, &expected).await?;
    let all_ok = checks.iter().all(|c| c.ok);
    if global.json {
        output::json(&serde_json::json!({ "http": http.to_string(), "grpc": grpc.to_string(), "models": checks }))?;
    } else {
        let rows: Vec<Vec<String>> = checks
            .iter()
            .map(|c| {
                vec![
                    c.model.clone(),
                    c.version.clone(),
                    c.rows.to_string(),
                    format!("{:.1e}", c.rest_max_abs_diff),
                    format!("{:.1e}", c.grpc_max_abs_diff),
                    format!("{:.2}", c.rest_ms),
                    format!("{:.2}", c.grpc_ms),
                    if c.ok { "ok" } else { "MISMATCH" }.to_string(),
                ]
            })
            .collect();
        output::table(
            &[
                "MODEL",
                "VERSION",
                "ROWS",
                "REST DIFF",
                "gRPC DIFF",
                "REST ms",
                "gRPC ms",
                "vs onnxruntime",
            ],
            &rows,
        );
        let served = selfcheck::served_requests(http).await?;
        println!(
            "\n{served} requests served; /metrics, the registry (keel model ls) and the change log (keel changes) are in {}",
            global.home.display()
        );
        println!("try: curl -s http://{http}/v2/models/bc-lr | jq");
    }
    let email = keel_sim::email::EmailConfig {
        url: format!("http://{http}"),
        prefix: "email-promos".into(),
        customers: args.customers,
        promotions: PROMOTIONS,
        base_rate: BASE_RATE,
        seed: WORLD_SEED,
        drawn_world: false,
        drift_at: None,
        policy_seed: 11,
        concurrency: 16,
        delay_decisions: 0,
        batch: 16,
        policies: vec!["uniform".into(), "thompson".into(), "contextual".into()],
        control_share: 0.1,
        share_buckets: 5,
        token: None,
    };
    #[cfg(feature = "lake")]
    if args.customers > 0 {
        weekly_batch(global, &ctx, &app, &email).await?;
    }
    if args.customers > 0 {
        eprintln!(
            "\n5/7 online: personalised promotional e-mails for {} customers, 5 promotions, \
             10% holdout control group (the status quo: promotions rotated at random); uniform random vs Thompson sampling vs a contextual bandit",
            args.customers
        );
        let report = keel_sim::email::run(&email, &|line: &str| eprintln!("  {line}")).await?;
        if global.json {
            output::json(&report)?;
        }
        let contextual = app.deployments.report("email-promos-contextual")?;
        if !global.json {
            eprintln!("\n6/7 the contextual deployment's report");
            super::deployment::print_report(&contextual);
            println!(
                "\nthe decision log (one JSON line per decision and reward; segments and snapshots beside it) is in {}",
                global.home.join("experiments/email-promos-contextual").display()
            );
        }
    }
    if args.keep_serving {
        eprintln!("serving until Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    // Stopping writes what the prediction log holds: the campaign's tables are complete.
    app.stop().await?;
    #[cfg(feature = "lake")]
    if args.customers > 0 {
        campaign_data(global, &ctx).await?;
    }
    if !all_ok {
        bail!(
            "some outputs differ from onnxruntime's by more than {}",
            selfcheck::TOLERANCE
        );
    }
    Ok(())
}

/// The flagship's world: promotions, uniform conversion rate and seed the online campaign and
/// the weekly batch share.
const PROMOTIONS: usize = 5;
const BASE_RATE: f64 = 0.025;
const WORLD_SEED: u64 = 7;

/// Step 4: the weekly batch over the customer table, with its own contextual deployment.
#[cfg(feature = "lake")]
async fn weekly_batch(
    global: &Global,
    ctx: &Context,
    app: &keel_api::RunningApp,
    email: &keel_sim::email::EmailConfig,
) -> anyhow::Result<()> {
    eprintln!(
        "\n4/7 the weekly batch: each Monday one promotion per customer of the customer table, the list exported for the e-mail system, conversions credited in bulk"
    );
    let ws = keel_data::Workspace::new(ctx.catalog(), ctx.open_lake().await?);
    let caller = ws.cli_caller(&crate::context::principal(global)).await?;
    let world = keel_sim::world::World::new(email.customers, email.promotions, email.base_rate, email.seed)?;
    let campaign = weekly::Campaign {
        deployment: "email-promos-weekly",
        spec: keel_sim::email::policy_spec("contextual", &world, email)?,
        world,
        weeks: 3,
        seed: email.seed * 1000,
    };
    weekly::run(global, &ws, &caller, &app.deployments, &campaign).await
}

/// Pushes a fixture unless the same bytes are already registered; points `@production` at it.
async fn register(ctx: &Context, dir: &Path, name: &str) -> anyhow::Result<()> {
    let path = dir.join(format!("{name}.onnx"));
    let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let request = PushRequest {
        name: name.to_string(),
        author: "keel-demo".into(),
        description: Some("fixture model (fixtures/models/train.py)".into()),
        metrics: serde_json::json!({}),
        training_data: Some(format!("sklearn dataset, see {}", dir.join("README.md").display())),
    };
    let (v, new) = ctx.registry.push_or_find(request, bytes.into()).await?;
    match new {
        true => eprintln!("  pushed {name} version {}", v.version),
        false => eprintln!("  {name} already registered as version {}", v.version),
    }
    // Announced and gated like any push and alias move (a workspace whose approvals policy
    // holds production moves stops the demo here, saying so).
    let who = super::changes::cli("keel-demo");
    if new {
        keel_plan::changes::pushed(&ctx.registry, &v, &[], who).await?;
    }
    let moved = keel_plan::changes::move_alias(&ctx.registry, name, "production", Some(v.version), Some("demo"), who);
    if let keel_plan::changes::Outcome::Held(change) = moved.await? {
        bail!("{}", keel_plan::approvals::held_message(&change));
    }
    Ok(())
}

/// Step 7: the campaign's decisions and rewards, logged to the lake while it ran, become
/// catalogued tables with lineage, an outcomes table the data team can train on, the lift
/// against the control group by SQL, and a feasibility assessment of that table.
#[cfg(feature = "lake")]
async fn campaign_data(global: &Global, ctx: &Context) -> anyhow::Result<()> {
    eprintln!("\n7/7 the campaign's data: decisions and rewards in the lake, catalogued, assessed");
    let ws = keel_data::Workspace::new(ctx.catalog(), ctx.open_lake().await?);
    let caller = ws.cli_caller(&crate::context::principal(global)).await?;
    let (deployment, table) = ("email-promos-contextual", "email_outcomes");
    let Some(o) = keel_experiments::offline::outcomes::build(&ws, &caller, deployment, table).await? else {
        eprintln!("  (no decision tables were logged; skipping)");
        return Ok(());
    };
    let (rows, version) = (o.rows, o.version);
    println!(
        "\ncampaign outcomes: {rows} decisions -> lake table {table} (version {version}), catalogued with lineage"
    );
    println!("{}", keel_lake::pretty(&o.lift)?);
    println!(
        "feasibility of {table} as training data (keel data assess {table} --target converted --time ts): {:?}",
        o.assessment.verdict
    );
    for reason in o.assessment.reasons.iter().take(4) {
        println!("  - {reason}");
    }
    println!("explore: keel data ls; keel data show {table}; keel data lineage table/{table}");
    Ok(())
}
