//! Webhooks: subscriptions and the delivery outbox.

use keel_store::{Attempt, StoreError};
use serde_json::json;

use crate::support::Fixture;

pub async fn subscriptions_are_added_listed_and_removed_without_their_secrets(fx: Fixture) {
    let events = vec!["alias.moved".to_string(), "model.pushed".to_string()];
    let hook = fx
        .store
        .add_webhook(
            "https://hooks.example.com/services/T000/xyz-token",
            &events,
            Some("HOOK_SECRET"),
            "ana",
        )
        .await
        .expect("add");
    assert_eq!(hook.events, events);
    let shown = serde_json::to_value(&hook).expect("json");
    assert_eq!(shown["url"], json!("https://hooks.example.com/…"));
    assert_eq!(shown["secret_env"], json!("HOOK_SECRET"));
    let log = fx.store.list_changes(1, None).await.expect("log");
    assert!(!log[0].details.to_string().contains("xyz-token"), "{}", log[0].details);
    assert!(!log[0].details.to_string().contains("T000"), "{}", log[0].details);
    assert_eq!(fx.store.list_webhooks().await.expect("ls").len(), 1);
    assert!(matches!(
        fx.store.add_webhook("http://x", &[], None, "ana").await,
        Err(StoreError::Invalid(_))
    ));
    fx.store.remove_webhook(hook.id, "ana").await.expect("rm");
    assert!(matches!(
        fx.store.remove_webhook(hook.id, "ana").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(fx.store.list_webhooks().await.expect("ls").is_empty());
}

pub async fn events_are_queued_per_subscriber_claimed_once_and_retried(fx: Fixture) {
    let all = fx
        .store
        .add_webhook("http://127.0.0.1:9/a", &["*".into()], None, "ana")
        .await
        .expect("add");
    let some = fx
        .store
        .add_webhook("http://127.0.0.1:9/b", &["alias.moved".into()], None, "ana")
        .await
        .expect("add");
    assert_eq!(
        fx.store
            .enqueue_event("model.pushed", &json!({"v": 1}))
            .await
            .expect("queue"),
        1
    );
    assert_eq!(
        fx.store
            .enqueue_event("alias.moved", &json!({"v": 2}))
            .await
            .expect("queue"),
        2
    );

    let now = chrono::Utc::now().timestamp_millis();
    let claimed = fx.store.claim_deliveries(now, now + 30_000, 10).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|d| d.delivery.status == "delivering"));
    // Claimed rows are not claimed again while their lease holds...
    assert!(
        fx.store
            .claim_deliveries(now, now + 30_000, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    // ...and are taken over once it lapsed.
    let later = fx
        .store
        .claim_deliveries(now + 31_000, now + 60_000, 10)
        .await
        .expect("takeover");
    assert_eq!(later.len(), 3);

    let first = later.iter().find(|d| d.delivery.webhook_id == some.id).expect("b's");
    assert_eq!(first.url, "http://127.0.0.1:9/b");
    fx.store
        .record_attempt(
            first.delivery.id,
            &Attempt {
                status_code: Some(500),
                error: Some("HTTP 500".into()),
                duration_ms: 3,
                delivered: false,
                retry_at: Some(now + 1_000),
            },
        )
        .await
        .expect("attempt 1");
    for d in later.iter().filter(|d| d.delivery.id != first.delivery.id) {
        fx.store
            .record_attempt(
                d.delivery.id,
                &Attempt {
                    status_code: None,
                    error: Some("refused".into()),
                    duration_ms: 1,
                    delivered: false,
                    retry_at: None,
                },
            )
            .await
            .expect("failed for good");
    }
    let retried = fx
        .store
        .claim_deliveries(now + 61_000, now + 90_000, 10)
        .await
        .expect("retry");
    assert_eq!(
        retried.iter().map(|d| d.delivery.id).collect::<Vec<_>>(),
        vec![first.delivery.id]
    );
    assert_eq!(retried[0].delivery.attempts, 1);
    fx.store
        .record_attempt(
            first.delivery.id,
            &Attempt {
                status_code: Some(204),
                error: None,
                duration_ms: 2,
                delivered: true,
                retry_at: None,
            },
        )
        .await
        .expect("attempt 2");
    let listed = fx.store.list_deliveries(None, 10).await.expect("list");
    let by_id = |id| listed.iter().find(|d| d.id == id).expect("listed");
    let done = by_id(first.delivery.id);
    assert_eq!(
        (done.status.as_str(), done.attempts, done.last_status_code),
        ("delivered", 2, Some(204))
    );
    assert_eq!(listed.iter().filter(|d| d.status == "failed").count(), 2);
    assert_eq!(fx.store.list_deliveries(Some(all.id), 10).await.expect("of a").len(), 2);
    let attempts = fx.store.delivery_attempts(first.delivery.id).await.expect("attempts");
    assert_eq!(
        attempts.iter().map(|a| (a.attempt, a.status_code)).collect::<Vec<_>>(),
        vec![(1, Some(500)), (2, Some(204))]
    );
    assert!(
        fx.store
            .claim_deliveries(now + 200_000, now + 230_000, 10)
            .await
            .expect("none")
            .is_empty()
    );

    // Removing a webhook cancels what it had not been sent.
    fx.store.enqueue_event("alias.moved", &json!({})).await.expect("queue");
    fx.store.remove_webhook(some.id, "ana").await.expect("rm");
    let cancelled = fx.store.list_deliveries(Some(some.id), 1).await.expect("list");
    assert_eq!(cancelled[0].status, "cancelled");
}
