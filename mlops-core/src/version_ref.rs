//! The one grammar of a version reference: a version number from 1 (`3`), or `@` and an alias
//! (`@production`, `@canary`), where [`LATEST`] (`@latest`) is the highest live version and
//! never an alias anyone moves. The registry, serving, the examples and the bindings parse
//! references only through [`VersionRef`].
//!
//! Alias (and model) names follow one rule, [`is_plain_name`]: they become path segments in a
//! store, so they are short, plain and unambiguous.
//!
//! ```
//! use mlops_core::VersionRef;
//!
//! let r: VersionRef = "@latest".parse()?;
//! assert!(r.is_latest());
//! assert_eq!(r.to_string(), "@latest");
//! // Serialized as it is written.
//! assert_eq!(serde_json::to_string(&VersionRef::Number(3))?, "\"3\"");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// `@latest`: the highest live version; no alias may take this name.
pub const LATEST: &str = "latest";

/// Longest model or alias name.
pub const MAX_NAME_LEN: usize = 128;

/// What [`is_plain_name`] accepts, in words (the `expected` of a refused name).
pub const PLAIN_NAME: &str = "1 to 128 characters from A-Z a-z 0-9 . _ -, starting with a \
                              letter or digit, without `..`";

/// Whether `name` is a plain model or alias name: 1 to [`MAX_NAME_LEN`] characters from
/// `A-Z a-z 0-9 . _ -`, starting with a letter or digit, without `..` (so no `/`, NUL, spaces
/// or empty names).
///
/// ```
/// use mlops_core::version_ref::is_plain_name;
///
/// assert!(is_plain_name("fraud-mlp_v2.1"));
/// for bad in ["", "a/b", "..", "a..b", ".hidden", "nul\0", "with space"] {
///     assert!(!is_plain_name(bad), "{bad:?}");
/// }
/// ```
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.contains("..")
}

/// A version by number or through an alias: `3` or `@production` (`@latest`: the highest live
/// version). Parsed with [`FromStr`], written back by [`Display`](fmt::Display), and
/// (de)serialized as that same string.
///
/// ```
/// use mlops_core::VersionRef;
///
/// assert_eq!("7".parse::<VersionRef>()?, VersionRef::Number(7));
/// assert_eq!("@production".parse::<VersionRef>()?, VersionRef::Alias("production".into()));
/// for bad in ["latest!", "0", "v2", "@", "@a/b", "-1"] {
///     assert!(bad.parse::<VersionRef>().is_err(), "{bad}");
/// }
/// # Ok::<(), mlops_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum VersionRef {
    /// A version number.
    Number(u64),
    /// The version an alias points to.
    Alias(String),
}

impl VersionRef {
    /// `@latest`: the highest live version.
    ///
    /// ```
    /// use mlops_core::VersionRef;
    ///
    /// assert_eq!(VersionRef::latest(), "@latest".parse()?);
    /// # Ok::<(), mlops_core::Error>(())
    /// ```
    pub fn latest() -> Self {
        VersionRef::Alias(LATEST.to_string())
    }

    /// Whether this is `@latest` (which no alias move may take).
    ///
    /// ```
    /// use mlops_core::VersionRef;
    ///
    /// assert!(VersionRef::latest().is_latest());
    /// assert!(!VersionRef::Number(1).is_latest());
    /// ```
    pub fn is_latest(&self) -> bool {
        matches!(self, VersionRef::Alias(a) if a == LATEST)
    }
}

impl FromStr for VersionRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if let Some(alias) = s.strip_prefix('@') {
            if !is_plain_name(alias) {
                return Err(Error::invalid("alias", format!("{alias:?}"), PLAIN_NAME));
            }
            return Ok(VersionRef::Alias(alias.to_string()));
        }
        match s.parse::<u64>() {
            Ok(n) if n > 0 => Ok(VersionRef::Number(n)),
            _ => Err(Error::invalid(
                "version",
                format!("{s:?}"),
                "a version number from 1, or @ALIAS",
            )),
        }
    }
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionRef::Number(n) => write!(f, "{n}"),
            VersionRef::Alias(a) => write!(f, "@{a}"),
        }
    }
}

impl From<u64> for VersionRef {
    fn from(n: u64) -> Self {
        VersionRef::Number(n)
    }
}

impl TryFrom<String> for VersionRef {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<VersionRef> for String {
    fn from(r: VersionRef) -> Self {
        r.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_round_trip_and_bad_ones_name_the_field() {
        for text in ["1", "42", "@production", "@latest", "@v2.1_a-b"] {
            let r: VersionRef = text.parse().unwrap();
            assert_eq!(r.to_string(), text);
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<VersionRef>(&json).unwrap(), r);
        }
        for (text, field) in [
            ("0", "version"),
            ("v2", "version"),
            ("", "version"),
            ("18446744073709551616", "version"),
            ("@", "alias"),
            ("@with space", "alias"),
            ("@..", "alias"),
        ] {
            // The message is the shared bad-input shape: `invalid FIELD = VALUE: expected ...`.
            let e = text.parse::<VersionRef>().unwrap_err().to_string();
            let value = format!("{:?}", text.strip_prefix('@').unwrap_or(text));
            assert!(
                e.starts_with(&format!("invalid {field} = {value}: expected ")),
                "{text:?}: {e}"
            );
        }
        assert!(serde_json::from_str::<VersionRef>("\"@\"").is_err());
        assert!(VersionRef::latest().is_latest());
        assert!(!"@production".parse::<VersionRef>().unwrap().is_latest());
    }
}
