//! Inference runtime for tabular ONNX models.
//!
//! keel runs models exported from scikit-learn, XGBoost and LightGBM on ONNX Runtime, loaded
//! dynamically from the `libonnxruntime` shipped in the `onnxruntime` PyPI wheel (see
//! `docs/ARCHITECTURE.md` for why). This crate owns: finding that library without
//! configuration ([`locate`]) and a loaded [`Model`] with a small pool of sessions so
//! concurrent requests do not queue on one `&mut Session`. The tensors it takes and gives are
//! keel-types' plain [`Tensor`]s (re-exported here).
//!
//! It must never depend on HTTP, gRPC, the registry or the store: it takes model bytes and
//! tensors, and gives tensors back.

mod error;
pub mod locate;
mod model;

pub use error::{Result, RuntimeError};
pub use keel_types::{DataType, Tensor, TensorData, f16_to_f32};
pub use model::{IoKind, IoSpec, Model, ModelOptions, Runtime};
