//! The plain types every keel crate speaks.
//!
//! * [`Tensor`], [`TensorData`] and [`DataType`]: what a model takes and gives, what the
//!   prediction log records, what the V2 protocol encodes. Plain data: no inference engine.
//! * [`ErrorKind`] and [`KeelError`]: the one vocabulary of failure. Every domain error of keel
//!   says which kind it is; the transports (keel-api) map each kind to one HTTP status and one
//!   gRPC code, in one module.
//!
//! This crate is a leaf: it depends on serde only, so anything may depend on it without
//! pulling in ONNX Runtime, DataFusion or a database driver.

mod error;
mod tensor;

pub use error::{ErrorKind, KeelError};
pub use tensor::{DataType, RawDataError, Tensor, TensorData, f16_to_f32};
