//! Online serving over the Open Inference Protocol (KServe V2).
//!
//! Owns the protocol's operations (health, metadata, infer, the model-repository extension),
//! decoding and validating requests against the model's inputs, the live set of models with
//! atomic hot swap, and the serving metrics. Both front ends (REST and gRPC, in `keel-api`)
//! call the same [`InferenceService`] methods.
//!
//! It must never depend on a transport (axum, tonic, HTTP types): errors carry an
//! [`keel_types::ErrorKind`] that the transports map to their status codes.

mod error;
pub mod metrics;
pub mod protocol;
mod repository;
mod service;

pub use error::{Result, ServingError};

/// The tracing target of request-path spans: only an OpenTelemetry layer listens to it, so
/// they cost nothing unless traces are exported.
pub const TRACE_TARGET: &str = "keel_trace";
pub use keel_runtime::{DataType, Tensor, TensorData};
pub use protocol::{InferRequest, InferResponse, InputTensor, OutputTensor, RequestedOutput};
pub use repository::{LoadedModel, ModelRepository};
pub use service::{
    EXTENSIONS, InferenceService, ModelMetadata, RepositoryEntry, SERVER_NAME, ServerMetadata, TensorMetadata, validate,
};
