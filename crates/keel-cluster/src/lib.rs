//! The distributed engine: batch scoring as a DataFusion plan on an Apache DataFusion Ballista
//! cluster, for when one machine is not enough.
//!
//! - [`udf`]: `keel_score`, a scalar function over record batches that scores with a registered
//!   ONNX model version; it carries the run's [`keel_batch::ScoreSpec`] and loads the model
//!   from the registry where it runs, once per process.
//! - [`codec`]: Ballista's plan codecs plus `keel_score`, used by the client, the scheduler and
//!   the executors alike.
//! - [`engine`]: [`BallistaEngine`], the [`keel_batch::ScoreEngine`] behind `keel batch score
//!   --engine ballista://HOST:PORT`: read the input version's Parquet files, score, stream back.
//!   The output is written by keel-batch exactly as an in-process run writes it.
//! - [`process`]: `keel cluster scheduler` and `keel cluster executor`.
//!
//! Ballista 55 is built on DataFusion 55, the version deltalake pins, so the record batches and
//! plans are the lake's own types.

pub mod codec;
pub mod engine;
mod error;
pub mod process;
pub mod udf;

pub use engine::BallistaEngine;
pub use error::ClusterError;
pub use process::{ExecutorOptions, run_executor, run_scheduler};
pub use udf::{KEEL_SCORE, ModelSource};
