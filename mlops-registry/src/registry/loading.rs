//! Loading: a live version's files, its download into a folder, its artifact and predictor.

use std::path::Path;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use mlops_core::model::{ModelArtifact, ModelKind, SPEC_FILE, WEIGHTS_FILE};

use super::{missing_version, tombstone_key, Registry, CONCURRENT_READS};
use crate::blobs::fetch;
use crate::download::{install, DownloadMarker};
use crate::error::{Error, Result};
use crate::names::check_file_name;
use crate::records::{VersionRecord, VersionRef};

impl Registry {
    /// The record of a live version, refused when deleted: the reference is resolved once,
    /// the record and tombstone read concurrently (no alias listing).
    async fn live_record(&self, model: &str, reference: &VersionRef) -> Result<VersionRecord> {
        let version = self.resolve(model, reference).await?;
        let tombstone = tombstone_key(model, version);
        let (record, deleted) =
            futures::try_join!(self.read_record(model, version), self.store.get(&tombstone))?;
        let record = record.ok_or_else(|| missing_version(model, version))?;
        if deleted.is_some() {
            return Err(Error::Conflict {
                model: model.to_string(),
                version,
                reason: "deleted".into(),
            });
        }
        Ok(record)
    }

    /// The checked bytes of file `name` of `record`.
    async fn file_of(&self, record: &VersionRecord, name: &str) -> Result<Bytes> {
        let entry = record.file(name).ok_or_else(|| Error::NotFound {
            what: format!("file `{name}` of {} v{}", record.model, record.version),
        })?;
        fetch(
            &self.store,
            self.cache.as_deref(),
            &record.model,
            record.version,
            entry,
        )
        .await
    }

    /// The bytes of file `name` of a version, checked against its sha256 and size.
    pub async fn read_file(
        &self,
        model: &str,
        reference: &VersionRef,
        name: &str,
    ) -> Result<Bytes> {
        let record = self.live_record(model, reference).await?;
        self.file_of(&record, name).await
    }

    /// Installs every file of a version into `dir` as a whole: the files are fetched
    /// concurrently and checked against their sha256 and size (a mismatch is an error naming
    /// the file), written into a staging folder beside `dir`, and swapped in with renames. A
    /// failure, or a kill, leaves `dir` as it was. `dir` must be new, empty, or an earlier
    /// download (it holds [`crate::DOWNLOAD_MARKER`]): it is replaced as a whole.
    pub async fn download(
        &self,
        model: &str,
        reference: &VersionRef,
        dir: impl AsRef<Path>,
    ) -> Result<VersionRecord> {
        let record = self.live_record(model, reference).await?;
        for entry in &record.files {
            check_file_name(&entry.name)?;
        }
        let files: Vec<(String, Bytes)> = futures::stream::iter(&record.files)
            .map(|entry| async {
                let bytes = fetch(
                    &self.store,
                    self.cache.as_deref(),
                    model,
                    record.version,
                    entry,
                )
                .await?;
                Ok::<_, Error>((entry.name.clone(), bytes))
            })
            .buffered(CONCURRENT_READS)
            .try_collect()
            .await?;
        let marker = DownloadMarker {
            model: model.to_string(),
            version: record.version,
            files: record
                .files
                .iter()
                .map(|f| (f.name.clone(), f.sha256.clone()))
                .collect(),
        };
        install(dir.as_ref(), &files, &marker).await?;
        Ok(record)
    }

    /// The mlops-core model of a version (`model.json` and its body file, checked: the
    /// safetensors weights of an MLP, the library's file of a tree model): the reference is
    /// resolved and the record read once, both blobs fetched concurrently (the body is the
    /// version's file named by a [`ModelKind::body_file`]; the spec's kind must agree).
    pub async fn load_artifact(
        &self,
        model: &str,
        reference: &VersionRef,
    ) -> Result<(VersionRecord, ModelArtifact)> {
        let record = self.live_record(model, reference).await?;
        let body = ModelKind::ALL
            .iter()
            .map(|k| k.body_file())
            .find(|f| record.file(f).is_some())
            .unwrap_or(WEIGHTS_FILE);
        let (spec, weights) = futures::try_join!(
            self.file_of(&record, SPEC_FILE),
            self.file_of(&record, body)
        )?;
        let kind = mlops_core::model::ModelSpec::from_json_bytes(&spec)?.kind;
        if kind.body_file() != body {
            return Err(mlops_core::Error::Artifact {
                item: format!("{} v{}", record.model, record.version),
                message: format!(
                    "{SPEC_FILE} says a {kind} model (body {}), but the version's body file is {body}",
                    kind.body_file()
                ),
            }
            .into());
        }
        let artifact = ModelArtifact::from_parts(&spec, &weights)?;
        Ok((record, artifact))
    }

    /// A version as a ready [`Predictor`](mlops_core::model::Predictor) of its kind (the
    /// reference implementations, [`mlops_core::model::predictor`]), with its decision threshold:
    /// `predict_labels` on the box uses the threshold the model was registered with.
    pub async fn load_predictor(
        &self,
        model: &str,
        reference: &VersionRef,
    ) -> Result<(VersionRecord, Box<dyn mlops_core::model::Predictor>)> {
        let (record, artifact) = self.load_artifact(model, reference).await?;
        let predictor = mlops_core::model::predictor(&artifact)?;
        Ok((record, predictor))
    }
}
