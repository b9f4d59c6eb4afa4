//! keel-data on a temporary lake and an in-memory SQLite store: passes, per-table SQL checks,
//! ingest with catalog commit and lineage, drift and assessment of tables.

use keel_assess::AssessOptions;
use keel_catalog::Catalog;
use keel_data::{Caller, DataError, DriftInput, Ingest, Read, Workspace, Write};
use keel_lake::Lake;
use keel_monitor::DriftOptions;
use keel_store::Store;
use keel_types::ErrorKind;
use serde_json::json;

struct Fixture {
    ws: Workspace,
    _dir: tempfile::TempDir,
    admin: Caller,
    sam: Caller,
    fin: Caller,
}

/// A workspace where `ana` is the admin, `sam` is in team `sales` and `fin` in team `finance`,
/// with a table `orders` sam ingested (derived from `table/raw@v0`) and a table `secret`.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open("sqlite::memory:").await.expect("store");
    let lake = Lake::open(&dir.path().join("lake")).expect("lake");
    let ws = Workspace::new(Catalog::new(store), lake);
    let admin = ws.cli_caller("ana").await.expect("ana");
    assert!(admin.actor().is_admin, "the first principal is the admin");
    let catalog = ws.catalog();
    for (team, member) in [("sales", "sam"), ("finance", "fin")] {
        catalog.create_team(admin.actor(), team, None).await.expect("team");
        catalog
            .add_member(admin.actor(), team, member, "member")
            .await
            .expect("member");
    }
    let sam = ws.cli_caller("sam").await.expect("sam");
    let fin = ws.cli_caller("fin").await.expect("fin");
    let csv = dir.path().join("orders.csv");
    std::fs::write(&csv, "id,email,amount\n1,a@example.com,10.5\n2,b@example.com,3.25\n").expect("csv");
    for table in ["orders", "secret"] {
        ws.ingest(
            &sam,
            &Ingest {
                table: table.into(),
                file: csv.clone(),
                derived_from: vec!["table/raw@v0".into()],
                description: Some(format!("{table} of the shop")),
                ..Ingest::default()
            },
        )
        .await
        .expect("ingest");
    }
    Fixture {
        ws,
        _dir: dir,
        admin,
        sam,
        fin,
    }
}

#[tokio::test]
async fn ingest_records_the_catalog_commit_and_lineage() {
    let f = fixture().await;
    let store = f.ws.catalog().store();
    let entry = store.table_entry("orders").await.expect("entry").expect("catalogued");
    assert_eq!(entry.owner_team, "sales");
    assert_eq!(entry.description.as_deref(), Some("orders of the shop"));
    let names: Vec<&str> = entry.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "email", "amount"]);
    assert!(
        entry.columns.iter().any(|c| c.name == "email" && c.pii),
        "PII detected in the sample: {entry:?}"
    );
    let (upstream, _) = store.lineage("table/orders@v0").await.expect("lineage");
    assert!(
        upstream
            .iter()
            .any(|e| e.source == "table/raw@v0" && e.relation == "derived_from"),
        "{upstream:?}"
    );
    let audit = store
        .audit_events(100, Some("table/orders"), Some("sam"))
        .await
        .expect("audit");
    assert!(
        audit.iter().any(|e| e.action == "write" && e.allowed && e.via == "cli"),
        "{audit:?}"
    );
    // A second ingest is a write to an existing table: a new version, same owner.
    let card = f.ws.show(&f.sam, "orders").await.expect("card");
    assert_eq!(card.versions.len(), 1);
    assert_eq!(card.catalog.expect("entry").owner_team, "sales");
}

#[tokio::test]
async fn a_reader_gets_no_write_pass_and_the_refusal_is_audited() {
    let f = fixture().await;
    let catalog = f.ws.catalog();
    catalog
        .grant(
            f.admin.actor(),
            "orders",
            "finance",
            keel_catalog::Permission::Read,
            f.admin.via(),
        )
        .await
        .expect("grant");
    let read =
        f.ws.check::<Read>(&f.fin, "orders", "read", json!({}))
            .await
            .expect("a reader gets a read pass");
    assert_eq!(read.table(), "orders");
    let rows = f.ws.rows(&read, None, 10).await.expect("rows");
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    let err =
        f.ws.check::<Write>(&f.fin, "orders", "write", json!({"why": "test"}))
            .await
            .expect_err("a reader gets no write pass");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert_eq!(err.code(), "forbidden");
    let audit = catalog
        .store()
        .audit_events(100, Some("table/orders"), Some("fin"))
        .await
        .expect("audit");
    assert!(
        audit.iter().any(|e| e.action == "write" && !e.allowed),
        "the refusal is audited: {audit:?}"
    );
    // The write operations need a write pass; the owner team's member has one.
    let write =
        f.ws.check::<Write>(&f.sam, "orders", "compact", json!({}))
            .await
            .expect("owner writes");
    f.ws.compact_table(&write, None, None).await.expect("compact");
}

#[tokio::test]
async fn sql_over_a_table_the_caller_cannot_read_is_refused_naming_it() {
    let f = fixture().await;
    f.ws.catalog()
        .grant(
            f.admin.actor(),
            "orders",
            "finance",
            keel_catalog::Permission::Read,
            f.admin.via(),
        )
        .await
        .expect("grant");
    let ok =
        f.ws.sql(&f.fin, "SELECT sum(amount) AS total FROM orders")
            .await
            .expect("fin reads orders");
    assert_eq!(ok.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let err =
        f.ws.sql(&f.fin, "SELECT * FROM orders o JOIN secret s ON o.id = s.id")
            .await
            .expect_err("secret is not readable");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("\"secret\""), "{err}");
    assert!(!err.to_string().contains("\"orders\""), "{err}");
    let bad = f.ws.sql(&f.sam, "SELEC nonsense").await.expect_err("bad sql");
    assert_eq!(bad.kind(), ErrorKind::InvalidArgument, "{bad}");
}

#[tokio::test]
async fn callers_unknown_tables_and_edits() {
    let f = fixture().await;
    let fin_api = f.ws.api_caller("fin").await.expect("fin over the API");
    assert_eq!(fin_api.name(), "fin");
    // A missing table reads as denied to a non-admin, and as not found to the admin.
    let denied = f.ws.show(&fin_api, "nope").await.expect_err("denied");
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    let missing = f.ws.history(&f.admin, "nope").await.expect_err("missing");
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    assert!(matches!(missing, DataError::Lake(_)));
    // Listing and search show only readable tables.
    assert!(f.ws.list(&fin_api, None).await.expect("list").is_empty());
    let hits = f.ws.search(&f.sam, "shop").await.expect("search");
    assert_eq!(hits.len(), 2);
    let edit = keel_data::Describe {
        table: "orders".into(),
        ..Default::default()
    };
    let nothing = f.ws.describe(&f.sam, &edit).await.expect_err("no edit");
    assert_eq!(nothing.kind(), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn drift_reads_tables_through_read_passes() {
    let f = fixture().await;
    let (orders, secret) = (DriftInput::parse("orders"), DriftInput::parse("secret@v0"));
    let same =
        f.ws.drift(&f.sam, &orders, &secret, DriftOptions::default())
            .await
            .expect("drift between two tables");
    assert_eq!((same.reference_rows, same.current_rows), (2, 2));
    assert!(!same.dataset_drift, "identical tables do not drift: {same:?}");
    let denied =
        f.ws.drift(&f.fin, &orders, &secret, DriftOptions::default())
            .await
            .expect_err("fin reads neither");
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    let audit =
        f.ws.catalog()
            .store()
            .audit_events(100, Some("table/orders"), Some("fin"))
            .await
            .expect("audit");
    assert!(audit.iter().any(|e| e.action == "drift" && !e.allowed), "{audit:?}");
    let options = DriftOptions {
        columns: Some(vec!["nope".into()]),
        ..DriftOptions::default()
    };
    let unknown =
        f.ws.drift(&f.sam, &orders, &secret, options)
            .await
            .expect_err("no column");
    assert_eq!(unknown.kind(), ErrorKind::InvalidArgument, "{unknown}");
    assert!(matches!(unknown, DataError::Drift(_)));
}

#[tokio::test]
async fn assess_reads_a_table_version_through_a_read_pass() {
    let f = fixture().await;
    let csv = f._dir.path().join("clicks.csv");
    let rows: String = (0..200)
        .map(|i| format!("{i},{},{}\n", i % 7, u8::from(i % 3 == 0)))
        .collect();
    std::fs::write(&csv, format!("id,x,clicked\n{rows}")).expect("csv");
    let ingest = Ingest {
        table: "clicks".into(),
        file: csv,
        ..Ingest::default()
    };
    f.ws.ingest(&f.sam, &ingest).await.expect("ingest");
    let mut options = AssessOptions::new("clicked");
    options.baseline = false;
    let report =
        f.ws.assess(&f.sam, "clicks", Some(0), options.clone())
            .await
            .expect("assess");
    assert_eq!(report.title, "clicks (version 0)");
    let denied =
        f.ws.assess(&f.fin, "clicks", None, options)
            .await
            .expect_err("fin cannot read clicks");
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
    let unknown =
        f.ws.assess(&f.sam, "clicks", None, AssessOptions::new("nope"))
            .await
            .expect_err("no such target");
    assert_eq!(unknown.kind(), ErrorKind::InvalidArgument);
    assert!(
        unknown
            .to_string()
            .starts_with("cannot assess clicks: target column \"nope\""),
        "{unknown}"
    );
}
