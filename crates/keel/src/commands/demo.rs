//! `keel demo`: the main job on embedded defaults, end to end.
//!
//! Registers the fixture models (idempotently), promotes them to `@production`, starts the
//! server, and checks every model over REST and gRPC against the outputs onnxruntime produced
//! for the same rows (`fixtures/models/expected.json`), then prints what it saw.

use std::path::Path;

use anyhow::{Context as _, bail};
use keel_api::selfcheck;
use keel_registry::{PushRequest, VersionSelector};

use crate::cli::{DemoArgs, Global, ServeArgs};
use crate::context::Context;
use crate::output;

pub async fn run(global: &Global, args: DemoArgs) -> anyhow::Result<()> {
    let expected = selfcheck::Expected::read(&args.fixtures)?;
    let ctx = Context::open(global).await?;
    let runtime = keel_runtime::Runtime::global()?;
    eprintln!("ONNX Runtime: {}", runtime.library().display());

    eprintln!("1/5 registering {} fixture models", expected.models.len());
    for name in expected.models.keys() {
        register(&ctx, &args.fixtures, name).await?;
    }

    let serve_args = ServeArgs {
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
    };
    let app = super::serve::start(&ctx, &serve_args).await?;
    if let Some((name, e)) = app.load_failures.first() {
        bail!("model {name} did not load: {e}");
    }
    let (http, grpc) = (app.http, app.grpc);
    eprintln!("2/5 serving on http://{http} and grpc://{grpc}");

    eprintln!("3/5 checking every model over REST and gRPC against onnxruntime's outputs");
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
    if args.customers > 0 {
        eprintln!(
            "\n4/5 the flagship scenario: personalised promotional e-mails for {} customers, 5 promotions, \
             10% holdout control group; uniform random vs Thompson sampling vs a contextual bandit",
            args.customers
        );
        let cfg = keel_sim::email::EmailConfig {
            url: format!("http://{http}"),
            prefix: "email-promos".into(),
            customers: args.customers,
            promotions: 5,
            base_rate: 0.025,
            seed: 7,
            concurrency: 16,
            delay_decisions: 0,
            batch: 16,
            policies: vec!["uniform".into(), "thompson".into(), "contextual".into()],
            control_share: 0.1,
            share_buckets: 5,
        };
        let report = keel_sim::email::run(&cfg, &|line: &str| eprintln!("  {line}")).await?;
        if global.json {
            output::json(&report)?;
        }
        let contextual = app.deployments.report("email-promos-contextual")?;
        if !global.json {
            println!();
            super::deployment::print_report(&contextual);
            println!(
                "\nthe decision log (one JSON line per decision and reward) is in {}",
                global
                    .home
                    .join("experiments/email-promos-contextual/events.jsonl")
                    .display()
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
    let at = VersionSelector::Number(v.version);
    ctx.registry
        .set_alias(name, "production", &at, "keel-demo", Some("demo"))
        .await?;
    Ok(())
}

/// Step 5: the campaign's decisions and rewards, logged to the lake while it ran, become
/// catalogued tables with lineage, an outcomes table the data team can train on, the lift
/// against the control group by SQL, and a feasibility assessment of that table.
#[cfg(feature = "lake")]
async fn campaign_data(global: &Global, ctx: &Context) -> anyhow::Result<()> {
    const DEPLOYMENT: &str = "email-promos-contextual";
    eprintln!("\n5/5 the campaign's data: decisions and rewards in the lake, catalogued, assessed");
    let lake = ctx.open_lake().await?;
    let ws = keel_data::Workspace::new(ctx.catalog(), lake.clone());
    let caller = ws.cli_caller(&crate::context::principal(global)).await?;
    let actor = caller.actor();
    let store = ws.catalog().store();
    // The tables were committed by the prediction log or below: a write pass (an owner for a new
    // table) records the latest version in the catalog.
    let catalogue = |table: &'static str, description: &'static str| {
        let (ws, caller) = (&ws, &caller);
        async move {
            let details = serde_json::json!({"by": "keel demo"});
            let pass = ws.check_create(caller, table, None, details.clone()).await?;
            let version = ws.versions(&pass).await?.first().map_or(0, |v| v.version);
            ws.record_commit(&pass, version, false, details).await?;
            ws.catalog()
                .store()
                .set_table_description(table, Some(description), caller.name())
                .await?;
            anyhow::Ok(version as i64)
        }
    };
    let tables = lake.tables().await?;
    if !(tables.contains(&"decisions".to_string()) && tables.contains(&"feedback".to_string())) {
        eprintln!("  (no decision tables were logged; skipping)");
        return Ok(());
    }
    catalogue("decisions", "every decision of every deployment (logged by keel serve)").await?;
    catalogue("feedback", "every counted reward (logged by keel serve)").await?;
    for d in store.list_deployments().await? {
        store
            .add_lineage(
                &format!("decisions/{}", d.name),
                "table/decisions",
                "logged_to",
                &actor.name,
            )
            .await?;
    }
    // The outcomes table: one row per decision of the contextual deployment with its reward.
    let outcomes_sql = format!(
        "SELECT d.ts, d.variant, d.control, d.propensity, CAST(coalesce(f.reward, 0) AS DOUBLE) AS converted \
         FROM decisions d LEFT JOIN feedback f ON d.decision_id = f.decision_id \
         WHERE d.deployment = '{DEPLOYMENT}'"
    );
    let both = ["decisions".to_string(), "feedback".to_string()];
    let batches = lake.sql_on(&outcomes_sql, &both).await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let outcomes = "email_outcomes";
    let pass = ws
        .check_create(&caller, outcomes, None, serde_json::json!({"by": "keel demo"}))
        .await?;
    // A rerun rebuilds the table from all logged decisions (the old version stays readable).
    let mode = if tables.iter().any(|t| t == outcomes) {
        keel_lake::WriteMode::Overwrite
    } else {
        keel_lake::WriteMode::Append
    };
    ws.write(&pass, batches, mode).await?;
    let version = catalogue(outcomes, "e-mail campaign: promotion chosen, control group, conversion").await?;
    for source in ["table/decisions", "table/feedback"] {
        store
            .add_lineage(
                source,
                &format!("table/{outcomes}@v{version}"),
                "derived_from",
                &actor.name,
            )
            .await?;
    }
    println!(
        "\ncampaign outcomes: {rows} decisions -> lake table {outcomes} (version {version}), catalogued with lineage"
    );
    let lift = lake
        .sql_on(
            "SELECT control, count(*) AS customers, avg(converted) AS conversion FROM email_outcomes \
             GROUP BY control ORDER BY control",
            &[outcomes.to_string()],
        )
        .await?;
    println!("{}", keel_lake::pretty(&lift)?);
    let files = lake.files(outcomes, None).await?;
    let mut options = keel_assess::AssessOptions::new("converted");
    options.time = Some("ts".into());
    options.title = Some(outcomes.into());
    let assessment = tokio::task::spawn_blocking(move || keel_assess::assess(&files, &options)).await??;
    println!(
        "feasibility of {outcomes} as training data (keel data assess {outcomes} --target converted --time ts): {:?}",
        assessment.verdict
    );
    for reason in assessment.reasons.iter().take(4) {
        println!("  - {reason}");
    }
    println!("explore: keel data ls; keel data show {outcomes}; keel data lineage table/{outcomes}");
    Ok(())
}
