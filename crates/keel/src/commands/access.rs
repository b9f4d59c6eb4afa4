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
        AccessCommand::Token(TokenCommand::Create { principal, label }) => {
            let for_whom = principal.unwrap_or_else(|| actor.name.clone());
            let secret = catalog.issue_token(&actor, &for_whom, label.as_deref()).await?;
            if global.json {
                return output::json(&serde_json::json!({ "principal": for_whom, "token": secret }));
            }
            println!("{secret}");
            eprintln!("token for {for_whom}: shown once; send it as `Authorization: Bearer <token>`");
        }
        AccessCommand::Token(TokenCommand::Revoke { principal }) => {
            let n = catalog.revoke_tokens(&actor, &principal).await?;
            done(global, &format!("{n} token(s) of {principal} revoked"))?;
        }
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
