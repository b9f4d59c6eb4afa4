//! keel-auth's integration tests.
//!
//! One test binary for the crate (each file a module): linking a binary per file cost the
//! test build a link of the whole dependency tree per file.

mod jwt;
mod tokens;
