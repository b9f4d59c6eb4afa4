//! Prediction, decision, feedback and label logs, and model performance once labels arrive.
//!
//! keel-predlog owns what serving remembers about each answer: every inference request's
//! inputs, outputs, model version, latency and (through an experiment deployment) decision and
//! variant, written asynchronously through a bounded batching writer ([`PredictionLog`]) into
//! lake tables (`predictions_<model>`, `decisions`, `feedback`, `labels`) that SQL joins. Serving
//! never waits for it: a full queue or a failing lake drops rows and counts them. Labels sent
//! later are joined to the logged predictions to report AUC, log loss, calibration and the
//! positive rate per version and time bucket ([`performance`]).
//!
//! Without the `lake` feature the crate is the record types and the writer only (what serving
//! links); the Delta sink, retention and the report need it. It must never depend on HTTP,
//! gRPC or the serving crates: serving calls into it, never the other way round.

pub mod columns;
pub mod encoded;
mod error;
pub mod record;
pub mod stats;
mod writer;

#[cfg(feature = "lake")]
pub mod lake_sink;
#[cfg(feature = "lake")]
pub mod performance;
#[cfg(feature = "lake")]
pub mod retention;

pub use encoded::{EncodedChunk, PredictionParts};
pub use error::{PredlogError, Result};
pub use record::{
    DecisionRecord, Entry, FeedbackRecord, LabelIn, LabelRecord, PredictionRecord, Routing, new_prediction_id, now_us,
    parse_labels, predictions_table, validate_labels,
};
pub use writer::{
    BATCH_DURATION, DEFAULT_BATCH_ROWS, DEFAULT_FLUSH_MS, DEFAULT_QUEUE, DROPPED_TOTAL, LABELS_TOTAL, LOGGED_TOTAL,
    LogConfig, LogStats, PredictionLog, QUEUE_DEPTH, ROWS_WRITTEN_TOTAL, Sink, TableBatch, WRITE_FAILURES_TOTAL,
};
