//! Installing a downloaded version into a folder as a whole: every file is staged in a sibling
//! folder, then the staged folder is swapped in with renames. A failed or killed download
//! leaves the folder as it was (never one version's `model.json` beside another's weights).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The marker file a download writes into its folder: which version the folder holds. A
/// folder that is not empty is replaced only when it holds this marker (it was a download).
pub const DOWNLOAD_MARKER: &str = ".mlops-download.json";

/// What [`DOWNLOAD_MARKER`] holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DownloadMarker {
    /// The model.
    pub model: String,
    /// The version.
    pub version: u64,
    /// `(file name, sha256)` of every file.
    pub files: Vec<(String, String)>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

/// A sibling of `dir` named `.NAME.TAG-RANDOM`.
fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("download");
    dir.with_file_name(format!(".{name}.{tag}-{:016x}", rand::random::<u64>()))
}

/// Whether `dir` may be replaced: absent, empty, or an earlier download (holds the marker).
async fn replaceable(dir: &Path) -> Result<bool> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(Error::io("reading folder", dir, e)),
    };
    if tokio::fs::try_exists(dir.join(DOWNLOAD_MARKER))
        .await
        .unwrap_or(false)
    {
        return Ok(true);
    }
    Ok(entries
        .next_entry()
        .await
        .map_err(io("reading folder", dir))?
        .is_none())
}

/// Writes `files` (already verified) and the marker into a staging sibling of `dir`, then
/// swaps it in: `dir` → `.dir.old-*`, staging → `dir`, old removed. Any failure before the
/// swap removes the staging folder and leaves `dir` untouched.
///
/// The file work runs on the library's I/O runtime ([`mlops_core::runtime`]), whatever
/// executor awaits it.
pub(crate) async fn install(
    dir: &Path,
    files: &[(String, Bytes)],
    marker: &DownloadMarker,
) -> Result<()> {
    let (dir, files, marker) = (dir.to_path_buf(), files.to_vec(), marker.clone());
    mlops_core::runtime::spawn(async move { install_here(&dir, &files, &marker).await }).await?
}

async fn install_here(
    dir: &Path,
    files: &[(String, Bytes)],
    marker: &DownloadMarker,
) -> Result<()> {
    if !replaceable(dir).await? {
        return Err(Error::invalid(
            "download folder",
            dir.display(),
            format!(
                "a new or empty folder, or one an earlier download wrote (it holds {DOWNLOAD_MARKER}); \
                 it is replaced as a whole, so other files there would be lost"
            ),
        ));
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(io("creating", &parent))?;
    let staging = sibling(dir, "download");
    let staged = stage(&staging, files, marker).await;
    if let Err(e) = staged {
        let _ = tokio::fs::remove_dir_all(&staging).await;
        return Err(e);
    }
    let old = sibling(dir, "old");
    let had_old = match tokio::fs::rename(dir, &old).await {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&staging).await;
            return Err(Error::io("moving aside", dir, e));
        }
    };
    if let Err(e) = tokio::fs::rename(&staging, dir).await {
        // Put the old folder back; the staging folder goes.
        if had_old {
            let _ = tokio::fs::rename(&old, dir).await;
        }
        let _ = tokio::fs::remove_dir_all(&staging).await;
        return Err(Error::io("renaming into", dir, e));
    }
    if had_old {
        if let Err(e) = tokio::fs::remove_dir_all(&old).await {
            tracing::warn!(path = %old.display(), error = %e, "could not remove the replaced download");
        }
    }
    Ok(())
}

async fn stage(staging: &Path, files: &[(String, Bytes)], marker: &DownloadMarker) -> Result<()> {
    tokio::fs::create_dir(staging)
        .await
        .map_err(io("creating", staging))?;
    for (name, bytes) in files {
        let path = staging.join(name);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io("creating", parent))?;
        }
        write_synced(&path, bytes).await?;
    }
    let json = serde_json::to_vec_pretty(marker)
        .map_err(|e| Error::invalid("download marker", e, "serializable JSON"))?;
    write_synced(&staging.join(DOWNLOAD_MARKER), &json).await
}

async fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut f = tokio::fs::File::create(path)
        .await
        .map_err(io("creating", path))?;
    f.write_all(bytes).await.map_err(io("writing", path))?;
    f.sync_all().await.map_err(io("syncing", path))
}
