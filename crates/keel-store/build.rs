//! `sqlx::migrate!` embeds the migration files at compile time; tell cargo to rebuild this
//! crate when a migration is added or edited (a new file alone changes no Rust source).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
