//! Content-addressed blobs: `blobs/sha256/<first two hex>/<sha256>`. The digest is computed
//! while a file is read for upload; identical content is stored once. A registration always
//! writes its blobs (an atomic overwrite with the same bytes), even when the blob exists: that
//! refreshes its modification time, so garbage collection's grace period also covers a blob
//! an in-flight registration reuses from a deleted version. Every read is checked against the
//! recorded digest and size; a local cache keyed by digest avoids downloading the same bytes
//! twice.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use object_store::PutPayload;
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::error::{Error, Result};
use crate::records::FileEntry;
use crate::store::Store;

/// Read size when hashing files.
const CHUNK: usize = 1 << 20;

/// Where a file of a new version comes from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// Bytes in memory.
    Bytes(Bytes),
    /// A local file, read in chunks.
    Path(PathBuf),
}

/// The store key of a blob.
pub(crate) fn blob_key(sha256: &str) -> String {
    format!("blobs/sha256/{}/{sha256}", &sha256[..2.min(sha256.len())])
}

/// The sha256 of `key`'s name when it is a blob key.
pub(crate) fn blob_digest(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("blobs/sha256/")?;
    let (_, digest) = rest.split_once('/')?;
    (digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit())).then_some(digest)
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Reads `source`, hashing as it goes: its entry (`name`, digest, size) and its bytes.
pub(crate) async fn read_source(
    name: &str,
    source: &FileSource,
) -> Result<(FileEntry, Vec<Bytes>)> {
    let (hasher, chunks, size) = match source {
        FileSource::Bytes(b) => {
            let mut hasher = Sha256::new();
            hasher.update(b);
            (hasher, vec![b.clone()], b.len() as u64)
        }
        FileSource::Path(path) => {
            // On the library's I/O runtime: any executor may await this.
            let path = path.clone();
            let read = mlops_core::runtime::spawn(async move {
                let mut hasher = Sha256::new();
                let (mut chunks, mut size) = (Vec::new(), 0u64);
                let mut file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| Error::io("opening", &path, e))?;
                loop {
                    let mut buf = vec![0u8; CHUNK];
                    let n = file
                        .read(&mut buf)
                        .await
                        .map_err(|e| Error::io("reading", &path, e))?;
                    if n == 0 {
                        break;
                    }
                    buf.truncate(n);
                    hasher.update(&buf);
                    size += n as u64;
                    chunks.push(Bytes::from(buf));
                }
                Ok::<_, Error>((hasher, chunks, size))
            });
            read.await??
        }
    };
    let entry = FileEntry {
        name: name.to_string(),
        sha256: hex(&hasher.finalize()),
        size,
    };
    Ok((entry, chunks))
}

/// Writes a file read by [`read_source`] to its content address.
pub(crate) async fn put_blob(store: &Store, entry: &FileEntry, chunks: Vec<Bytes>) -> Result<()> {
    store
        .put(&blob_key(&entry.sha256), PutPayload::from_iter(chunks))
        .await?;
    tracing::debug!(file = %entry.name, sha256 = %entry.sha256, size = entry.size, "blob written");
    Ok(())
}

/// Where a verified blob is cached.
fn cache_path(cache: &Path, sha256: &str) -> PathBuf {
    cache.join("sha256").join(sha256)
}

/// Checks `bytes` against `entry`.
fn verify(bytes: &[u8], entry: &FileEntry, model: &str, version: u64) -> Result<()> {
    let actual = sha256_hex(bytes);
    if actual == entry.sha256 && bytes.len() as u64 == entry.size {
        Ok(())
    } else {
        Err(Error::Checksum {
            model: model.to_string(),
            version,
            file: entry.name.clone(),
            expected_sha256: entry.sha256.clone(),
            expected_size: entry.size,
            actual_sha256: actual,
            actual_size: bytes.len() as u64,
        })
    }
}

/// The bytes of `entry`, checked against its digest and size: from the cache when it holds
/// them intact, else from the store (then cached).
pub(crate) async fn fetch(
    store: &Store,
    cache: Option<&Path>,
    model: &str,
    version: u64,
    entry: &FileEntry,
) -> Result<Bytes> {
    if let Some(cache) = cache {
        let path = cache_path(cache, &entry.sha256);
        let read = {
            let path = path.clone();
            mlops_core::runtime::spawn_blocking(move || std::fs::read(path)).await?
        };
        if let Ok(bytes) = read {
            if verify(&bytes, entry, model, version).is_ok() {
                tracing::debug!(file = entry.name, "blob from cache");
                return Ok(Bytes::from(bytes));
            }
            tracing::warn!(path = %path.display(), "cached blob is corrupt; fetching it again");
            let _ = mlops_core::runtime::spawn_blocking(move || std::fs::remove_file(path)).await;
        }
    }
    let key = blob_key(&entry.sha256);
    let bytes = store.get(&key).await?.ok_or_else(|| Error::NotFound {
        what: format!("blob {key} (file `{}` of {model} v{version})", entry.name),
    })?;
    verify(&bytes, entry, model, version)?;
    if let Some(cache) = cache {
        let path = cache_path(cache, &entry.sha256);
        write_atomically(&path, &bytes).await?;
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename (on
/// the library's I/O runtime's blocking pool).
async fn write_atomically(path: &Path, bytes: &Bytes) -> Result<()> {
    let (path, bytes) = (path.to_path_buf(), bytes.clone());
    mlops_core::runtime::spawn_blocking(move || {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        let tmp = dir.join(format!(
            ".{}.{:016x}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
            rand::random::<u64>()
        ));
        std::fs::write(&tmp, &bytes).map_err(|e| Error::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("renaming into", &path, e))
    })
    .await?
}
