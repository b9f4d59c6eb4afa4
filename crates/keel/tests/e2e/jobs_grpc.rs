//! Jobs over gRPC (`keel.jobs.v1.Jobs`) against a real `keel serve --auth required`: the same
//! job table as REST `/v1/jobs` (a job started over gRPC is seen over REST), the same scopes
//! (no credential, a viewer, a decider without `data:write` for a batch score), typed requests
//! checked before anything runs, a watch stream that ends with the finished job, and cancel.

use std::time::Duration;

use keel_api::jobs_proto::jobs_client::JobsClient;
use keel_api::jobs_proto::{self as pb, start_job_request::Job as Kind};
use serde_json::{Value, json};
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::campaign::{customers, token};
use crate::support::Keel;

/// `request` with `Authorization: Bearer token`.
fn authed<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", value);
    request
}

fn decide(into: &str, batch_rows: u32) -> pb::StartJobRequest {
    pb::StartJobRequest {
        job: Some(Kind::BatchDecide(pb::BatchDecide {
            deployment: "even".into(),
            from: "customers".into(),
            unit_column: "customer_id".into(),
            into: into.into(),
            run_id: String::new(),
            batch_rows,
        })),
    }
}

/// Follows `id` with `Watch` to its end: every message, the last one finished.
async fn watch(client: &mut JobsClient<Channel>, token: &str, id: &str) -> Vec<pb::Job> {
    let mut stream = client
        .watch(authed(token, pb::GetJobRequest { id: id.into() }))
        .await
        .expect("watch")
        .into_inner();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while let Some(message) = tokio::time::timeout_at(deadline, stream.message())
        .await
        .expect("the job finishes within 2 minutes")
        .expect("stream")
    {
        seen.push(message);
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_over_grpc_on_the_same_table_as_rest() {
    let keel = Keel::quiet();
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [0.5, 0.5]},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600}
    });
    keel.ok(&[
        "deployment",
        "apply",
        "even",
        "-f",
        &keel.file("even.json", spec.to_string()),
    ]);
    customers(&keel, "customers", 500, &[]);
    customers(&keel, "many", 20_000, &[]);
    let decider = token(&keel, "campaigns", "decide,view");
    let viewer = token(&keel, "dashboard", "view");
    keel.ok(&["access", "team", "create", "marketing"]);
    keel.ok(&["access", "team", "add", "marketing", "campaigns"]);
    keel.ok(&["access", "grant", "customers", "marketing", "read"]);
    keel.ok(&["access", "grant", "many", "marketing", "read"]);
    let server = keel.serve(&["--auth", "required"]).ready().await;
    let mut client = JobsClient::connect(format!("http://127.0.0.1:{}", server.ports.grpc))
        .await
        .expect("connect");

    // Who may start a job: nobody without a credential, not a viewer; a batch score also needs
    // data:write, which the decider lacks.
    let refused = client.start(decide("sends", 0)).await.expect_err("no credential");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let refused = client
        .start(authed(&viewer, decide("sends", 0)))
        .await
        .expect_err("a viewer");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("decide"), "{refused:?}");
    let score = pb::StartJobRequest {
        job: Some(Kind::BatchScore(pb::BatchScore {
            model: "m".into(),
            from: "customers".into(),
            into: "scores".into(),
            ..Default::default()
        })),
    };
    let refused = client.start(authed(&decider, score)).await.expect_err("no data:write");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("data:write"), "{refused:?}");

    // Bad requests are refused with what to do, and queue nothing.
    let empty = client
        .start(authed(&decider, pb::StartJobRequest { job: None }))
        .await
        .expect_err("no job");
    assert_eq!(empty.code(), Code::InvalidArgument, "{empty:?}");
    assert!(empty.message().contains("batch_decide"), "{empty:?}");
    let mut no_unit = decide("sends", 0);
    if let Some(Kind::BatchDecide(j)) = &mut no_unit.job {
        j.unit_column.clear();
    }
    let missing = client
        .start(authed(&decider, no_unit))
        .await
        .expect_err("no unit column");
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");
    assert!(missing.message().contains("unit_column"), "{missing:?}");
    let mut unknown = decide("sends", 0);
    if let Some(Kind::BatchDecide(j)) = &mut unknown.job {
        j.deployment = "nope".into();
    }
    let missing = client
        .start(authed(&decider, unknown))
        .await
        .expect_err("unknown deployment");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let listed = client
        .list(authed(&viewer, pb::ListJobsRequest {}))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.jobs.is_empty(), "nothing was queued: {listed:?}");

    // A batch decide over gRPC, followed to its end by Watch.
    let started = client
        .start(authed(&decider, decide("sends", 64)))
        .await
        .expect("start")
        .into_inner();
    assert_eq!(started.kind, "batch_decide");
    assert_eq!(started.principal, "campaigns");
    let seen = watch(&mut client, &viewer, &started.id).await;
    let last = seen.last().expect("at least one message");
    assert_eq!(last.state(), pb::JobState::Succeeded, "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].rows <= w[1].rows),
        "rows only grow: {seen:?}"
    );
    assert_eq!(last.rows, 500, "{last:?}");
    let summary: Value = serde_json::from_str(&last.summary_json).expect("summary");
    assert_eq!(summary["decided"], 500, "{summary}");
    let rows = keel.json(&["data", "sql", "SELECT COUNT(*) AS n FROM sends"]);
    assert_eq!(rows[0]["n"], 500, "{rows}");

    // The same job over REST: one table, two transports.
    let rest = server
        .client
        .get(server.url(&format!("/v1/jobs/{}", started.id)))
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("request")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(rest["state"], "succeeded", "{rest}");
    assert_eq!(rest["summary"], summary, "{rest}");

    // Cancel over gRPC: a viewer may not; the decider stops a long job between chunks, and the
    // stream ends with the cancelled job.
    let mut long = decide("many_sends", 8);
    if let Some(Kind::BatchDecide(j)) = &mut long.job {
        j.from = "many".into();
    }
    let long = client.start(authed(&decider, long)).await.expect("start").into_inner();
    let refused = client
        .cancel(authed(&viewer, pb::CancelJobRequest { id: long.id.clone() }))
        .await
        .expect_err("a viewer cannot cancel");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    client
        .cancel(authed(&decider, pb::CancelJobRequest { id: long.id.clone() }))
        .await
        .expect("cancel");
    let seen = watch(&mut client, &viewer, &long.id).await;
    let last = seen.last().expect("a message");
    assert_eq!(last.state(), pb::JobState::Cancelled, "{seen:?}");
    assert!(last.rows < 20_000, "stopped before the end: {last:?}");
    assert!(!last.error_code.is_empty(), "{last:?}");
    let unknown = client
        .get(authed(&viewer, pb::GetJobRequest { id: "nope".into() }))
        .await
        .expect_err("unknown job");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let listed = client
        .list(authed(&viewer, pb::ListJobsRequest {}))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.jobs.len(), 2, "{listed:?}");
    server.stop();
}
