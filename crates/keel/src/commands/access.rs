//! `keel access ...`: teams, grants, admins, API tokens and the audit log.

use keel_catalog::{Permission, Via};

use crate::cli::{AccessCommand, Global, TeamCommand, TokenCommand};
use crate::context::{Context, principal};
use crate::output;

pub async fn run(global: &Global, cmd: AccessCommand) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let catalog = ctx.catalog();
    let actor = catalog.actor(&principal(global)).await?;
    let store = catalog.store();
    match cmd {
        AccessCommand::Whoami => {
            if global.json {
                return output::json(&actor);
            }
            println!(
                "{}{}",
                actor.name,
                if actor.is_admin { " (workspace admin)" } else { "" }
            );
            for (team, role) in &actor.teams {
                println!("  {team} ({role})");
            }
        }
        AccessCommand::Team(TeamCommand::Create { name, description }) => {
            catalog.create_team(&actor, &name, description.as_deref()).await?;
            done(global, &format!("team {name} created; you are its admin"))?;
        }
        AccessCommand::Team(TeamCommand::Ls) => {
            let teams = store.list_teams().await?;
            if global.json {
                return output::json(&teams);
            }
            let rows: Vec<Vec<String>> = teams
                .iter()
                .map(|t| {
                    let members: Vec<String> = t
                        .members
                        .iter()
                        .map(|m| {
                            if m.role == "admin" {
                                format!("{} (admin)", m.principal)
                            } else {
                                m.principal.clone()
                            }
                        })
                        .collect();
                    vec![
                        t.name.clone(),
                        members.join(", "),
                        t.description.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            output::table(&["TEAM", "MEMBERS", "DESCRIPTION"], &rows);
        }
        AccessCommand::Team(TeamCommand::Add { team, principal, role }) => {
            catalog.add_member(&actor, &team, &principal, &role).await?;
            done(global, &format!("{principal} is now {role} of team {team}"))?;
        }
        AccessCommand::Team(TeamCommand::Remove { team, principal }) => {
            catalog.remove_member(&actor, &team, &principal).await?;
            done(global, &format!("{principal} removed from team {team}"))?;
        }
        AccessCommand::Grant {
            table,
            team,
            permission,
        } => {
            let permission: Permission = permission.parse()?;
            // Refused now if the requester may not grant it, even when the policy would hold it
            // for a second person (who is checked again when approving).
            catalog.check_grant(&actor, &table, &team, permission, Via::Cli).await?;
            let proposal = keel_plan::approvals::Proposal::Grant {
                table: table.clone(),
                team: team.clone(),
                permission: permission.as_str().to_string(),
            };
            if crate::commands::changes::held(global, &ctx.registry.store().clone(), &proposal, &actor.name).await? {
                return Ok(());
            }
            catalog.grant(&actor, &table, &team, permission, Via::Cli).await?;
            done(global, &format!("team {team} may now {permission} table {table}"))?;
        }
        AccessCommand::Revoke { table, team } => {
            catalog.revoke(&actor, &table, &team, Via::Cli).await?;
            done(global, &format!("team {team}'s grant on table {table} revoked"))?;
        }
        AccessCommand::Grants { table } => {
            let grants = catalog.visible_grants(&actor, table.as_deref(), Via::Cli).await?;
            if global.json {
                return output::json(&grants);
            }
            let rows: Vec<Vec<String>> = grants
                .iter()
                .map(|g| {
                    vec![
                        g.table.clone(),
                        g.team.clone(),
                        g.permission.clone(),
                        g.granted_by.clone(),
                        output::time(&g.granted_at),
                    ]
                })
                .collect();
            output::table(&["TABLE", "TEAM", "PERMISSION", "GRANTED BY", "AT"], &rows);
        }
        AccessCommand::Admin { principal, revoke } => {
            catalog.set_admin(&actor, &principal, !revoke).await?;
            done(
                global,
                &format!(
                    "{principal} {} a workspace admin",
                    if revoke { "is no longer" } else { "is now" }
                ),
            )?;
        }
        AccessCommand::Token(TokenCommand::Create {
            name,
            scopes,
            expires,
            label,
        }) => {
            let principal = name.unwrap_or_else(|| actor.name.clone());
            let scopes = keel_auth::Scopes::parse(&scopes.join(" "))?;
            let expires_in = expires.as_deref().map(keel_auth::tokens::parse_lifetime).transpose()?;
            let request = keel_auth::tokens::TokenRequest {
                principal: &principal,
                scopes,
                label: label.as_deref(),
                expires_in,
            };
            let issued = keel_auth::tokens::issue(&catalog, &actor, request).await?;
            if global.json {
                return output::json(&serde_json::json!({
                    "id": issued.id,
                    "principal": issued.principal,
                    "scopes": issued.scopes,
                    "expires_at": issued.expires_at,
                    "token": issued.secret,
                }));
            }
            println!("{}", issued.secret);
            eprintln!(
                "token {} for {} with scopes {}{}: shown once; send it as `Authorization: Bearer <token>` (or KEEL_TOKEN for the CLI)",
                issued.id,
                issued.principal,
                issued.scopes,
                issued
                    .expires_at
                    .map(|t| format!(", expires {}", output::time(&t)))
                    .unwrap_or_default()
            );
        }
        AccessCommand::Token(TokenCommand::Ls { principal }) => {
            let tokens = keel_auth::tokens::list(&catalog, &actor, principal.as_deref()).await?;
            if global.json {
                return output::json(&tokens);
            }
            let now = chrono::Utc::now();
            let rows: Vec<Vec<String>> = tokens
                .iter()
                .map(|t| {
                    let state = match (&t.revoked_at, &t.expires_at) {
                        (Some(at), _) => format!("revoked {}", output::time(at)),
                        (None, Some(at)) if *at <= now => format!("expired {}", output::time(at)),
                        (None, Some(at)) => format!("until {}", output::time(at)),
                        (None, None) => "live".to_owned(),
                    };
                    vec![
                        t.id.clone(),
                        t.principal.clone(),
                        t.scopes.clone(),
                        state,
                        t.label.clone().unwrap_or_default(),
                        format!("{} by {}", output::time(&t.created_at), t.created_by),
                    ]
                })
                .collect();
            output::table(&["ID", "PRINCIPAL", "SCOPES", "STATE", "LABEL", "CREATED"], &rows);
        }
        AccessCommand::Token(TokenCommand::Revoke { id, all_of }) => match (id, all_of) {
            (Some(id), _) => {
                let token = keel_auth::tokens::revoke(&catalog, &actor, &id).await?;
                done(global, &format!("token {} of {} revoked", token.id, token.principal))?;
            }
            (None, Some(principal)) => {
                let n = keel_auth::tokens::revoke_all(&catalog, &actor, &principal).await?;
                done(global, &format!("{n} token(s) of {principal} revoked"))?;
            }
            (None, None) => anyhow::bail!("name a token id (tok_...) or --all-of PRINCIPAL"),
        },
        AccessCommand::Audit {
            table,
            actor: who,
            limit,
        } => {
            // Admins see everything; others see their own records only.
            let who = if actor.is_admin { who } else { Some(actor.name.clone()) };
            let prefix = table.as_ref().map(|t| format!("table/{t}"));
            let events = store.audit_events(limit, prefix.as_deref(), who.as_deref()).await?;
            if global.json {
                return output::json(&events);
            }
            let rows: Vec<Vec<String>> = events
                .iter()
                .map(|e| {
                    vec![
                        output::time(&e.at),
                        e.actor.clone(),
                        e.action.clone(),
                        e.resource.clone(),
                        if e.allowed { "allowed".into() } else { "DENIED".into() },
                        e.via.clone(),
                    ]
                })
                .collect();
            output::table(&["AT", "ACTOR", "ACTION", "RESOURCE", "RESULT", "VIA"], &rows);
        }
    }
    Ok(())
}

fn done(global: &Global, message: &str) -> anyhow::Result<()> {
    if global.json {
        return output::json(&serde_json::json!({ "ok": true, "message": message }));
    }
    println!("{message}");
    Ok(())
}
