use keel_store::StoreError;

/// Errors of the registry; each has a stable public [`code`](RegistryError::code).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A name, alias or argument is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The pushed file is not a usable ONNX model.
    #[error(
        "refused: the file is not a usable ONNX model: {reason}; export it with skl2onnx, onnxmltools or torch.onnx and push the .onnx file"
    )]
    InvalidArtifact {
        #[source]
        reason: crate::onnx::SignatureError,
    },
    /// An uploaded artifact is larger than the server accepts.
    #[error(
        "the model is over the limit of {limit} bytes; raise the server's --max-model-bytes if it must be this large"
    )]
    TooLarge { limit: u64 },
    /// The uploaded bytes are not the ones the client hashed (corrupted or cut in transit).
    #[error(
        "the uploaded bytes have sha256 {actual} but the request said {expected}: the file was changed or cut in transit; nothing was stored, push it again"
    )]
    HashMismatch { expected: String, actual: String },
    /// The artifact store could not be read or written.
    #[error("artifact store: {0}")]
    Artifact(String),
    /// The registry is misconfigured (artifact location).
    #[error("{0}")]
    Config(String),
    /// The metadata store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RegistryError {
    /// What kind of failure this is, for the transports' status mapping.
    pub fn kind(&self) -> keel_types::ErrorKind {
        use keel_types::ErrorKind as K;
        match self {
            RegistryError::Invalid(_) | RegistryError::HashMismatch { .. } => K::InvalidArgument,
            RegistryError::TooLarge { .. } => K::PayloadTooLarge,
            RegistryError::InvalidArtifact { reason } => reason.kind(),
            RegistryError::Store(e) => e.kind(),
            RegistryError::Artifact(_) | RegistryError::Config(_) => K::Internal,
        }
    }

    /// Stable public code.
    pub fn code(&self) -> &'static str {
        match self {
            RegistryError::Invalid(_) => "invalid",
            RegistryError::InvalidArtifact { .. } => "invalid_artifact",
            RegistryError::TooLarge { .. } => "payload_too_large",
            RegistryError::HashMismatch { .. } => "hash_mismatch",
            RegistryError::Artifact(_) => "artifact_store",
            RegistryError::Config(_) => "config",
            RegistryError::Store(e) => e.code(),
        }
    }

    /// True when the thing asked for does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, RegistryError::Store(e) if e.kind() == keel_types::ErrorKind::NotFound)
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, RegistryError>;

impl keel_types::KeelError for RegistryError {
    fn kind(&self) -> keel_types::ErrorKind {
        RegistryError::kind(self)
    }

    fn code(&self) -> &'static str {
        RegistryError::code(self)
    }
}
