//! Simulators that drive a running keel server through the same public API users call.
//!
//! `email` is the flagship scenario: a restaurant chain picks one promotion per customer
//! e-mail, learns from conversions, and must beat uniform random, the best single promotion,
//! and a holdout control group. The simulator never reaches into keel's internals: it only
//! creates deployments, calls decide and sends feedback over HTTP. `weekly` writes the files the
//! chain would exchange with keel in the weekly batch (its customers; the conversions).
//!
//! It must never depend on keel's crates: it is a client, like any other.

#[cfg(feature = "client")]
pub mod email;
pub mod newpromo;
pub mod weekly;
pub mod world;
