//! `keel webhook`: subscriptions to keel's events, and their deliveries.

use crate::cli::{Global, WebhookCommand};
use crate::context::{Context, principal};
use crate::output;

pub async fn run(global: &Global, cmd: WebhookCommand) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let store = ctx.registry.store();
    match cmd {
        WebhookCommand::Add(args) => {
            keel_guard::webhook::check_subscription(&args.url, &args.events, args.secret_env.as_deref())?;
            let hook = store
                .add_webhook(&args.url, &args.events, args.secret_env.as_deref(), &principal(global))
                .await?;
            if global.json {
                return output::json(&hook);
            }
            println!(
                "webhook {} -> {} for {}{}",
                hook.id,
                keel_store::redact_url(&hook.url),
                hook.events.join(", "),
                match &hook.secret_env {
                    Some(v) => format!(", signed with the secret in ${v} of keel serve"),
                    None => ", unsigned (add --secret-env VAR to sign)".to_string(),
                }
            );
        }
        WebhookCommand::Ls => {
            let hooks = store.list_webhooks().await?;
            if global.json {
                return output::json(&hooks);
            }
            let rows: Vec<Vec<String>> = hooks
                .iter()
                .map(|h| {
                    vec![
                        h.id.to_string(),
                        keel_store::redact_url(&h.url),
                        h.events.join(","),
                        h.secret_env.clone().unwrap_or_else(|| "-".into()),
                        h.created_by.clone(),
                    ]
                })
                .collect();
            output::table(&["ID", "URL", "EVENTS", "SECRET ENV", "BY"], &rows);
        }
        WebhookCommand::Rm { id } => {
            store.remove_webhook(id, &principal(global)).await?;
            if global.json {
                return output::json(&serde_json::json!({ "removed": id }));
            }
            println!("removed webhook {id}");
        }
        WebhookCommand::Deliveries(args) => {
            if global.json {
                let out = keel_guard::webhook::deliveries(store, args.webhook, args.limit).await?;
                return output::json(&out);
            }
            let deliveries = store.list_deliveries(args.webhook, args.limit).await?;
            let rows: Vec<Vec<String>> = deliveries
                .iter()
                .map(|d| {
                    vec![
                        d.id.to_string(),
                        d.webhook_id.to_string(),
                        d.event.clone(),
                        d.status.clone(),
                        d.attempts.to_string(),
                        d.last_status_code.map(|c| c.to_string()).unwrap_or_default(),
                        d.last_error.clone().unwrap_or_default(),
                        output::time(&d.created_at),
                    ]
                })
                .collect();
            output::table(
                &[
                    "ID",
                    "WEBHOOK",
                    "EVENT",
                    "STATUS",
                    "ATTEMPTS",
                    "HTTP",
                    "LAST ERROR",
                    "QUEUED (UTC)",
                ],
                &rows,
            );
        }
    }
    Ok(())
}
