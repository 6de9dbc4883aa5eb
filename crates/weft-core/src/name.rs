//! Service, entrypoint and topic names, versions and version selectors.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;

pub use semver::{Version, VersionReq};

/// A rule for one kind of name. Names and topics are checked by the same
/// code with different rules, so that the host, the SDK and the macros can
/// never disagree on what is valid.
struct Rule {
    max_len: usize,
    first: fn(u8) -> bool,
    rest: fn(u8) -> bool,
}

impl Rule {
    fn allows(&self, s: &str) -> bool {
        s.len() <= self.max_len
            && s.as_bytes().first().is_some_and(|&b| (self.first)(b))
            && s.bytes().all(self.rest)
    }
}

const NAME: Rule = Rule {
    max_len: 64,
    first: |b| b.is_ascii_lowercase(),
    rest: |b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'),
};

const TOPIC: Rule = Rule {
    max_len: 200,
    first: |b| b != b'.' && (TOPIC.rest)(b),
    rest: |b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'),
};

/// Checks a service or entrypoint name: 1 to 64 characters, lowercase ASCII
/// letters, digits, `_`, `-` and `.`, starting with a letter.
///
/// ```
/// assert!(weft_core::name::validate("die_roller").is_ok());
/// assert!(weft_core::name::validate("Die Roller").is_err());
/// ```
pub fn validate(name: &str) -> Result<(), Error> {
    if NAME.allows(name) {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            "name",
            format!(
                "`{name}` is not a valid name: use 1 to 64 lowercase letters, digits, `_`, `-` or `.`, starting with a letter"
            ),
        ))
    }
}

/// Checks an event topic: 1 to 200 ASCII letters (either case), digits,
/// `.`, `_` and `-`, not starting with `.`.
///
/// ```
/// use weft_core::name::validate_topic;
///
/// assert!(validate_topic("orders.created").is_ok());
/// assert!(validate_topic("Orders.Created").is_ok());
/// let err = validate_topic(".orders").unwrap_err();
/// assert_eq!(err.field(), Some("topic"));
/// ```
pub fn validate_topic(topic: &str) -> Result<(), Error> {
    if TOPIC.allows(topic) {
        Ok(())
    } else {
        Err(Error::invalid_argument(
            "topic",
            format!(
                "`{topic}` is not a topic name; use 1 to 200 letters, digits, `.`, `_` or `-`, \
                 not starting with `.`, like `orders.created`"
            ),
        ))
    }
}

/// Which version of a service a call wants.
///
/// ```
/// use weft_core::name::{Version, VersionSelector};
///
/// let exact: VersionSelector = "1.2.0".parse().unwrap();
/// assert!(exact.matches(&Version::new(1, 2, 0)));
/// assert!(!exact.matches(&Version::new(1, 2, 1)));
/// let req: VersionSelector = "^1.2".parse().unwrap();
/// assert!(req.matches(&Version::new(1, 9, 0)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VersionSelector {
    /// The service's main version.
    #[default]
    Main,
    /// Exactly this version.
    Exact(Version),
    /// The highest running version matching this requirement.
    Req(VersionReq),
}

impl VersionSelector {
    /// Whether `v` satisfies the selector. [`VersionSelector::Main`] matches
    /// nothing by itself: the registry knows which version is main.
    pub fn matches(&self, v: &Version) -> bool {
        match self {
            VersionSelector::Main => false,
            VersionSelector::Exact(e) => e == v,
            VersionSelector::Req(r) => r.matches(v),
        }
    }
}

impl FromStr for VersionSelector {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if s.is_empty() || s == "main" {
            return Ok(VersionSelector::Main);
        }
        if let Ok(v) = Version::parse(s) {
            return Ok(VersionSelector::Exact(v));
        }
        VersionReq::parse(s).map(VersionSelector::Req).map_err(|e| {
            Error::invalid_argument(
                "version",
                format!("`{s}` is neither a version (1.2.0) nor a requirement (^1.2): {e}"),
            )
        })
    }
}

impl fmt::Display for VersionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSelector::Main => f.write_str("main"),
            VersionSelector::Exact(v) => write!(f, "{v}"),
            VersionSelector::Req(r) => write!(f, "{r}"),
        }
    }
}

impl Serialize for VersionSelector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VersionSelector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        assert_eq!(
            "".parse::<VersionSelector>().unwrap(),
            VersionSelector::Main
        );
        assert!(matches!(
            "=1.0.0".parse::<VersionSelector>().unwrap(),
            VersionSelector::Req(_)
        ));
        assert!(matches!(
            "1.0.0".parse::<VersionSelector>().unwrap(),
            VersionSelector::Exact(_)
        ));
        assert!("not a version".parse::<VersionSelector>().is_err());
    }

    #[test]
    fn names() {
        for ok in ["a", "die_roller", "a.b-c9"] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", "9a", "A", "a b", "_a", "a/b", "é", &"a".repeat(65)] {
            assert!(validate(bad).is_err(), "{bad}");
        }
        assert!(validate(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn topics() {
        for ok in [
            "a",
            "orders.created",
            "Orders.Created",
            "9lives",
            "_x",
            "a-b_c.d",
            "x.",
        ] {
            assert!(validate_topic(ok).is_ok(), "{ok}");
        }
        assert!(validate_topic(&"t".repeat(200)).is_ok());
        for bad in ["", ".orders", "a b", "a/b", "ä", "a*", &"t".repeat(201)] {
            let err = validate_topic(bad).unwrap_err();
            assert_eq!(err.field(), Some("topic"), "{bad}");
            assert_eq!(
                err.message(),
                format!(
                    "`{bad}` is not a topic name; use 1 to 200 letters, digits, `.`, `_` or `-`, \
                     not starting with `.`, like `orders.created`"
                )
            );
        }
    }
}
