//! Checked configs as types (linfa's `ParamGuard::check() -> Checked`): a config as written
//! (`FooConfig`, plain public fields, serde) has a `check(self)` that returns its checked
//! type, and only the checked type reaches the functions that work with it, so a value built
//! in code that the check refuses (an empty list that would be indexed, a zero that would
//! divide) cannot reach them.
//!
//! [`checked_config!`](crate::checked_config) writes the checked type once for every config:
//! a private field (nothing outside the defining module builds one without the check), read
//! access through `Deref` and `config()`, `into_config()` to change it and check again,
//! `Serialize` as the config, and `Deserialize` through the config's `check`.

#[doc(hidden)]
pub use serde as __serde;

/// Defines the checked type of a config: `checked_config!(pub struct Checked(Config));`
/// defines `pub struct Checked { config: Config }` with `Deref<Target = Config>`, `config()`,
/// `into_config()`, `Serialize` (as `Config`) and `Deserialize` (a `Config`, then
/// `Config::check`, whose error must implement `Display`). Attributes (docs, derives) go
/// before `struct`. The defining module writes `Config::check(self) -> Result<Checked, _>`,
/// the only place that builds a `Checked { config }`.
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// /// A batch size as written.
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct BatchConfig {
///     /// Rows per batch, ≥ 1.
///     pub rows: usize,
/// }
///
/// mlops_core::checked_config! {
///     /// A checked [`BatchConfig`].
///     #[derive(Debug, Clone, PartialEq)]
///     pub struct Batch(BatchConfig);
/// }
///
/// impl BatchConfig {
///     /// Checks `rows`.
///     pub fn check(self) -> mlops_core::Result<Batch> {
///         if self.rows == 0 {
///             return Err(mlops_core::Error::invalid("rows", 0, "at least 1"));
///         }
///         Ok(Batch { config: self })
///     }
/// }
///
/// let batch = BatchConfig { rows: 64 }.check()?;
/// assert_eq!(batch.rows, 64); // read through Deref
/// assert_eq!(serde_json::to_string(&batch)?, r#"{"rows":64}"#);
/// assert_eq!(serde_json::from_str::<Batch>(r#"{"rows":64}"#)?, batch);
/// let e = serde_json::from_str::<Batch>(r#"{"rows":0}"#).unwrap_err().to_string();
/// assert!(e.contains("invalid rows = 0: expected at least 1"), "{e}");
/// assert!(BatchConfig { rows: 0 }.check().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[macro_export]
macro_rules! checked_config {
    ($(#[$meta:meta])* $vis:vis struct $name:ident($config:ty);) => {
        $(#[$meta])*
        $vis struct $name {
            config: $config,
        }

        impl ::std::ops::Deref for $name {
            type Target = $config;

            fn deref(&self) -> &$config {
                &self.config
            }
        }

        impl $name {
            /// The checked config.
            pub fn config(&self) -> &$config {
                &self.config
            }

            /// The config back, to change and check again.
            pub fn into_config(self) -> $config {
                self.config
            }
        }

        impl $crate::checked::__serde::Serialize for $name {
            fn serialize<S: $crate::checked::__serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                $crate::checked::__serde::Serialize::serialize(&self.config, serializer)
            }
        }

        impl<'de> $crate::checked::__serde::Deserialize<'de> for $name {
            fn deserialize<D: $crate::checked::__serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                <$config as $crate::checked::__serde::Deserialize<'de>>::deserialize(deserializer)?
                    .check()
                    .map_err(<D::Error as $crate::checked::__serde::de::Error>::custom)
            }
        }
    };
}
