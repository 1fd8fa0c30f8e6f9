//! Name checks, done before any I/O: model and alias names become path segments, so they are
//! refused unless they are short, plain and unambiguous.

use mlops_core::version_ref::{is_plain_name, PLAIN_NAME};

use crate::error::{Error, Result};

/// Longest model or alias name.
pub use mlops_core::version_ref::MAX_NAME_LEN;

/// Checks a model or alias name: 1 to 128 characters from `A-Z a-z 0-9 . _ -`, starting with
/// a letter or digit, without `..`. (So no `/`, NUL, spaces or empty names.) The rule is
/// mlops-core's [`is_plain_name`](mlops_core::version_ref::is_plain_name), the one an alias in
/// a [`VersionRef`](crate::VersionRef) follows.
///
/// ```
/// use mlops_registry::names::check_name;
///
/// assert!(check_name("model name", "fraud-mlp_v2.1").is_ok());
/// for bad in ["", "a/b", "..", "a..b", ".hidden", "nul\0", "with space"] {
///     assert!(check_name("model name", bad).is_err());
/// }
/// ```
pub fn check_name(field: &str, name: &str) -> Result<()> {
    if is_plain_name(name) {
        Ok(())
    } else {
        Err(Error::invalid(field, format!("{name:?}"), PLAIN_NAME))
    }
}

/// Checks a tag, metric or parameter key: 1 to 250 characters from `A-Z a-z 0-9 . _ - / :`
/// and space (MLflow's key charset, plus `:`).
pub fn check_key(field: &str, key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 250
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/' | ':' | ' '));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!("{key:?}"),
            "1 to 250 characters from A-Z a-z 0-9 . _ - / : and space",
        ))
    }
}

/// Checks the name of a file inside a version: a relative path of `/`-separated segments,
/// none empty, `.` or `..`, without NUL or `\`, at most 1,024 bytes.
pub fn check_file_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 1024
        && !name.contains(['\0', '\\'])
        && name
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "file name",
            format!("{name:?}"),
            "a relative path of `/`-separated segments, none empty, `.` or `..`, without NUL \
             or `\\`",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keys_and_files() {
        assert!(check_name("alias", &"a".repeat(128)).is_ok());
        assert!(check_name("alias", &"a".repeat(129)).is_err());
        assert!(check_name("alias", "-x").is_err());
        let e = check_name("model name", "a/b").unwrap_err().to_string();
        assert!(e.contains("model name") && e.contains("a/b"), "{e}");
        assert!(check_key("tag key", "team/owner: x").is_ok());
        assert!(check_key("tag key", "").is_err());
        assert!(check_key("tag key", "a\nb").is_err());
        assert!(check_file_name("model.json").is_ok());
        assert!(check_file_name("extra/notes.txt").is_ok());
        for bad in ["", "/abs", "a//b", "../x", "a/./b", "a\\b", "x\0"] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
