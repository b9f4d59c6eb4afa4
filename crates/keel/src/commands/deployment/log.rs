//! `keel deployment verify` and `keel deployment repair`: a deployment's decision log in local
//! files (the embedded store: byte offsets) or in PostgreSQL (replicas: sequence numbers).

use crate::cli::Global;
use crate::context::{Context, principal};
use crate::output;

pub(super) async fn verify(global: &Global, ctx: &Context, name: String) -> anyhow::Result<()> {
    let store = ctx.registry.store();
    keel_experiments::validate_name(&name)?;
    let dir = keel_experiments::offline::ope::decision_log_dir(&ctx.home, &name);
    if let Some(pool) = store.postgres_pool() {
        let found = keel_experiments::pgcheck::verify(&pool, &name, &dir).await?;
        return verify_pg(global, &found, &name);
    }
    if !dir.exists() {
        anyhow::bail!("deployment '{name}' has no decision log in {}", dir.display());
    }
    let found = tokio::task::spawn_blocking(move || keel_experiments::logdir::verify(&dir)).await??;
    if global.json {
        output::json(&found)?;
    } else {
        print_archived(&found.archived, found.archived_checked);
        for check in &found.files {
            print_check(check);
        }
        for snap in &found.snapshots {
            match &snap.problem {
                None => println!(
                    "snapshot {}: through record {}, {} decisions in open windows, {} bytes",
                    snap.path.display(),
                    snap.seq.unwrap_or(0),
                    snap.waiting.unwrap_or(0),
                    snap.bytes
                ),
                Some(p) => println!(
                    "snapshot {}: UNUSABLE ({p}); the log is replayed instead",
                    snap.path.display()
                ),
            }
        }
    }
    if let Some(d) = &found.damage {
        anyhow::bail!(
            "the decision log of '{name}' is damaged at byte {} of {}; move the damaged part aside with \
                     `keel deployment repair {name} --from-offset {}`",
            d.damage.offset,
            d.file.display(),
            d.damage.offset
        );
    }
    Ok(())
}

pub(super) async fn repair(
    global: &Global,
    ctx: &Context,
    name: String,
    from_offset: Option<u64>,
    from_seq: Option<u64>,
) -> anyhow::Result<()> {
    let store = ctx.registry.store();
    let by = principal(global);
    if store.postgres_pool().is_some() {
        let Some(from_seq) = from_seq else {
            anyhow::bail!(
                "the decision log of '{name}' is in PostgreSQL: say where to cut with --from-seq N (the sequence number `keel deployment verify {name}` reports), not --from-offset"
            );
        };
        let done = keel_experiments::pgcheck::repair(store, &name, from_seq, &by).await?;
        if global.json {
            return output::json(&done);
        }
        println!(
            "moved {} rows of {name}'s log from seq {} on into deployment_log_repaired (repair {}), {} rewards into deployment_rewards_repaired, {} metric values into deployment_metrics_repaired, {} snapshots into deployment_snapshots_repaired; the log now ends at seq {} (was {}); recorded in the change log as done by {by}. Restart the keel serve replicas so they reload it.",
            done.moved_rows,
            done.from_seq,
            done.repair_id,
            done.moved_rewards,
            done.moved_metrics,
            done.moved_snapshots,
            done.head_after,
            done.head_before
        );
        print_pg_check(&done.after);
        return Ok(());
    }
    let Some(from_offset) = from_offset else {
        anyhow::bail!(
            "say where to cut the decision log of '{name}' with --from-offset N (the byte offset `keel deployment verify {name}` reports)"
        );
    };
    let dir = ctx.home.join("experiments");
    let done = keel_experiments::logdir::repair_deployment_log(store, &dir, &name, from_offset, &by).await?;
    if global.json {
        return output::json(&done);
    }
    println!(
        "moved {} bytes of {} from byte {} to {}; recorded in the change log as done by {by}",
        done.moved_bytes,
        done.path.display(),
        done.from_offset,
        done.moved_to.display()
    );
    print_check(&done.after);
    Ok(())
}

/// `keel deployment verify` on a log in PostgreSQL: prints what it found, fails on damage.
fn verify_pg(global: &Global, found: &keel_experiments::pgcheck::PgVerify, name: &str) -> anyhow::Result<()> {
    if global.json {
        output::json(found)?;
    } else {
        print_archived(&found.archived, found.archived_checked);
        print_pg_check(found);
        for snap in &found.snapshots {
            match &snap.problem {
                None => println!(
                    "snapshot at seq {} (deployment_snapshots, by replica {}): {} decisions in open windows, {} bytes",
                    snap.seq,
                    snap.replica,
                    snap.waiting.unwrap_or(0),
                    snap.bytes
                ),
                Some(p) => println!(
                    "snapshot at seq {} (deployment_snapshots): UNUSABLE ({p}); an earlier one or the log is used instead",
                    snap.seq
                ),
            }
        }
    }
    if let Some(seq) = found.first_damage() {
        anyhow::bail!(
            "the decision log of '{name}' in PostgreSQL is damaged at seq {seq} ({} problems); deployment '{name}' does not start until it is repaired. \
             Restore deployment_log from a backup, or move the rows from seq {seq} on aside with `keel deployment repair {name} --from-seq {seq}`",
            found.problems
        );
    }
    Ok(())
}

/// What `keel deployment verify` found in a log in PostgreSQL, for people.
fn print_pg_check(found: &keel_experiments::pgcheck::PgVerify) {
    let range = match (found.first_seq, found.last_seq) {
        (Some(a), Some(b)) => format!("sequence {a}..{b}"),
        _ => "no records".to_string(),
    };
    println!(
        "postgres:{}/{}: {} rows, {} valid records, {range}, head at seq {}{}",
        found.table,
        found.deployment,
        found.rows,
        found.valid,
        found.head,
        if found.repaired_rows > 0 {
            format!("; {} rows moved aside by earlier repairs", found.repaired_rows)
        } else {
            String::new()
        }
    );
    for d in &found.damage {
        match &d.replica {
            Some(r) => println!("DAMAGED at seq {} (written by replica {r}): {}", d.seq, d.reason),
            None => println!("DAMAGED at seq {}: {}", d.seq, d.reason),
        }
    }
    if found.problems > found.damage.len() as u64 {
        println!("... {} problems in all", found.problems);
    }
}

/// What `keel deployment verify` found, for people.
fn print_check(check: &keel_experiments::logfile::LogCheck) {
    let range = match (check.first_seq, check.last_seq) {
        (Some(a), Some(b)) => format!("sequence {a}..{b}"),
        _ => "no records".to_string(),
    };
    println!(
        "{}: {} bytes, {} valid records ({} without checksum, from before framing), {range}, valid up to byte {}",
        check.path.display(),
        check.bytes,
        check.records,
        check.legacy_records,
        check.good_bytes
    );
    if let Some(t) = &check.torn_tail {
        println!(
            "torn tail at byte {} ({}): never acknowledged, dropped when the deployment starts",
            t.offset, t.reason
        );
    }
    if let Some(d) = &check.damage {
        let next = d
            .next_valid
            .map_or_else(String::new, |n| format!("; valid records again from byte {n}"));
        println!("DAMAGED at byte {} ({}){next}", d.offset, d.reason);
    }
}

fn print_archived(archived: &[keel_experiments::archive::Archived], checked: bool) {
    for a in archived {
        println!(
            "records {}..={} ({}): archived to the lake table {}{}",
            a.first_seq,
            a.last_seq,
            a.records,
            keel_experiments::archive::TABLE,
            if checked {
                ", read back and checked"
            } else {
                ", not checked (no lake here)"
            }
        );
    }
}
