//! End-to-end tests of the serving front ends: a real server on loopback, a real SQLite
//! store, real ONNX Runtime, real HTTP and gRPC clients.

mod access;
mod control;
mod errors;
mod experiments;
mod fuzz_http;
mod grpc;
mod grpc_decide;
mod hot_swap;
mod infer;
mod limits;
mod support;
mod tls;
