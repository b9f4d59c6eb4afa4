//! The scaffolding both test files share: a real registry on SQLite with an artifacts folder,
//! the fixture models, declared files written into a folder, git in that folder.
#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;

use keel_registry::Registry;
use keel_store::Store;
use serde_json::json;

/// Pushes a fixture model file as the next version of `name`.
pub async fn push(registry: &Registry, name: &str, file: &str) -> i64 {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(file);
    let bytes = std::fs::read(path).expect("fixture model");
    let request = keel_registry::PushRequest {
        name: name.into(),
        author: "ana".into(),
        description: None,
        metrics: json!({}),
        training_data: None,
    };
    registry.push(request, bytes.into()).await.expect("push").version
}

pub async fn registry(dir: &Path) -> Registry {
    let store = Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store");
    Registry::open(store, &dir.join("artifacts").display().to_string()).expect("registry")
}

pub fn write(dir: &Path, rel: &str, value: serde_json::Value) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, serde_json::to_string_pretty(&value).expect("json")).expect("write");
}

pub fn promo(policy: serde_json::Value) -> serde_json::Value {
    json!({
        "variants": [{"name": "half_price"}, {"name": "free_dessert"}],
        "policy": policy,
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600}
    })
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.email=ci@keel", "-c", "user.name=ci"])
        .args(args)
        .output()
        .expect("git");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Plans the folder `dir` against the live state and applies it as `by`.
pub async fn apply_dir(reg: &Registry, dir: &Path, by: &str) -> Vec<keel_plan::Applied> {
    let declared = keel_plan::read_dir(dir).expect("read");
    let p = keel_plan::plan(&declared, &keel_plan::live(reg).await.expect("live"), false);
    keel_plan::apply(&p, &declared, reg, &keel_plan::Source::of(dir, by))
        .await
        .expect("apply")
}
