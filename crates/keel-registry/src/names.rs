//! Names of models and aliases, and how a version is selected.

use crate::{RegistryError, Result};

const MAX_NAME: usize = 128;

fn valid_chars(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A model name: 1-128 characters of letters, digits, `-`, `_`, `.`, starting with a letter
/// or digit (it becomes a URL path segment and an object-store key).
pub fn validate_model_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME || !valid_chars(name) || name.contains("..") {
        return Err(RegistryError::Invalid(format!(
            "invalid model name '{}': use 1-{MAX_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit",
            name.escape_default()
        )));
    }
    Ok(())
}

/// An alias name: like a model name, but not all digits and not `latest` (those select
/// versions directly).
pub fn validate_alias(alias: &str) -> Result<()> {
    if alias.is_empty() || alias.len() > MAX_NAME || !valid_chars(alias) {
        return Err(RegistryError::Invalid(format!(
            "invalid alias '{}': use 1-{MAX_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit",
            alias.escape_default()
        )));
    }
    if alias.chars().all(|c| c.is_ascii_digit()) || alias == "latest" {
        return Err(RegistryError::Invalid(format!(
            "invalid alias '{alias}': a number or 'latest' already selects a version; pick a name such as 'production'"
        )));
    }
    Ok(())
}

/// How a version of a model is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    Latest,
    Number(i64),
    Alias(String),
}

impl VersionSelector {
    /// Parses `latest`, `3` or `@production` (also `production`, taken as an alias).
    pub fn parse(text: &str) -> Result<VersionSelector> {
        let text = text.trim();
        if text.is_empty() || text == "latest" {
            return Ok(VersionSelector::Latest);
        }
        if let Some(alias) = text.strip_prefix('@') {
            validate_alias(alias)?;
            return Ok(VersionSelector::Alias(alias.to_string()));
        }
        if text.chars().all(|c| c.is_ascii_digit()) {
            return text
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 1)
                .map(VersionSelector::Number)
                .ok_or_else(|| RegistryError::Invalid(format!("invalid version '{text}': versions start at 1")));
        }
        validate_alias(text)?;
        Ok(VersionSelector::Alias(text.to_string()))
    }

    /// Splits `name@alias` or `name:3` / `name` into a name and a selector.
    pub fn split_reference(reference: &str) -> Result<(String, VersionSelector)> {
        if let Some((name, alias)) = reference.split_once('@') {
            validate_model_name(name)?;
            validate_alias(alias)?;
            return Ok((name.to_string(), VersionSelector::Alias(alias.to_string())));
        }
        if let Some((name, version)) = reference.split_once(':') {
            validate_model_name(name)?;
            return Ok((name.to_string(), VersionSelector::parse(version)?));
        }
        validate_model_name(reference)?;
        Ok((reference.to_string(), VersionSelector::Latest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names() {
        for ok in ["bc-lr", "a", "Model_1.v2", "9lives"] {
            assert!(validate_model_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "a/b", "../x", "a..b", "a b", "é", &"x".repeat(129)] {
            assert!(validate_model_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn aliases() {
        assert!(validate_alias("production").is_ok());
        assert!(validate_alias("42").is_err());
        assert!(validate_alias("latest").is_err());
        assert!(validate_alias("a/b").is_err());
    }

    #[test]
    fn selectors() {
        assert_eq!(VersionSelector::parse("latest").ok(), Some(VersionSelector::Latest));
        assert_eq!(VersionSelector::parse("3").ok(), Some(VersionSelector::Number(3)));
        assert!(VersionSelector::parse("0").is_err());
        assert_eq!(
            VersionSelector::parse("@staging").ok(),
            Some(VersionSelector::Alias("staging".into()))
        );
        assert_eq!(
            VersionSelector::split_reference("bc-lr@production").ok(),
            Some(("bc-lr".into(), VersionSelector::Alias("production".into())))
        );
        assert_eq!(
            VersionSelector::split_reference("bc-lr:2").ok(),
            Some(("bc-lr".into(), VersionSelector::Number(2)))
        );
        assert!(VersionSelector::split_reference("bad/name").is_err());
    }
}
