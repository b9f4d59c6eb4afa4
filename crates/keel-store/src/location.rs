//! Parsing of store urls into a backend and its connection target.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;

use crate::error::{Result, StoreError};

const ACCEPTED: &str = "use sqlite:///abs/path/keel.db, sqlite://relative.db, a path ending in .db, \
     sqlite::memory: or postgres://user@host:5432/database";

/// Where a store lives.
#[derive(Debug)]
pub(crate) enum Location {
    /// An SQLite database file (created with its parent directory if missing).
    SqliteFile(PathBuf),
    /// A private in-memory SQLite database, for tests.
    SqliteMemory,
    /// A PostgreSQL database.
    Postgres(Box<PgConnectOptions>),
}

impl Location {
    pub(crate) fn parse(url: &str) -> Result<Location> {
        if url.trim().is_empty() {
            return Err(StoreError::InvalidUrl(format!("the store url is empty; {ACCEPTED}")));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return PgConnectOptions::from_str(url)
                .map(|options| Location::Postgres(Box::new(options)))
                .map_err(|e| {
                    StoreError::InvalidUrl(format!(
                        "cannot parse postgres url '{}': {e}; use postgres://user[:password]@host[:port]/database",
                        redact(url)
                    ))
                });
        }
        if url == "sqlite::memory:" || url == "sqlite://:memory:" {
            return Ok(Location::SqliteMemory);
        }
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.contains('?') {
                return Err(StoreError::InvalidUrl(format!(
                    "sqlite url '{url}' has query parameters, which the store does not accept; \
                     remove everything from '?' on"
                )));
            }
            if path.is_empty() {
                return Err(StoreError::InvalidUrl(format!(
                    "sqlite url '{url}' names no file; {ACCEPTED}"
                )));
            }
            return Ok(Location::SqliteFile(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(StoreError::InvalidUrl(format!(
                "unsupported store url scheme '{scheme}' in '{}'; {ACCEPTED}",
                redact(url)
            )));
        }
        if url.ends_with(".db") {
            return Ok(Location::SqliteFile(PathBuf::from(url)));
        }
        Err(StoreError::InvalidUrl(format!(
            "'{url}' is neither a store url nor a path ending in .db; {ACCEPTED}"
        )))
    }
}

/// Removes the password from a `scheme://user:password@host/...` url so it
/// can appear in messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{tail}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(url: &str) -> PathBuf {
        match Location::parse(url) {
            Ok(Location::SqliteFile(path)) => path,
            other => panic!("expected an sqlite file for {url}, got {other:?}"),
        }
    }

    #[test]
    fn sqlite_forms_resolve_to_paths() {
        assert_eq!(file("sqlite:///abs/dir/keel.db"), PathBuf::from("/abs/dir/keel.db"));
        assert_eq!(file("sqlite://relative.db"), PathBuf::from("relative.db"));
        assert_eq!(file("sqlite:relative.db"), PathBuf::from("relative.db"));
        assert_eq!(file("data/keel.db"), PathBuf::from("data/keel.db"));
        assert_eq!(file("/var/lib/keel/keel.db"), PathBuf::from("/var/lib/keel/keel.db"));
    }

    #[test]
    fn memory_and_postgres_are_recognised() {
        assert!(matches!(Location::parse("sqlite::memory:"), Ok(Location::SqliteMemory)));
        assert!(matches!(
            Location::parse("postgresql://u@localhost/db"),
            Ok(Location::Postgres(_))
        ));
    }

    #[test]
    fn bad_urls_are_invalid_url() {
        for url in ["", "mysql://x/y", "keel.txt", "sqlite://", "sqlite://a.db?mode=ro"] {
            let err = Location::parse(url).expect_err(url);
            assert_eq!(err.code(), "invalid_url", "{url}: {err}");
        }
    }

    #[test]
    fn redact_hides_passwords_only() {
        assert_eq!(
            redact("postgres://keel:s3cret@db:5432/keel?sslmode=require"),
            "postgres://keel:***@db:5432/keel?sslmode=require"
        );
        assert_eq!(redact("postgres://keel@db/keel"), "postgres://keel@db/keel");
        assert_eq!(redact("keel.db"), "keel.db");
    }
}
