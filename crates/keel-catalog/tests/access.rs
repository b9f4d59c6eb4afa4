//! Grant visibility as the catalog decides it.

use keel_catalog::{Catalog, CatalogError, Via};
use keel_store::Store;

async fn catalog() -> Catalog {
    Catalog::new(Store::open("sqlite::memory:").await.expect("store"))
}

#[tokio::test]
async fn grants_on_a_table_need_read_and_others_see_none_without_a_grant() {
    let c = catalog().await;
    let admin = c.actor("ana").await.expect("admin");
    let bob = c.actor("bob").await.expect("bob");
    assert!(c.visible_grants(&admin, None, Via::Cli).await.expect("all").is_empty());
    assert!(c.visible_grants(&bob, None, Via::Cli).await.expect("none").is_empty());
    let err = c
        .visible_grants(&bob, Some("customers"), Via::Cli)
        .await
        .expect_err("no read");
    assert!(matches!(err, CatalogError::Denied { .. }), "{err}");
}
