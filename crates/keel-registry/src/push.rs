//! Pushing a file as a version: metrics given as text, aliases set at push, and the
//! idempotent push (the same bytes already registered are found, not refused).

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::{ModelVersion, PushRequest, Registry, RegistryError, Result, VersionSelector, validate_alias};

/// Parses `--metric` values: JSON objects merged, or `KEY=NUMBER` pairs.
pub fn parse_metrics(items: &[String]) -> Result<serde_json::Value> {
    let mut out = serde_json::Map::new();
    for item in items {
        let item = item.trim();
        if item.starts_with('{') {
            let value: serde_json::Value = serde_json::from_str(item)
                .map_err(|e| RegistryError::Invalid(format!("--metric {item}: not a JSON object: {e}")))?;
            match value {
                serde_json::Value::Object(m) => out.extend(m),
                _ => {
                    return Err(RegistryError::Invalid(format!(
                        "--metric {item}: must be a JSON object"
                    )));
                }
            }
        } else if let Some((k, v)) = item.split_once('=') {
            let number: f64 = v.trim().parse().map_err(|e| {
                RegistryError::Invalid(format!(
                    "--metric {item}: '{v}' is not a number; use KEY=NUMBER or a JSON object: {e}"
                ))
            })?;
            out.insert(k.trim().to_string(), serde_json::Value::from(number));
        } else {
            return Err(RegistryError::Invalid(format!(
                "--metric {item}: use KEY=NUMBER (auc=0.97) or a JSON object"
            )));
        }
    }
    Ok(serde_json::Value::Object(out))
}

/// The content hash the registry records for these bytes (`sha256:HEX`).
pub fn content_hash(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The alias names given at push (a leading `@` dropped), each validated.
pub fn alias_names(aliases: &[String]) -> Result<Vec<String>> {
    aliases
        .iter()
        .map(|a| {
            let a = a.trim_start_matches('@');
            validate_alias(a).map(|()| a.to_string())
        })
        .collect()
}

impl Registry {
    /// Pushes a version and points each alias (a leading `@` is dropped) at it. The aliases are
    /// validated before anything is written.
    pub async fn push_with_aliases(
        &self,
        request: PushRequest,
        bytes: Bytes,
        aliases: &[String],
    ) -> Result<ModelVersion> {
        let aliases = alias_names(aliases)?;
        let by = request.author.clone();
        let version = self.push(request, bytes).await?;
        for a in aliases {
            let selector = VersionSelector::Number(version.version);
            self.set_alias(&version.model, &a, &selector, &by, Some("set at push"))
                .await?;
        }
        Ok(version)
    }

    /// Pushes a version unless the same bytes are already a version of this model; returns the
    /// version and whether it is new.
    pub async fn push_or_find(&self, request: PushRequest, bytes: Bytes) -> Result<(ModelVersion, bool)> {
        let hash = content_hash(&bytes);
        let name = request.name.clone();
        match self.push(request, bytes).await {
            Ok(v) => Ok((v, true)),
            Err(RegistryError::Store(keel_store::StoreError::Conflict { .. })) => {
                let found = self
                    .list_versions(&name)
                    .await?
                    .into_iter()
                    .find(|v| v.content_hash == hash);
                let found = found
                    .ok_or_else(|| RegistryError::Invalid(format!("{name}: conflict without a matching version")))?;
                Ok((found, false))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn metrics_merge_pairs_and_objects() {
        let m = parse_metrics(&items(&["auc=0.97", r#"{"f1": 0.5, "n": 3}"#, " loss = 1e-3 "])).unwrap();
        assert_eq!(m, serde_json::json!({"auc": 0.97, "f1": 0.5, "n": 3, "loss": 0.001}));
        assert_eq!(parse_metrics(&[]).unwrap(), serde_json::json!({}));
    }

    #[test]
    fn metrics_refuse_bad_text() {
        for bad in ["auc", "auc=high", "[1, 2]", "{not json"] {
            let e = parse_metrics(&items(&[bad])).unwrap_err();
            assert_eq!(e.code(), "invalid", "{bad}");
            assert!(e.to_string().starts_with(&format!("--metric {bad}:")), "{e}");
        }
    }

    #[test]
    fn alias_names_drop_the_at_and_refuse_bad_names() {
        assert_eq!(alias_names(&items(&["@staging", "prod"])).unwrap(), ["staging", "prod"]);
        assert_eq!(alias_names(&items(&["@latest"])).unwrap_err().code(), "invalid");
        assert_eq!(alias_names(&items(&["42"])).unwrap_err().code(), "invalid");
    }

    #[test]
    fn content_hash_is_sha256() {
        assert_eq!(
            content_hash(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
