//! The registry's view of an object store: opening one from a URL (credentials from the
//! environment the way object_store's builders read them), a root prefix, a deadline on every
//! operation, and the few operations the registry needs.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion,
};

use crate::error::{Error, Result};

/// An object store under a root prefix, with a deadline on every call.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    inner: Arc<dyn ObjectStore>,
    root: Path,
    timeout: Duration,
    name: String,
    /// The folder of a `file://` store (for the upload temporaries object_store's listing
    /// hides).
    local_dir: Option<std::path::PathBuf>,
}

/// How a [`Store::replace`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replaced {
    /// The bytes are there.
    Written,
    /// The object was not the expected one: nothing was written.
    Conflict,
    /// The backend has no conditional update (local disk): nothing was written.
    Unsupported,
}

/// Opens the store behind `location` through [`mlops_core::store_url::open_url`] (the one
/// opener of every crate: credentials from the environment, unknown options refused, no
/// secret in the shown name), with a deadline of `timeout` on every call.
pub(crate) fn open(
    location: &str,
    options: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<Store> {
    let opened = mlops_core::store_url::open_url("registry URL", location, options)?;
    let mut store = Store::new(opened.store, opened.prefix, timeout, opened.name);
    store.local_dir = opened.local_dir;
    Ok(store)
}

impl Store {
    pub(crate) fn new(
        inner: Arc<dyn ObjectStore>,
        root: impl Into<Path>,
        timeout: Duration,
        name: String,
    ) -> Self {
        Store {
            inner,
            root: root.into(),
            timeout,
            name,
            local_dir: None,
        }
    }

    /// The local folder behind `key`, for a `file://` store.
    pub(crate) fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        let dir = self.local_dir.as_ref()?;
        let mut path = dir.clone();
        for part in self.root.parts().chain(Path::from(key).parts()) {
            path.push(part.as_ref());
        }
        Some(path)
    }

    /// The metadata of `key`, `None` when absent.
    pub(crate) async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let (path, inner) = (self.path(key), self.inner.clone());
        let fut = async move {
            match inner.head(&path).await {
                Ok(m) => Ok(Some(m)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        self.timed("reading", key, fut).await
    }

    /// The store as it may be shown (no secrets).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// `key` (a `/`-separated path relative to the registry root) as a store path.
    pub(crate) fn path(&self, key: &str) -> Path {
        let mut p = self.root.clone();
        for part in key.split('/').filter(|s| !s.is_empty()) {
            p = p.clone().join(part);
        }
        p
    }

    /// `path` relative to the registry root.
    pub(crate) fn key_of(&self, path: &Path) -> String {
        match path.prefix_match(&self.root) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => path.to_string(),
        }
    }

    /// Runs `fut` on the library's I/O runtime ([`mlops_core::runtime`]) with the deadline:
    /// the caller's executor only waits, so any executor works (no timer or reactor of the
    /// host's is used).
    async fn timed<T: Send + 'static>(
        &self,
        op: &'static str,
        key: &str,
        fut: impl Future<Output = object_store::Result<T>> + Send + 'static,
    ) -> Result<T> {
        match mlops_core::runtime::with_timeout(self.timeout, fut).await? {
            Some(Ok(v)) => Ok(v),
            Some(Err(source)) => Err(Error::Store {
                op,
                path: key.to_string(),
                store: self.name.clone(),
                cause: Box::new(source),
            }),
            None => Err(Error::Timeout {
                op,
                path: key.to_string(),
                store: self.name.clone(),
                timeout: self.timeout,
            }),
        }
    }

    /// Writes `bytes` at `key` only if nothing is there; `false` when something was.
    pub(crate) async fn create(&self, key: &str, bytes: Bytes) -> Result<bool> {
        let path = self.path(key);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let inner = self.inner.clone();
        let fut = async move { inner.put_opts(&path, PutPayload::from(bytes), opts).await };
        match self.timed("creating", key, fut).await {
            Ok(_) => Ok(true),
            Err(Error::Store { cause, .. })
                if matches!(*cause, object_store::Error::AlreadyExists { .. }) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes `bytes` at `key` only if the object there is still the one `expected` names
    /// (`None`: only if there is none): a compare-and-swap where the backend has one.
    pub(crate) async fn replace(
        &self,
        key: &str,
        bytes: Bytes,
        expected: Option<UpdateVersion>,
    ) -> Result<Replaced> {
        let path = self.path(key);
        let opts = PutOptions {
            mode: expected.map_or(PutMode::Create, PutMode::Update),
            ..PutOptions::default()
        };
        let inner = self.inner.clone();
        let fut = async move { inner.put_opts(&path, PutPayload::from(bytes), opts).await };
        match self.timed("replacing", key, fut).await {
            Ok(_) => Ok(Replaced::Written),
            Err(Error::Store { cause, .. })
                if matches!(
                    *cause,
                    object_store::Error::AlreadyExists { .. }
                        | object_store::Error::Precondition { .. }
                ) =>
            {
                Ok(Replaced::Conflict)
            }
            Err(Error::Store { cause, .. })
                if matches!(*cause, object_store::Error::NotImplemented { .. }) =>
            {
                Ok(Replaced::Unsupported)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes (or overwrites) `key` atomically.
    pub(crate) async fn put(&self, key: &str, payload: PutPayload) -> Result<()> {
        let (path, inner) = (self.path(key), self.inner.clone());
        let fut = async move { inner.put(&path, payload).await };
        self.timed("writing", key, fut).await.map(|_| ())
    }

    /// The bytes at `key`, `None` when absent.
    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let (path, inner) = (self.path(key), self.inner.clone());
        let fut = async move {
            match inner.get(&path).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        self.timed("reading", key, fut).await
    }

    /// The bytes at `key` and the version a [`Store::replace`] of them names; `None` when
    /// absent.
    pub(crate) async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, UpdateVersion)>> {
        let (path, inner) = (self.path(key), self.inner.clone());
        let fut = async move {
            match inner.get(&path).await {
                Ok(r) => {
                    let version = UpdateVersion {
                        e_tag: r.meta.e_tag.clone(),
                        version: r.meta.version.clone(),
                    };
                    r.bytes().await.map(|b| Some((b, version)))
                }
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        };
        self.timed("reading", key, fut).await
    }

    /// Every object under `prefix` (recursively), after `offset` when given.
    pub(crate) async fn list(&self, prefix: &str, offset: Option<&str>) -> Result<Vec<ObjectMeta>> {
        let (path, inner) = (self.path(prefix), self.inner.clone());
        let offset = offset.map(|o| self.path(o));
        let fut = async move {
            let stream = match &offset {
                Some(o) => inner.list_with_offset(Some(&path), o),
                None => inner.list(Some(&path)),
            };
            stream.try_collect().await
        };
        self.timed("listing", prefix, fut).await
    }

    /// The immediate "directories" under `prefix`, as names.
    pub(crate) async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let (path, inner) = (self.path(prefix), self.inner.clone());
        let fut = async move { inner.list_with_delimiter(Some(&path)).await };
        let result = self.timed("listing", prefix, fut).await?;
        Ok(result
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    /// Deletes `key` (absent is fine).
    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        let (path, inner) = (self.path(key), self.inner.clone());
        let fut = async move {
            match inner.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        };
        self.timed("deleting", key, fut).await
    }
}
