//! `keel model ...`

use anyhow::{Context as _, bail};
use keel_registry::{PushRequest, Registry, VersionSelector};

use keel_plan::changes::Outcome;

use crate::cli::{AliasArgs, Global, ModelCommand, PushArgs};
use crate::commands::changes::{cli, report_held};
use crate::context::{Context, author};
use crate::output;

pub async fn run(global: &Global, cmd: ModelCommand) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    match cmd {
        ModelCommand::Push(args) => push(global, &ctx, args).await,
        ModelCommand::Ls => ls(global, &ctx.registry).await,
        ModelCommand::Show { reference } => show(global, &ctx.registry, &reference).await,
        ModelCommand::Alias(args) => alias(global, &ctx.registry, args).await,
        ModelCommand::History { name, alias } => history(global, &ctx.registry, &name, alias.as_deref()).await,
    }
}

/// Reads the file and pushes it with its metrics and aliases.
/// Pushes the file, then sets each `--alias` through the approvals policy (an alias it names
/// waits for approval; the version is pushed either way).
pub async fn push_file(registry: &Registry, args: &PushArgs) -> anyhow::Result<keel_registry::ModelVersion> {
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let request = PushRequest {
        name: args.name.clone(),
        author: author(&args.author),
        description: args.description.clone(),
        metrics: keel_registry::parse_metrics(&args.metrics)?,
        training_data: args.training_data.clone(),
    };
    let aliases = keel_registry::alias_names(&args.aliases)?;
    let refused = || format!("push of {} refused", args.file.display());
    let by = request.author.clone();
    let version = registry.push(request, bytes.into()).await.with_context(refused)?;
    for (_, outcome) in keel_plan::changes::pushed(registry, &version, &aliases, cli(&by)).await? {
        if let Outcome::Held(change) = outcome {
            // On stderr: stdout stays the pushed version (one JSON document with --json).
            eprintln!("{}", keel_plan::approvals::held_message(&change));
        }
    }
    Ok(version)
}

async fn push(global: &Global, ctx: &Context, args: PushArgs) -> anyhow::Result<()> {
    let registry = &ctx.registry;
    // A catalogued training table is checked before the push and linked after it.
    #[cfg(feature = "lake")]
    let trained_on = match &args.training_data {
        Some(reference) => {
            let (ws, caller) = crate::commands::data::catalogued::workspace(global, ctx).await?;
            ws.training_source(&caller, reference)
                .await?
                .map(|source| (ws, caller, source))
        }
        None => None,
    };
    let version = push_file(registry, &args).await?;
    #[cfg(feature = "lake")]
    if let Some((ws, caller, source)) = trained_on {
        ws.record_trained_on(&caller, &source, &version.model, version.version)
            .await?;
    }
    if global.json {
        return output::json(&version);
    }
    let sig = Registry::signature(&version)?;
    println!(
        "pushed {} version {} ({}, {} bytes)",
        version.model, version.version, version.content_hash, version.size_bytes
    );
    for i in &sig.inputs {
        println!("  input  {} {} {:?}", i.name, i.datatype, i.shape);
    }
    for o in &sig.outputs {
        println!("  output {} {} {:?}", o.name, o.datatype, o.shape);
    }
    for a in &args.aliases {
        println!("  @{} -> {}", a.trim_start_matches('@'), version.version);
    }
    Ok(())
}

async fn ls(global: &Global, registry: &Registry) -> anyhow::Result<()> {
    let models = registry.list_models().await?;
    if global.json {
        return output::json(&models);
    }
    if models.is_empty() {
        println!("no models yet; push one with `keel model push NAME FILE.onnx`");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.latest_version.to_string(),
                m.version_count.to_string(),
                m.aliases
                    .iter()
                    .map(|(a, v)| format!("@{a}={v}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                output::time(&m.updated_at),
            ]
        })
        .collect();
    output::table(&["NAME", "LATEST", "VERSIONS", "ALIASES", "UPDATED (UTC)"], &rows);
    Ok(())
}

async fn show(global: &Global, registry: &Registry, reference: &str) -> anyhow::Result<()> {
    let (name, selector) = VersionSelector::split_reference(reference)?;
    let explicit = reference.contains('@') || reference.contains(':');
    if !explicit {
        let versions = registry.list_versions(&name).await?;
        let aliases = registry.list_aliases(&name).await?;
        if global.json {
            return output::json(&serde_json::json!({ "name": name, "versions": versions, "aliases": aliases }));
        }
        let rows: Vec<Vec<String>> = versions
            .iter()
            .map(|v| {
                let here: Vec<String> = aliases
                    .iter()
                    .filter(|a| a.version == v.version)
                    .map(|a| format!("@{}", a.alias))
                    .collect();
                vec![
                    v.version.to_string(),
                    output::time(&v.created_at),
                    v.author.clone(),
                    v.content_hash.chars().take(19).collect(),
                    here.join(" "),
                    v.description.clone().unwrap_or_default(),
                ]
            })
            .collect();
        output::table(
            &["VERSION", "CREATED (UTC)", "AUTHOR", "HASH", "ALIASES", "DESCRIPTION"],
            &rows,
        );
        return Ok(());
    }
    let version = registry.resolve(&name, &selector).await?;
    if global.json {
        return output::json(&version);
    }
    let sig = Registry::signature(&version)?;
    println!("{} version {}", version.model, version.version);
    println!(
        "  created      {} by {}",
        output::time(&version.created_at),
        version.author
    );
    println!("  hash         {}", version.content_hash);
    println!("  size         {} bytes", version.size_bytes);
    if let Some(d) = &version.description {
        println!("  description  {d}");
    }
    if let Some(t) = &version.training_data {
        println!("  training     {t}");
    }
    println!("  metrics      {}", version.metrics);
    println!("  producer     {}", sig.producer);
    println!("  operators    {}", sig.operators.join(", "));
    for i in &sig.inputs {
        println!("  input        {} {} {:?}", i.name, i.datatype, i.shape);
    }
    for o in &sig.outputs {
        println!("  output       {} {} {:?}", o.name, o.datatype, o.shape);
    }
    Ok(())
}

async fn alias(global: &Global, registry: &Registry, args: AliasArgs) -> anyhow::Result<()> {
    let alias = args.alias.trim_start_matches('@');
    let by = author(&args.author);
    let version = match (args.delete, args.version.as_deref()) {
        (true, _) => None,
        (false, Some(v)) => Some(registry.resolve(&args.name, &VersionSelector::parse(v)?).await?.version),
        (false, None) => bail!("give the version to point at (a number, 'latest' or @alias), or --delete"),
    };
    let moved =
        keel_plan::changes::move_alias(registry, &args.name, alias, version, args.reason.as_deref(), cli(&by)).await?;
    let set = match moved {
        Outcome::Held(change) => return report_held(global, &change),
        Outcome::Done(None) => {
            if global.json {
                return output::json(&serde_json::json!({ "model": args.name, "alias": alias, "deleted": true }));
            }
            println!("deleted @{alias} of {}", args.name);
            return Ok(());
        }
        Outcome::Done(Some(set)) => set,
    };
    if global.json {
        return output::json(&set);
    }
    println!("{}@{} -> version {}", set.model, set.alias, set.version);
    Ok(())
}

async fn history(global: &Global, registry: &Registry, name: &str, alias: Option<&str>) -> anyhow::Result<()> {
    let alias = alias.map(|a| a.trim_start_matches('@'));
    let events = registry.alias_history(name, alias).await?;
    if global.json {
        return output::json(&events);
    }
    let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                output::time(&e.at),
                format!("@{}", e.alias),
                show(e.from_version),
                show(e.to_version),
                e.by.clone(),
                e.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(&["WHEN (UTC)", "ALIAS", "FROM", "TO", "BY", "REASON"], &rows);
    Ok(())
}
