//! Approvals: policies, and changes held for a second person.

use keel_store::{ApprovalOutcome, NewPendingChange, StoreError};
use serde_json::json;

use crate::support::Fixture;

fn alias_change<'a>(
    proposal: &'a serde_json::Value,
    diff: &'a [String],
    base: &'a serde_json::Value,
    by: &'a str,
) -> NewPendingChange<'a> {
    NewPendingChange {
        kind: "alias",
        subject: "model/bc-lr/alias/production",
        proposal,
        diff,
        base,
        rule: "aliases: production",
        requested_by: by,
        source: "rest",
        git_commit: Some("abc123"),
    }
}

pub async fn policies_are_set_read_and_removed_with_the_change_log(fx: Fixture) {
    assert_eq!(fx.store.get_policy("approvals").await.expect("get"), None);
    let body = json!({"aliases": ["production"]});
    fx.store.put_policy("approvals", Some(&body), "ana").await.expect("put");
    assert_eq!(fx.store.get_policy("approvals").await.expect("get"), Some(body));
    fx.store.put_policy("approvals", None, "ana").await.expect("remove");
    assert_eq!(fx.store.get_policy("approvals").await.expect("get"), None);
    let log = fx.store.list_changes(10, Some("policy/")).await.expect("log");
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].kind, "policy.set");
    assert_eq!(log[1].details["policy"]["aliases"], json!(["production"]));
}

pub async fn a_change_is_requested_claimed_by_another_and_approved(fx: Fixture) {
    let (proposal, base) = (
        json!({"model": "bc-lr", "alias": "production", "version": 2}),
        json!({"version": 1}),
    );
    let diff = vec!["version 1 -> 2".to_string()];
    let held = fx
        .store
        .request_change(alias_change(&proposal, &diff, &base, "alice"))
        .await
        .expect("request");
    assert_eq!(held.status, "pending");
    assert_eq!(
        (held.proposal.clone(), held.base.clone(), held.diff.clone()),
        (proposal, base, diff)
    );
    assert_eq!(held.git_commit.as_deref(), Some("abc123"));
    let waiting = fx.store.list_pending_changes(Some("pending"), 100).await.expect("list");
    assert_eq!(waiting.iter().map(|c| c.id).collect::<Vec<_>>(), vec![held.id]);

    // The requester cannot claim their own change.
    let own = fx.store.claim_approval(held.id, "alice").await.expect_err("own");
    assert!(matches!(own, StoreError::Conflict { .. }), "{own}");
    assert!(own.to_string().contains("someone else"), "{own}");

    let claimed = fx.store.claim_approval(held.id, "bob").await.expect("claim");
    assert_eq!(claimed.status, "approving");
    // Only one approver holds it.
    let second = fx
        .store
        .claim_approval(held.id, "carol")
        .await
        .expect_err("second claim");
    assert!(second.to_string().contains("being approved by bob"), "{second}");
    assert!(
        fx.store
            .list_pending_changes(Some("pending"), 100)
            .await
            .expect("list")
            .is_empty()
    );

    let done = fx
        .store
        .finish_approval(
            held.id,
            "bob",
            &ApprovalOutcome::Applied {
                details: json!({"to_version": 2}),
            },
        )
        .await
        .expect("finish");
    assert_eq!(
        (done.status.as_str(), done.decided_by.as_deref()),
        ("approved", Some("bob"))
    );
    assert!(done.decided_at.is_some());
    let log = fx
        .store
        .list_changes(10, Some("model/bc-lr/alias/production"))
        .await
        .expect("log");
    assert_eq!(
        log.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>(),
        vec!["change.approved", "change.requested"]
    );
    assert_eq!(log[0].actor, "bob");
    assert_eq!(log[0].details["requested_by"], json!("alice"));
    assert_eq!(log[0].details["approved_by"], json!("bob"));
    assert_eq!(log[0].details["to_version"], json!(2));
    assert_eq!(log[1].actor, "alice");

    // A decided change cannot be rejected or approved again.
    let again = fx
        .store
        .reject_change(held.id, "carol", "too late")
        .await
        .expect_err("reject");
    assert!(again.to_string().contains("approved by bob"), "{again}");
    assert!(matches!(
        fx.store.pending_change(999).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn a_failed_approval_returns_the_change_to_pending_and_rejection_closes_it(fx: Fixture) {
    let (proposal, base) = (json!({"version": 3}), json!({"version": 1}));
    let held = fx
        .store
        .request_change(alias_change(&proposal, &[], &base, "alice"))
        .await
        .expect("request");
    fx.store.claim_approval(held.id, "bob").await.expect("claim");
    let back = fx
        .store
        .finish_approval(held.id, "bob", &ApprovalOutcome::Failed { error: "stale".into() })
        .await
        .expect("release");
    assert_eq!(
        (back.status.as_str(), back.note.as_deref(), back.decided_by),
        ("pending", Some("stale"), None)
    );
    // Someone other than the claimant cannot finish it.
    fx.store.claim_approval(held.id, "bob").await.expect("claim again");
    let wrong = fx
        .store
        .finish_approval(held.id, "carol", &ApprovalOutcome::Applied { details: json!({}) })
        .await
        .expect_err("not carol's claim");
    assert!(matches!(wrong, StoreError::Conflict { .. }));
    fx.store
        .finish_approval(
            held.id,
            "bob",
            &ApprovalOutcome::Failed {
                error: "still stale".into(),
            },
        )
        .await
        .expect("release");

    let empty = fx
        .store
        .reject_change(held.id, "carol", " ")
        .await
        .expect_err("no reason");
    assert!(matches!(empty, StoreError::Invalid(_)));
    let closed = fx
        .store
        .reject_change(held.id, "carol", "not this week")
        .await
        .expect("reject");
    assert_eq!(
        (closed.status.as_str(), closed.note.as_deref()),
        ("rejected", Some("not this week"))
    );
    assert!(fx.store.claim_approval(held.id, "bob").await.is_err());
    let all = fx.store.list_pending_changes(None, 10).await.expect("all");
    assert_eq!(all.len(), 1);
    let log = fx.store.list_changes(1, None).await.expect("log");
    assert_eq!(
        (log[0].kind.as_str(), log[0].details["reason"].as_str()),
        ("change.rejected", Some("not this week"))
    );
}
