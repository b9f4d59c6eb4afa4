//! Pushing a version from a stream of bytes (the REST push): the bytes are staged in a
//! temporary file as they arrive, hashed and counted on the way, so a model is never held whole
//! in memory; past the size limit the push stops at once; the hash is checked against the one
//! the client sent; the signature is read from the staged file by the same reader as a push of
//! bytes; only then is the artifact written to the store (multipart, from the file) and the
//! version recorded. A refused push leaves nothing behind: the staged file is removed when it
//! is dropped, and the artifact store is written only after every check passed.

use bytes::Bytes;
use futures::{Stream, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::compact::read_signature_from;
use crate::{ModelVersion, PushRequest, Registry, RegistryError, Result};

/// How much of a streamed artifact is read from the staged file and sent at a time.
const CHUNK: usize = 8 * 1024 * 1024;

/// The checks a streamed push makes on its bytes.
#[derive(Debug, Clone)]
pub struct UploadCheck {
    /// The SHA-256 the client computed (`HEX` or `sha256:HEX`); `None`: not checked.
    pub sha256: Option<String>,
    /// The largest artifact accepted, in bytes.
    pub max_bytes: u64,
}

/// Normalises a client's hash to lowercase hex; refuses anything that is not 64 hex digits.
pub fn parse_sha256(given: &str) -> Result<String> {
    let hex = given.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex).to_ascii_lowercase();
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(RegistryError::Invalid(format!(
            "the sha256 given is not 64 hex digits (got {given:?}); send the file's SHA-256, e.g. from `sha256sum`"
        )));
    }
    Ok(hex)
}

/// A staged upload: the temporary file (removed on drop), its hash and size.
struct Staged {
    file: tempfile::NamedTempFile,
    hex: String,
    size: u64,
}

impl Registry {
    /// Pushes a version whose bytes arrive as a stream (a request body). Checks, in order: the
    /// request (name, author, metrics), the client's hash format, the size limit (as the bytes
    /// arrive), the hash, the ONNX signature; then writes the artifact and records the version.
    /// On any failure the registry and the artifact store are unchanged.
    pub async fn push_stream<S, E>(&self, request: PushRequest, body: S, check: UploadCheck) -> Result<ModelVersion>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let metrics = self.validate_push(&request)?;
        let expected = check.sha256.as_deref().map(parse_sha256).transpose()?;
        let staged = stage(body, check.max_bytes).await?;
        if let Some(expected) = expected
            && expected != staged.hex
        {
            return Err(RegistryError::HashMismatch {
                expected,
                actual: staged.hex,
            });
        }
        let reopened = staged
            .file
            .reopen()
            .map_err(|e| RegistryError::Artifact(format!("cannot read the staged upload: {e}")))?;
        let signature = tokio::task::spawn_blocking(move || read_signature_from(std::io::BufReader::new(reopened)))
            .await
            .map_err(|e| RegistryError::Artifact(format!("reading the signature failed: {e}")))?
            .map_err(|reason| RegistryError::InvalidArtifact { reason })?;
        let key = format!("models/{}/{}.onnx", request.name, staged.hex);
        let path = ObjectPath::from(key.as_str());
        let existed = self.objects.head(&path).await.is_ok();
        if !existed {
            self.upload(&staged, &path).await?;
        }
        let hash = format!("sha256:{}", staged.hex);
        self.record(request, metrics, signature, hash, key, staged.size as i64, existed)
            .await
    }

    /// Writes the staged file to `path` in parts; the object appears whole or not at all.
    async fn upload(&self, staged: &Staged, path: &ObjectPath) -> Result<()> {
        let fail = |e: &dyn std::fmt::Display| RegistryError::Artifact(format!("cannot write {path}: {e}"));
        let upload = self.objects.put_multipart(path).await.map_err(|e| fail(&e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut file = tokio::fs::File::from_std(staged.file.reopen().map_err(|e| fail(&e))?);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut buf).await.map_err(|e| fail(&e))?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(2).await.map_err(|e| fail(&e))?;
            writer.write(&buf[..n]);
        }
        match writer.finish().await {
            Ok(_) => Ok(()),
            Err(e) => Err(fail(&e)),
        }
    }
}

/// Writes the stream to a temporary file, hashing and counting; stops past `max_bytes`.
async fn stage<S, E>(mut body: S, max_bytes: u64) -> Result<Staged>
where
    S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let file = tempfile::NamedTempFile::new()
        .map_err(|e| RegistryError::Artifact(format!("cannot create a temporary file for the upload: {e}")))?;
    let staged = file
        .reopen()
        .map_err(|e| RegistryError::Artifact(format!("cannot open the staged upload: {e}")))?;
    let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::from_std(staged));
    let stage_err = |e: std::io::Error| RegistryError::Artifact(format!("cannot stage the upload: {e}"));
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| RegistryError::Invalid(format!("could not read the uploaded bytes: {e}")))?;
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(RegistryError::TooLarge { limit: max_bytes });
        }
        hasher.update(&chunk);
        writer.write_all(&chunk).await.map_err(stage_err)?;
    }
    writer.flush().await.map_err(stage_err)?;
    Ok(Staged {
        file,
        hex: hex::encode(hasher.finalize()),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_read_with_or_without_the_prefix_and_in_any_case() {
        let hex = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        assert_eq!(parse_sha256(hex).unwrap(), hex.to_ascii_lowercase());
        assert_eq!(
            parse_sha256(&format!("sha256:{}", hex.to_ascii_lowercase())).unwrap(),
            hex.to_ascii_lowercase()
        );
        for bad in ["", "abc", &format!("{hex}00"), &hex.replace('E', "g")] {
            assert_eq!(parse_sha256(bad).unwrap_err().code(), "invalid", "{bad}");
        }
    }
}
