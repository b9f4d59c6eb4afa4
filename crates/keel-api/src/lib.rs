//! The transports of keel's serving: REST (axum) and gRPC (tonic) front ends of the
//! Open Inference Protocol, and the Prometheus `/metrics` endpoint.
//!
//! Handlers here are thin: they decode the transport's form, call one
//! [`keel_serving::InferenceService`] operation, and encode the answer. Errors of every domain
//! crate say their [`keel_types::ErrorKind`]; [`error`] maps kinds to HTTP statuses and gRPC
//! codes, builds the JSON error body, and reads request bodies (413 past the limit), nowhere
//! else. This is the only crate that knows HTTP or gRPC.

pub mod access;
pub mod app;
mod batch_routes;
mod changes;
#[cfg(feature = "lake")]
pub mod data;
pub mod error;
mod experiments;
pub mod gate;
pub mod grpc;
mod grpc_experiments;
#[cfg(feature = "lake")]
mod histograms;
#[cfg(feature = "lake")]
pub mod jobs;
mod labels;
mod metrics_endpoint;
pub mod models;
pub mod rest;
pub mod selfcheck;
mod server;
pub mod telemetry;
mod timeline;
pub mod tls;
pub mod trace;
mod webhooks;

pub use app::{App, AppConfig, AppError, AppLake, PredictionLogConfig, RunningApp};
pub use error::{ApiError, BodyError, grpc_code, grpc_status, http_status, read_body};
pub use experiments::TableUses;
pub use metrics_endpoint::prometheus;
pub use server::{BoundServer, ServeConfig, ServerAccess, Services};
pub use trace::TRACE_TARGET;

/// The generated protocol types and service traits (`inference` package).
pub mod proto {
    #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
    tonic::include_proto!("inference");
}

/// The generated experimentation API (`keel.experiments.v1` package), nested as its package
/// so that its references to `inference` messages (model inputs and predictions) resolve.
mod keel {
    pub mod experiments {
        pub mod v1 {
            #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
            tonic::include_proto!("keel.experiments.v1");
        }
    }
    pub mod jobs {
        pub mod v1 {
            #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
            tonic::include_proto!("keel.jobs.v1");
        }
    }
}
/// The generated experimentation API (`keel.experiments.v1` package).
pub use keel::experiments::v1 as experiments_proto;
/// The generated jobs API (`keel.jobs.v1` package): batch decide, batch score and feedback
/// ingest inside the server, the gRPC twin of `/v1/jobs`.
pub use keel::jobs::v1 as jobs_proto;
/// `inference` as the generated experimentation API names it.
use proto as inference;
