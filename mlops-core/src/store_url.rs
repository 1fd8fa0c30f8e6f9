//! Opening an object store from a URL, the one way every crate does it (feature
//! `object-store`): a folder path, relative or absolute, or `file:///abs/dir` (created if
//! missing), `memory://`, `s3://bucket/prefix`,
//! `gs://…`, `az://…` (behind the `aws`, `gcp`, `azure` features). Cloud credentials and
//! settings come from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`, as each builder's
//! `from_env` reads them), overridden by explicit options; an option key the builder does not
//! know is refused (object_store would ignore it); the store's shown name is the URL without
//! user info or query, so no credential reaches a log or a record.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! let dir = tempfile::tempdir()?;
//! let url = format!("file://{}/runs", dir.path().display());
//! let opened = mlops_core::store_url::open_url("tracking URL", &url, &BTreeMap::new())?;
//! assert!(opened.local_dir.as_ref().unwrap().ends_with("runs"));
//! // A plain path works too (relative ones against the working directory).
//! let path = dir.path().join("registry");
//! let opened = mlops_core::store_url::open_url("registry URL", path.to_str().unwrap(), &BTreeMap::new())?;
//! assert_eq!(opened.local_dir.as_deref(), Some(path.as_path()));
//! let shown = url::Url::parse("s3://key:hunter2@bucket/p?token=x")?;
//! assert_eq!(mlops_core::store_url::url_without_secrets(&shown), "s3://bucket/p");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreScheme};
use url::Url;

use crate::duration::SecondsRange;
use crate::error::{Error, Result};

/// A store opened from a URL.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The URL's path inside the store (the root everything lives under).
    pub prefix: Path,
    /// The URL as it may be shown: no user info, no query.
    pub name: String,
    /// The folder of a `file://` store.
    pub local_dir: Option<PathBuf>,
}

/// Environment variable prefixes each cloud builder reads in its `from_env`.
fn env_prefix(scheme: &ObjectStoreScheme) -> Option<&'static str> {
    match scheme {
        ObjectStoreScheme::AmazonS3 => Some("AWS_"),
        ObjectStoreScheme::GoogleCloudStorage => Some("GOOGLE_"),
        ObjectStoreScheme::MicrosoftAzure => Some("AZURE_"),
        _ => None,
    }
}

/// Refuses an option key the scheme's builder does not know (object_store would ignore it).
fn check_option_key(scheme: &ObjectStoreScheme, key: &str) -> Result<()> {
    #[allow(unused_variables)]
    let lower = key.to_ascii_lowercase();
    let known = match scheme {
        #[cfg(feature = "aws")]
        ObjectStoreScheme::AmazonS3 => lower
            .parse::<object_store::aws::AmazonS3ConfigKey>()
            .is_ok(),
        #[cfg(feature = "gcp")]
        ObjectStoreScheme::GoogleCloudStorage => {
            lower.parse::<object_store::gcp::GoogleConfigKey>().is_ok()
        }
        #[cfg(feature = "azure")]
        ObjectStoreScheme::MicrosoftAzure => {
            lower.parse::<object_store::azure::AzureConfigKey>().is_ok()
        }
        _ => false,
    };
    if known {
        Ok(())
    } else {
        Err(Error::invalid(
            "store option",
            key,
            format!("an option of the {scheme:?} builder (see object_store's config keys)"),
        ))
    }
}

/// The cargo feature a scheme needs, when it is not compiled in.
fn missing_feature(scheme: &ObjectStoreScheme) -> Option<&'static str> {
    match scheme {
        ObjectStoreScheme::AmazonS3 if !cfg!(feature = "aws") => Some("aws"),
        ObjectStoreScheme::GoogleCloudStorage if !cfg!(feature = "gcp") => Some("gcp"),
        ObjectStoreScheme::MicrosoftAzure if !cfg!(feature = "azure") => Some("azure"),
        _ => None,
    }
}

/// The URL as it may be shown: without user info or query (which may hold credentials).
pub fn url_without_secrets(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

fn no_options(options: &BTreeMap<String, String>, scheme: &str) -> Result<()> {
    if options.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(
            "store option",
            options.keys().cloned().collect::<Vec<_>>().join(", "),
            format!("no options for {scheme}"),
        ))
    }
}

/// The deadline of every store call from a setting in seconds (`field` names it in the
/// error): a millisecond to a week ([`SecondsRange::positive`]), or an error — the one check
/// of the registry's and the tracker's `timeout_seconds`.
///
/// ```
/// use std::time::Duration;
/// use mlops_core::store_url::deadline;
///
/// assert_eq!(deadline("RegistryConfig.timeout_seconds", 1.5)?, Duration::from_millis(1500));
/// let e = deadline("TrackerConfig.timeout_seconds", 0.0).unwrap_err();
/// assert!(e.to_string().contains("TrackerConfig.timeout_seconds = 0"));
/// assert!(deadline("RegistryConfig.timeout_seconds", 1e300).is_err());
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn deadline(field: &str, seconds: f64) -> Result<std::time::Duration> {
    crate::duration::seconds(field, seconds, SecondsRange::positive())
}

/// `location` as a local folder when it is a path rather than a URL: no `scheme:` before
/// the first `/` (`runs`, `./runs`, `../x/runs`, `/abs/runs`), or a Windows drive path.
fn local_path(location: &str) -> Option<PathBuf> {
    let before_slash = location.split(['/', '\\']).next().unwrap_or("");
    let scheme_like = before_slash.find(':').is_some_and(|i| i > 1);
    (!location.is_empty() && !scheme_like).then(|| PathBuf::from(location))
}

/// The `file://` URL of folder `path` (made absolute against the working directory).
fn folder_url(field: &str, location: &str, path: &std::path::Path) -> Result<Url> {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("reading the working directory for", path, e))?
            .join(path)
    };
    // `.` and `..` resolved by name (object_store paths refuse them), as a shell does.
    let mut absolute = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                absolute.pop();
            }
            other => absolute.push(other),
        }
    }
    Url::from_directory_path(&absolute).map_err(|()| {
        Error::invalid(
            field,
            location,
            "a folder path that can be made absolute, or a URL (file:///dir, s3://bucket/prefix, ...)",
        )
    })
}

/// Opens the store behind `location` (see the module docs); `field` names the setting in
/// errors (`registry URL`, `tracking URL`). Nothing is read or written.
pub fn open_url(
    field: &str,
    location: &str,
    options: &BTreeMap<String, String>,
) -> Result<OpenedStore> {
    let url = match local_path(location) {
        Some(path) => folder_url(field, location, &path)?,
        None => Url::parse(location).map_err(|e| {
            Error::invalid(
                field,
                location,
                format!(
                    "a folder path (relative or absolute), file:///dir, memory://, \
                     s3://bucket/prefix, gs://... or az://... ({e})"
                ),
            )
        })?,
    };
    let name = url_without_secrets(&url);
    let shown = || name.clone();
    let (scheme, prefix) = ObjectStoreScheme::parse(&url)
        .map_err(|e| Error::invalid(field, shown(), format!("a URL object_store knows ({e})")))?;
    if let Some(feature) = missing_feature(&scheme) {
        return Err(Error::invalid(
            field,
            shown(),
            format!("a scheme this build supports (build with the `{feature}` feature)"),
        ));
    }
    match scheme {
        ObjectStoreScheme::Memory => {
            no_options(options, "memory://")?;
            Ok(OpenedStore {
                store: Arc::new(InMemory::new()),
                prefix,
                name,
                local_dir: None,
            })
        }
        ObjectStoreScheme::Local => {
            no_options(options, "file://")?;
            let dir = url
                .to_file_path()
                .map_err(|()| Error::invalid(field, shown(), "file:// with an absolute path"))?;
            std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| Error::invalid(field, shown(), format!("an openable folder ({e})")))?;
            Ok(OpenedStore {
                store: Arc::new(store),
                prefix: Path::default(),
                name,
                local_dir: Some(dir),
            })
        }
        _ => {
            for key in options.keys() {
                check_option_key(&scheme, key)?;
            }
            let mut merged: BTreeMap<String, String> = BTreeMap::new();
            if let Some(prefix) = env_prefix(&scheme) {
                for (k, v) in std::env::vars() {
                    if k.starts_with(prefix) {
                        merged.insert(k.to_ascii_lowercase(), v);
                    }
                }
            }
            for (k, v) in options {
                merged.insert(k.to_ascii_lowercase(), v.clone());
            }
            let (store, prefix) = object_store::parse_url_opts(&url, merged).map_err(|e| {
                Error::invalid(field, shown(), format!("a store its builder accepts ({e})"))
            })?;
            Ok(OpenedStore {
                store: Arc::from(store),
                prefix,
                name,
                local_dir: None,
            })
        }
    }
}

/// Refuses a local `location` (a folder path or `file:///dir`) whose folder does not exist;
/// any other store passes. For a reader (a server, a report): [`open_url`] creates a local
/// folder, so a mistyped path would otherwise become an empty store, silently.
///
/// ```
/// use mlops_core::store_url::require_existing;
/// let dir = std::env::temp_dir();
/// require_existing("--registry", dir.to_str().unwrap())?;
/// let e = require_existing("--registry", "/no/such/registry/here").unwrap_err().to_string();
/// assert!(e.contains("invalid --registry = /no/such/registry/here"), "{e}");
/// require_existing("--registry", "memory://")?;
/// # Ok::<(), mlops_core::Error>(())
/// ```
pub fn require_existing(field: &str, location: &str) -> Result<()> {
    let folder = match local_path(location) {
        Some(path) => Some(path),
        None => Url::parse(location)
            .ok()
            .filter(|u| u.scheme() == "file")
            .and_then(|u| u.to_file_path().ok()),
    };
    match folder {
        Some(dir) if !dir.is_dir() => Err(Error::invalid(
            field,
            location,
            "an existing folder (nothing is created when only reading: check the path)",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{deadline, local_path, open_url};

    #[test]
    fn a_deadline_is_a_millisecond_to_a_week_and_never_panics() {
        for bad in [
            1e300,
            1e20,
            f64::MAX,
            f64::INFINITY,
            f64::NAN,
            0.0,
            -1.0,
            1e-20,
        ] {
            let e = deadline("RegistryConfig.timeout_seconds", bad).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with("invalid RegistryConfig.timeout_seconds = "),
                "{e}"
            );
        }
        assert_eq!(
            deadline("f", 604_800.0).unwrap(),
            std::time::Duration::from_secs(604_800)
        );
        assert!(deadline("f", 604_801.0).is_err());
    }

    #[test]
    fn folder_paths_relative_absolute_and_with_dot_dot_open_the_same_folder() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("store");
        // `target` relative to the working directory, climbing with `..` to the root.
        let cwd = std::env::current_dir().unwrap();
        let ups = cwd.components().count() - 1;
        let relative = format!(
            "{}{}",
            "../".repeat(ups),
            target.strip_prefix("/").unwrap().display()
        );
        for location in [
            target.display().to_string(),
            relative,
            format!("{}/./sub/../", target.display()),
        ] {
            let opened = open_url("registry URL", &location, &BTreeMap::new()).unwrap();
            assert_eq!(
                opened.local_dir.as_deref(),
                Some(target.as_path()),
                "{location}"
            );
            assert!(opened.name.starts_with("file:///"), "{}", opened.name);
        }
        assert!(target.is_dir());
        // URLs stay URLs; a one-letter scheme is a Windows drive.
        for url in ["memory:///", "s3://b/p", "file:///x"] {
            assert!(local_path(url).is_none(), "{url}");
        }
        for path in [
            "runs",
            "./runs",
            "../runs",
            "/abs/runs",
            "C:\\runs",
            "a:b/c",
        ] {
            assert!(local_path(path).is_some(), "{path}");
        }
        // Nothing at all is neither.
        let e = open_url("tracking URL", "", &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("tracking URL"), "{e}");
    }
}
