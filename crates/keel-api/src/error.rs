//! Where keel's errors meet the transports: the one place an [`ErrorKind`] becomes an HTTP
//! status ([`http_status`]) or a gRPC code ([`grpc_code`]), the JSON error body of every REST
//! route ([`ApiError`]), the gRPC status of every RPC ([`grpc_status`]), and the one reader of
//! request bodies ([`read_body`]), which answers 413 past `--max-body-bytes` on every route.
//!
//! Domain crates never name a status: each of their errors says its kind and its stable code
//! ([`KeelError`]), and handlers turn it into an [`ApiError`] with `?`.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_types::{ErrorKind, KeelError};

/// The HTTP status of each kind of failure (the only place this mapping lives).
pub fn http_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The gRPC code of each kind of failure (the only place this mapping lives). gRPC has no
/// "unprocessable": such requests are `InvalidArgument`; a body past the limit is
/// `ResourceExhausted`, as tonic itself answers for an oversized message.
pub fn grpc_code(kind: ErrorKind) -> tonic::Code {
    match kind {
        ErrorKind::InvalidArgument | ErrorKind::Unprocessable => tonic::Code::InvalidArgument,
        ErrorKind::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorKind::PermissionDenied => tonic::Code::PermissionDenied,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::Conflict => tonic::Code::AlreadyExists,
        ErrorKind::PayloadTooLarge => tonic::Code::ResourceExhausted,
        ErrorKind::Unavailable => tonic::Code::Unavailable,
        ErrorKind::Internal => tonic::Code::Internal,
    }
}

/// Any keel error as a REST answer: the status of its kind and the JSON body
/// `{"error": "<message>", "code": "<code>"}` (the Open Inference Protocol's error body, plus
/// the stable code). Server faults are logged when the answer is built.
#[derive(Debug)]
pub struct ApiError {
    kind: ErrorKind,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// The kind of failure the answer reports.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable code in the body.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message in the body.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: KeelError> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError {
            kind: e.kind(),
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.kind.is_server_fault() {
            tracing::error!(code = self.code, error = %self.message, "request failed");
        }
        error_response(http_status(self.kind), self.code, &self.message)
    }
}

/// The JSON error body with an explicit status, for the few answers that are not a keel error
/// (no route, method not allowed, a caught panic). Everything else goes through [`ApiError`].
pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": message, "code": code });
    (status, axum::Json(body)).into_response()
}

/// Any keel error as a gRPC status: the code of its kind and its message. Server faults are
/// logged.
pub fn grpc_status<E: KeelError + ?Sized>(e: &E) -> tonic::Status {
    let kind = e.kind();
    if kind.is_server_fault() {
        tracing::error!(code = e.code(), error = %e, "grpc request failed");
    }
    tonic::Status::new(grpc_code(kind), e.to_string())
}

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The body is longer than `--max-body-bytes`.
    #[error("request body is over the limit of {limit} bytes; send fewer rows per request or raise --max-body-bytes")]
    TooLarge { limit: usize },
    /// The connection failed or the body is not valid HTTP framing.
    #[error("could not read the request body: {0}")]
    Unreadable(String),
}

impl BodyError {
    /// [`PayloadTooLarge`](ErrorKind::PayloadTooLarge) past the limit, otherwise the request
    /// is at fault.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BodyError::TooLarge { .. } => ErrorKind::PayloadTooLarge,
            BodyError::Unreadable(_) => ErrorKind::InvalidArgument,
        }
    }

    /// Stable public code.
    pub fn code(&self) -> &'static str {
        match self {
            BodyError::TooLarge { .. } => "payload_too_large",
            BodyError::Unreadable(_) => "bad_request",
        }
    }
}

impl KeelError for BodyError {
    fn kind(&self) -> ErrorKind {
        BodyError::kind(self)
    }

    fn code(&self) -> &'static str {
        BodyError::code(self)
    }
}

/// Reads a whole request body of at most `limit` bytes: the one body reader of every REST
/// route, so a body past `--max-body-bytes` is a 413 everywhere.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, BodyError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            if too_large {
                Err(BodyError::TooLarge { limit })
            } else {
                Err(BodyError::Unreadable(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented table (docs/ARCHITECTURE.md and keel_types::ErrorKind's doc comments).
    fn documented(kind: ErrorKind) -> (u16, tonic::Code) {
        match kind {
            ErrorKind::InvalidArgument => (400, tonic::Code::InvalidArgument),
            ErrorKind::Unauthenticated => (401, tonic::Code::Unauthenticated),
            ErrorKind::PermissionDenied => (403, tonic::Code::PermissionDenied),
            ErrorKind::NotFound => (404, tonic::Code::NotFound),
            ErrorKind::Conflict => (409, tonic::Code::AlreadyExists),
            ErrorKind::PayloadTooLarge => (413, tonic::Code::ResourceExhausted),
            ErrorKind::Unprocessable => (422, tonic::Code::InvalidArgument),
            ErrorKind::Unavailable => (503, tonic::Code::Unavailable),
            ErrorKind::Internal => (500, tonic::Code::Internal),
        }
    }

    #[test]
    fn every_kind_maps_to_its_documented_status_and_code() {
        for kind in ErrorKind::ALL {
            let (status, code) = documented(kind);
            assert_eq!(http_status(kind).as_u16(), status, "{kind:?}");
            assert_eq!(grpc_code(kind), code, "{kind:?}");
        }
    }

    #[test]
    fn server_faults_and_only_they_are_5xx() {
        for kind in ErrorKind::ALL {
            assert_eq!(http_status(kind).is_server_error(), kind.is_server_fault(), "{kind:?}");
            assert_eq!(http_status(kind).is_client_error(), !kind.is_server_fault(), "{kind:?}");
        }
    }

    #[test]
    fn an_api_error_keeps_the_kind_code_and_message_of_its_source() {
        let e = ApiError::from(BodyError::TooLarge { limit: 10 });
        assert_eq!(e.kind(), ErrorKind::PayloadTooLarge);
        assert_eq!(e.code(), "payload_too_large");
        assert!(e.message().contains("over the limit of 10 bytes"), "{}", e.message());
        let status = grpc_status(&BodyError::TooLarge { limit: 10 });
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn the_error_body_is_json_with_error_and_code() {
        let response = ApiError::from(BodyError::Unreadable("reset".into())).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(
            body,
            serde_json::json!({"error": "could not read the request body: reset", "code": "bad_request"})
        );
    }

    #[tokio::test]
    async fn a_body_past_the_limit_is_too_large_and_one_at_the_limit_is_read() {
        let at = read_body(Body::from(vec![b'x'; 10]), 10).await.expect("read");
        assert_eq!(at.len(), 10);
        let over = read_body(Body::from(vec![b'x'; 11]), 10).await.unwrap_err();
        assert_eq!(over, BodyError::TooLarge { limit: 10 });
    }
}
