//! The name rule shared by experiment tracking and hyperparameter studies (a study's name is
//! its experiment's).

use crate::error::{Error, Result};

/// Checks an experiment, run, parameter, metric or tag name: 1 to 250 characters of
/// letters, digits, `_ - . /` and spaces (MLflow's rule), no `..` component, not starting
/// with `/`.
pub(crate) fn check_name(field: &str, name: &str) -> Result<()> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ' '));
    if name.is_empty()
        || name.len() > 250
        || !ok_chars
        || name.starts_with('/')
        || name.split('/').any(|part| part == ".." || part == ".")
    {
        return Err(Error::invalid(
            field,
            format!("{name:?}"),
            "1 to 250 characters of letters, digits, `_ - . /` and spaces, no `.` or `..` path part, not starting with `/`",
        ));
    }
    Ok(())
}
