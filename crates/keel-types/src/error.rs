//! The kinds of failure, shared by every crate and mapped to a status by the transports.

/// What kind of failure an error is. Each domain error of keel answers
/// [`KeelError::kind`]; keel-api maps each kind to exactly one HTTP status and one gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is wrong (syntax, names, types, shapes, values): HTTP 400.
    InvalidArgument,
    /// The caller did not say who it is, or the credential is not valid: HTTP 401.
    Unauthenticated,
    /// The caller is known but may not do this: HTTP 403.
    PermissionDenied,
    /// The thing named does not exist (or is not loaded): HTTP 404.
    NotFound,
    /// The state does not allow it now (e.g. a conflicting change): HTTP 409.
    Conflict,
    /// The request body is larger than the configured limit: HTTP 413.
    PayloadTooLarge,
    /// Well-formed, but its content cannot be processed as asked (e.g. SQL that does not
    /// plan against the tables): HTTP 422.
    Unprocessable,
    /// The server cannot serve it now (runtime missing, store down, shutting down): HTTP 503.
    Unavailable,
    /// A fault of keel's, not of the request: HTTP 500.
    Internal,
}

impl ErrorKind {
    /// Every kind, for tests that check a mapping is total.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::InvalidArgument,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::PayloadTooLarge,
        ErrorKind::Unprocessable,
        ErrorKind::Unavailable,
        ErrorKind::Internal,
    ];

    /// Whether the failure is keel's (or its dependencies') rather than the caller's: these
    /// are logged as errors and counted as server faults; the others are the caller's to fix.
    pub fn is_server_fault(self) -> bool {
        matches!(self, ErrorKind::Unavailable | ErrorKind::Internal)
    }
}

/// A domain error of keel: it knows its [`ErrorKind`] and a stable public `code` (a short
/// snake_case word that clients and the error metrics can match on).
pub trait KeelError: std::error::Error {
    fn kind(&self) -> ErrorKind;
    fn code(&self) -> &'static str;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailable_and_internal_are_server_faults() {
        let faults: Vec<_> = ErrorKind::ALL.into_iter().filter(|k| k.is_server_fault()).collect();
        assert_eq!(faults, vec![ErrorKind::Unavailable, ErrorKind::Internal]);
    }
}
