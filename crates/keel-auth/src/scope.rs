//! Scopes: what a credential allows, by route class.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::AuthError;

/// One thing a credential may be allowed to do. `admin` allows everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// V2 inference and model metadata.
    Infer,
    /// Decide, feedback and labels.
    Decide,
    /// Read deployments, their reports and health.
    View,
    /// Create or change deployments; load and unload models.
    Deploy,
    /// Push model versions, move aliases.
    Registry,
    /// Read lake tables (per-table grants still apply).
    DataRead,
    /// Write lake tables (per-table grants still apply); includes `data:read`.
    DataWrite,
    /// Scrape `/metrics`.
    Metrics,
    /// Everything, including teams and tokens.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 9] = [
        Scope::Infer,
        Scope::Decide,
        Scope::View,
        Scope::Deploy,
        Scope::Registry,
        Scope::DataRead,
        Scope::DataWrite,
        Scope::Metrics,
        Scope::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Infer => "infer",
            Scope::Decide => "decide",
            Scope::View => "view",
            Scope::Deploy => "deploy",
            Scope::Registry => "registry",
            Scope::DataRead => "data:read",
            Scope::DataWrite => "data:write",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = AuthError;
    fn from_str(s: &str) -> Result<Scope, AuthError> {
        Scope::ALL.into_iter().find(|scope| scope.as_str() == s).ok_or_else(|| {
            AuthError::Invalid(format!(
                "unknown scope {s:?}: use one of {}",
                Scope::ALL.map(Scope::as_str).join(", ")
            ))
        })
    }
}

impl Serialize for Scope {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Scopes(u16);

impl Scopes {
    pub const NONE: Scopes = Scopes(0);

    /// Every scope (what a server with authentication off grants).
    pub fn all() -> Scopes {
        Scope::ALL.into_iter().collect()
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether these scopes allow `scope`: holding it, or `admin`, or `data:write` for
    /// `data:read`.
    pub fn allows(self, scope: Scope) -> bool {
        self.0 & (scope.bit() | Scope::Admin.bit()) != 0
            || (scope == Scope::DataRead && self.0 & Scope::DataWrite.bit() != 0)
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL.into_iter().filter(move |s| self.contains(*s))
    }

    /// Parses space- or comma-separated names, refusing unknown ones.
    pub fn parse(names: &str) -> Result<Scopes, AuthError> {
        names
            .split([' ', ','])
            .filter(|n| !n.is_empty())
            .map(Scope::from_str)
            .collect()
    }

    /// The known scope names among `names` (a JWT's scope claim also carries names such as
    /// `openid` that are not keel's).
    pub fn known<'a>(names: impl IntoIterator<Item = &'a str>) -> Scopes {
        names.into_iter().filter_map(|n| n.parse().ok()).collect()
    }

    /// Space-separated names, as stored.
    pub fn names(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Scopes {
        Scopes(iter.into_iter().fold(0, |acc, s| acc | s.bit()))
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names())
    }
}

impl Serialize for Scopes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().expect("known"), scope);
        }
        let set = Scopes::parse("infer, decide data:read").expect("valid");
        assert_eq!(set.names(), "infer decide data:read");
        let err = Scopes::parse("infer inference").expect_err("unknown");
        assert!(err.to_string().contains("\"inference\""), "{err}");
        assert_eq!(Scopes::known(["openid", "infer", "profile"]).names(), "infer");
    }

    #[test]
    fn admin_allows_everything_and_write_includes_read() {
        let admin = Scopes::parse("admin").expect("valid");
        assert!(Scope::ALL.into_iter().all(|s| admin.allows(s)));
        let writer = Scopes::parse("data:write").expect("valid");
        assert!(writer.allows(Scope::DataRead) && writer.allows(Scope::DataWrite));
        assert!(!writer.allows(Scope::Infer));
        let reader = Scopes::parse("data:read").expect("valid");
        assert!(!reader.allows(Scope::DataWrite));
        assert!(!Scopes::NONE.allows(Scope::Infer));
    }
}
