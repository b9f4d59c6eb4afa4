use std::path::PathBuf;

/// Errors of the inference runtime. Each variant has a stable public [`code`](RuntimeError::code).
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// No ONNX Runtime library could be found.
    #[error(
        "the ONNX Runtime library (libonnxruntime.so) was not found; looked in: {searched}; \
         install it with `scripts/python-env` (pip install onnxruntime==1.32.0 into .venv) \
         or point KEEL_ORT_LIB at the library file"
    )]
    LibraryNotFound { searched: String },
    /// The library was found but could not be loaded (wrong version, not a library...).
    #[error(
        "the ONNX Runtime library at {path} could not be loaded: {reason}; \
         install onnxruntime 1.32 with `scripts/python-env` or point KEEL_ORT_LIB at a compatible library"
    )]
    LibraryLoad { path: PathBuf, reason: String },
    /// The model bytes are not a model ONNX Runtime can load.
    #[error("the model could not be loaded by ONNX Runtime: {0}")]
    InvalidModel(String),
    /// The inputs given do not fit the model (name, type or shape).
    #[error("{0}")]
    InvalidInput(String),
    /// ONNX Runtime failed while running a valid request.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The model produced an output keel cannot represent as a tensor.
    #[error("unsupported output '{name}': {reason}")]
    UnsupportedOutput { name: String, reason: String },
}

impl RuntimeError {
    /// What kind of failure this is, for the transports' status mapping.
    pub fn kind(&self) -> keel_types::ErrorKind {
        use keel_types::ErrorKind as K;
        match self {
            RuntimeError::InvalidInput(_) | RuntimeError::InvalidModel(_) => K::InvalidArgument,
            RuntimeError::LibraryNotFound { .. } | RuntimeError::LibraryLoad { .. } => K::Unavailable,
            RuntimeError::Inference(_) | RuntimeError::UnsupportedOutput { .. } => K::Internal,
        }
    }

    /// Stable public error code.
    pub fn code(&self) -> &'static str {
        match self {
            RuntimeError::LibraryNotFound { .. } => "runtime_library_not_found",
            RuntimeError::LibraryLoad { .. } => "runtime_library_load",
            RuntimeError::InvalidModel(_) => "invalid_model",
            RuntimeError::InvalidInput(_) => "invalid_input",
            RuntimeError::Inference(_) => "inference_failed",
            RuntimeError::UnsupportedOutput { .. } => "unsupported_output",
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, RuntimeError>;

impl keel_types::KeelError for RuntimeError {
    fn kind(&self) -> keel_types::ErrorKind {
        RuntimeError::kind(self)
    }

    fn code(&self) -> &'static str {
        RuntimeError::code(self)
    }
}
