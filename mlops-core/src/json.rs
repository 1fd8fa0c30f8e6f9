//! JSON for the types users store (profiles, reports, configs, specs, schemas): every one has
//! `to_json` (a `String`, pretty-printed) and `from_json` (`&str`), with errors naming what was
//! being read. The crates give their types these methods with `json_methods!`.
//!
//! ```
//! use mlops_core::{ColumnKind, Schema};
//!
//! let schema = Schema::from_json(r#"{"columns": [{"name": "amount", "kind": "numeric"}]}"#)?;
//! let again = Schema::from_json(&schema.to_json()?)?;
//! assert_eq!(again, schema);
//! let e = Schema::from_json("{").unwrap_err();
//! assert!(e.to_string().contains("schema"), "{e}");
//! # Ok::<(), mlops_core::Error>(())
//! ```

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// `value` as pretty JSON; `what` names it in errors.
pub fn to_string<T: Serialize + ?Sized>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string_pretty(value).map_err(|cause| Error::Json {
        what: what.to_string(),
        cause,
    })
}

/// A `T` from JSON text; `what` names it in errors.
pub fn from_str<T: DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|cause| Error::Json {
        what: what.to_string(),
        cause,
    })
}

/// Gives a serde type inherent `to_json` / `from_json` methods returning the calling crate's
/// `Result` (whose `Error` converts from `mlops_core::Error`). Used by every crate of the
/// workspace for the types users store.
// `crate::error::Result` is the calling crate's on purpose: each crate's methods return its
// own error type.
#[allow(clippy::crate_in_macro_def)]
#[macro_export]
#[doc(hidden)]
macro_rules! json_methods {
    ($($ty:ty => $what:literal),+ $(,)?) => {$(
        impl $ty {
            #[doc = concat!("The ", $what, " as pretty JSON (`from_json` reads it back).")]
            pub fn to_json(&self) -> crate::error::Result<String> {
                $crate::json::to_string($what, self).map_err(::core::convert::Into::into)
            }

            #[doc = concat!("Reads a ", $what, " from JSON (as `to_json` writes it).")]
            pub fn from_json(text: &str) -> crate::error::Result<Self> {
                $crate::json::from_str($what, text).map_err(::core::convert::Into::into)
            }
        }
    )+};
}
