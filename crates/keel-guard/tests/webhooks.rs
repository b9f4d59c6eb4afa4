//! Webhooks against real HTTP servers on loopback: one that records, one that answers 500, one
//! that hangs. Failures are reported (and, through `notify_all`, counted), never waited on
//! beyond the timeout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use keel_guard::alert::{AlertEvent, Failure, Notifier, WebhookFormat, send};

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

fn event() -> AlertEvent {
    AlertEvent {
        deployment: "promo".into(),
        rule: "burn".into(),
        status: "firing",
        value: 4.0,
        message: "the SLO burn rate is 4".into(),
        at_ms: 1,
        rollback: true,
    }
}

#[tokio::test]
async fn json_and_slack_bodies_arrive_and_failures_are_reported() {
    let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let record = {
        let seen = seen.clone();
        post(move |body: axum::Json<serde_json::Value>| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push(body.0);
                StatusCode::OK
            }
        })
    };
    let ok = serve(Router::new().route("/hook", record)).await;
    let failing = serve(Router::new().route("/hook", post(|| async { StatusCode::INTERNAL_SERVER_ERROR }))).await;
    let hanging = serve(Router::new().route(
        "/hook",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            StatusCode::OK
        }),
    ))
    .await;
    let client = reqwest::Client::new();
    let n = |url: &str, format| Notifier {
        url: url.to_owned(),
        format,
        timeout_seconds: 1,
    };
    let e = event();
    send(&client, &n(&ok, WebhookFormat::Json), &e.body(WebhookFormat::Json))
        .await
        .expect("json delivered");
    send(&client, &n(&ok, WebhookFormat::Slack), &e.body(WebhookFormat::Slack))
        .await
        .expect("slack delivered");
    {
        let seen = seen.lock().expect("lock");
        assert_eq!(seen[0]["rule"], "burn");
        assert_eq!(seen[0]["rollback"], true);
        assert!(seen[1]["text"].as_str().expect("text").contains("burn"));
    }
    assert_eq!(
        send(&client, &n(&failing, WebhookFormat::Json), &e.body(WebhookFormat::Json)).await,
        Err(Failure::Status(500))
    );
    assert_eq!(
        send(&client, &n(&hanging, WebhookFormat::Json), &e.body(WebhookFormat::Json)).await,
        Err(Failure::Timeout)
    );
    let refused = send(
        &client,
        &n("http://127.0.0.1:9/hook", WebhookFormat::Json),
        &e.body(WebhookFormat::Json),
    )
    .await;
    assert!(matches!(refused, Err(Failure::Transport(_))), "{refused:?}");
}
