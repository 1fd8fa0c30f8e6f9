//! The MLflow tracking backend: an MLflow 3.x server over its REST API
//! (`/api/2.0/mlflow/...`), artifacts through the server's `mlflow-artifacts` proxy.
//!
//! Batches are split to MLflow's `runs/log-batch` limits (1000 metrics, 100 params, 100 tags
//! per call). Server errors (`{"error_code", "message"}`) become [`Error::Tracking`] with the
//! endpoint, HTTP status, code and message. Credentials are read as MLflow's own client reads
//! them and are never logged or shown by `Debug`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    check_keys, check_metric_value, check_name, check_start, now_ms, ExperimentTracker,
    MetricPoint, RunId, RunRecord, RunStatus,
};
use crate::error::{Error, Result};

/// MLflow's per-call limits of `runs/log-batch`.
const MAX_METRICS: usize = 1000;
const MAX_PARAMS: usize = 100;
const MAX_TAGS: usize = 100;

/// Where the server is and how to authenticate.
#[derive(Clone)]
pub struct MlflowConfig {
    /// `http(s)://host:port` of the tracking server (`MLFLOW_TRACKING_URI`).
    pub tracking_uri: String,
    /// Basic-auth user (`MLFLOW_TRACKING_USERNAME`).
    pub username: Option<String>,
    /// Basic-auth password (`MLFLOW_TRACKING_PASSWORD`).
    pub password: Option<String>,
    /// Bearer token (`MLFLOW_TRACKING_TOKEN`), used when no username is set.
    pub token: Option<String>,
    /// Per-request timeout (default 30 s).
    pub timeout: Duration,
}

impl std::fmt::Debug for MlflowConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("MlflowConfig")
            .field("tracking_uri", &self.tracking_uri)
            .field("username", &self.username)
            .field("password", &hidden(&self.password))
            .field("token", &hidden(&self.token))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl MlflowConfig {
    /// A config for `tracking_uri` without credentials.
    pub fn new(tracking_uri: impl Into<String>) -> Self {
        MlflowConfig {
            tracking_uri: tracking_uri.into(),
            username: None,
            password: None,
            token: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Reads the environment MLflow's client reads: `MLFLOW_TRACKING_URI` (required, http or
    /// https), `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`, `MLFLOW_TRACKING_TOKEN`.
    pub fn from_env() -> Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let uri = var("MLFLOW_TRACKING_URI").ok_or_else(|| {
            Error::invalid(
                "MLFLOW_TRACKING_URI",
                "unset",
                "the tracking server's http(s) URL",
            )
        })?;
        Ok(MlflowConfig {
            username: var("MLFLOW_TRACKING_USERNAME"),
            password: var("MLFLOW_TRACKING_PASSWORD"),
            token: var("MLFLOW_TRACKING_TOKEN"),
            ..MlflowConfig::new(uri)
        })
    }
}

/// Tracks runs on an MLflow server.
///
/// ```no_run
/// use mlops_train::tracking::{MlflowConfig, MlflowTracker};
///
/// let tracker = MlflowTracker::new(MlflowConfig::from_env()?)?;
/// # Ok::<(), mlops_train::Error>(())
/// ```
pub struct MlflowTracker {
    config: MlflowConfig,
    base: url::Url,
    client: reqwest::Client,
    /// Experiment name → id, and run id → (experiment id, artifact URL path).
    experiments: Mutex<HashMap<String, String>>,
    /// Run start and end times.
    clock: std::sync::Arc<dyn mlops_core::clock::Clock>,
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    value: String,
}

fn tracking_err(message: String) -> Error {
    Error::Tracking {
        backend: "mlflow".into(),
        message,
    }
}

fn parse_status(s: &str) -> RunStatus {
    match s {
        "FINISHED" => RunStatus::Finished,
        "FAILED" => RunStatus::Failed,
        "KILLED" => RunStatus::Killed,
        _ => RunStatus::Running,
    }
}

impl std::fmt::Debug for MlflowTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowTracker")
            .field(
                "base",
                &mlops_core::store_url::url_without_secrets(&self.base),
            )
            .finish()
    }
}

impl MlflowTracker {
    /// A client for the server in `config` (no request is made yet). Its requests run on the
    /// library's own I/O runtime: await them on any executor, or wrap the tracker in
    /// [`super::blocking::Tracker`].
    pub fn new(config: MlflowConfig) -> Result<Self> {
        let base = url::Url::parse(&config.tracking_uri)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                Error::invalid(
                    "MlflowConfig.tracking_uri",
                    format!("{:?}", config.tracking_uri),
                    "an http(s) URL of an MLflow tracking server",
                )
            })?;
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| tracking_err(format!("building the HTTP client: {e}")))?;
        Ok(MlflowTracker {
            config,
            base,
            client,
            experiments: Mutex::new(HashMap::new()),
            clock: std::sync::Arc::new(mlops_core::clock::SystemClock),
        })
    }

    /// Uses `clock` for run start and end times.
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn mlops_core::clock::Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn url(&self, path: &str) -> Result<url::Url> {
        self.base
            .join(path)
            .map_err(|e| tracking_err(format!("building the URL of {path}: {e}")))
    }

    fn authorize(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match (&self.config.username, &self.config.token) {
            (Some(user), _) => r.basic_auth(user, self.config.password.as_ref()),
            (None, Some(token)) => r.bearer_auth(token),
            (None, None) => r,
        }
    }

    /// Sends a request and reads the whole answer, on the library's I/O runtime
    /// (`mlops_core::runtime`: any executor may await this); a non-2xx answer becomes an
    /// error naming the endpoint and MLflow's `error_code` and `message`.
    async fn send(&self, what: &str, r: reqwest::RequestBuilder) -> Result<bytes::Bytes> {
        tracing::debug!(endpoint = what, "mlflow request");
        let request = self.authorize(r);
        let what = what.to_string();
        mlops_core::runtime::spawn(async move {
            let resp = request
                .send()
                .await
                .map_err(|e| tracking_err(format!("{what}: {e}")))?;
            let status = resp.status();
            if status.is_success() {
                return resp
                    .bytes()
                    .await
                    .map_err(|e| tracking_err(format!("{what}: reading the answer: {e}")));
            }
            let body = resp.text().await.unwrap_or_default();
            let (code, message) = match serde_json::from_str::<Value>(&body) {
                Ok(v) => (
                    v["error_code"].as_str().unwrap_or("").to_string(),
                    v["message"].as_str().unwrap_or(&body).to_string(),
                ),
                Err(_) => (String::new(), body.chars().take(300).collect()),
            };
            Err(tracking_err(format!(
                "{what}: HTTP {status} {code}: {message}"
            )))
        })
        .await?
    }

    async fn get_json(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Value> {
        let url = self.url(&format!("api/2.0/mlflow/{endpoint}"))?;
        let body = self
            .send(endpoint, self.client.get(url).query(query))
            .await?;
        serde_json::from_slice(&body)
            .map_err(|e| tracking_err(format!("{endpoint}: reading the answer: {e}")))
    }

    async fn post_json(&self, endpoint: &str, body: &Value) -> Result<Value> {
        let url = self.url(&format!("api/2.0/mlflow/{endpoint}"))?;
        let answer = self
            .send(endpoint, self.client.post(url).json(body))
            .await?;
        serde_json::from_slice(&answer)
            .map_err(|e| tracking_err(format!("{endpoint}: reading the answer: {e}")))
    }

    /// The id of experiment `name`; created when `create` and missing; `None` when missing.
    async fn experiment_id(&self, name: &str, create: bool) -> Result<Option<String>> {
        if let Some(id) = self
            .experiments
            .lock()
            .ok()
            .and_then(|m| m.get(name).cloned())
        {
            return Ok(Some(id));
        }
        let id = match self
            .get_json("experiments/get-by-name", &[("experiment_name", name)])
            .await
        {
            Ok(v) => v["experiment"]["experiment_id"]
                .as_str()
                .map(str::to_string),
            Err(Error::Tracking { message, .. }) if message.contains("RESOURCE_DOES_NOT_EXIST") => {
                if !create {
                    return Ok(None);
                }
                match self
                    .post_json("experiments/create", &json!({ "name": name }))
                    .await
                {
                    Ok(v) => v["experiment_id"].as_str().map(str::to_string),
                    // Another client created it meanwhile.
                    Err(Error::Tracking { message, .. })
                        if message.contains("RESOURCE_ALREADY_EXISTS") =>
                    {
                        self.get_json("experiments/get-by-name", &[("experiment_name", name)])
                            .await?["experiment"]["experiment_id"]
                            .as_str()
                            .map(str::to_string)
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let id = id.ok_or_else(|| {
            tracking_err(format!(
                "experiment {name:?}: no experiment_id in the answer"
            ))
        })?;
        if let Ok(mut m) = self.experiments.lock() {
            m.insert(name.to_string(), id.clone());
        }
        Ok(Some(id))
    }

    async fn experiment_name(&self, id: &str) -> Result<String> {
        if let Some(name) = self
            .experiments
            .lock()
            .ok()
            .and_then(|m| m.iter().find(|(_, v)| *v == id).map(|(k, _)| k.clone()))
        {
            return Ok(name);
        }
        let v = self
            .get_json("experiments/get", &[("experiment_id", id)])
            .await?;
        v["experiment"]["name"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| tracking_err(format!("experiment {id}: no name in the answer")))
    }

    async fn log_batch(
        &self,
        run: &RunId,
        metrics: Vec<Value>,
        params: Vec<Value>,
        tags: Vec<Value>,
    ) -> Result<()> {
        for chunk in metrics.chunks(MAX_METRICS) {
            self.post_json(
                "runs/log-batch",
                &json!({ "run_id": run.0, "metrics": chunk }),
            )
            .await?;
        }
        for chunk in params.chunks(MAX_PARAMS) {
            self.post_json(
                "runs/log-batch",
                &json!({ "run_id": run.0, "params": chunk }),
            )
            .await?;
        }
        for chunk in tags.chunks(MAX_TAGS) {
            self.post_json("runs/log-batch", &json!({ "run_id": run.0, "tags": chunk }))
                .await?;
        }
        Ok(())
    }

    async fn raw_run(&self, run: &RunId) -> Result<Value> {
        check_name("run id", &run.0)?;
        Ok(self.get_json("runs/get", &[("run_id", &run.0)]).await?["run"].take())
    }

    /// The artifact proxy URL of `path` in `run` (runs whose artifact URI is
    /// `mlflow-artifacts:/...`, the default of `mlflow server`).
    async fn artifact_url(&self, run: &RunId, path: &str) -> Result<url::Url> {
        let info = self.raw_run(run).await?;
        let uri = info["info"]["artifact_uri"].as_str().unwrap_or("");
        let rest = uri.strip_prefix("mlflow-artifacts:/").ok_or_else(|| {
            tracking_err(format!(
                "run {run}: artifact URI {uri:?} is not served by the tracking server \
                 (start `mlflow server` with artifact serving, the default)"
            ))
        })?;
        self.url(&format!(
            "api/2.0/mlflow-artifacts/artifacts/{}/{path}",
            rest.trim_start_matches('/')
        ))
    }
}

fn key_values(v: &Value) -> BTreeMap<String, String> {
    serde_json::from_value::<Vec<KeyValue>>(v.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|kv| (kv.key, kv.value))
        .collect()
}

fn pairs(map: &BTreeMap<String, String>) -> Vec<Value> {
    map.iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect()
}

fn point(v: &Value) -> Option<MetricPoint> {
    Some(MetricPoint {
        key: v["key"].as_str()?.to_string(),
        value: v["value"].as_f64()?,
        step: v["step"]
            .as_i64()
            .or_else(|| v["step"].as_str()?.parse().ok())
            .unwrap_or(0),
        timestamp_ms: v["timestamp"]
            .as_i64()
            .or_else(|| v["timestamp"].as_str()?.parse().ok())
            .unwrap_or(0),
    })
}

fn as_ms(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_str()?.parse().ok())
}

#[async_trait]
impl ExperimentTracker for MlflowTracker {
    async fn start_run(
        &self,
        experiment: &str,
        name: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<RunId> {
        check_start(experiment, name, tags)?;
        let id = self.experiment_id(experiment, true).await?.ok_or_else(|| {
            tracking_err(format!("experiment {experiment:?} could not be created"))
        })?;
        let v = self
            .post_json(
                "runs/create",
                &json!({ "experiment_id": id, "run_name": name, "start_time": now_ms(self.clock.as_ref()), "tags": pairs(tags) }),
            )
            .await?;
        let run_id = v["run"]["info"]["run_id"]
            .as_str()
            .ok_or_else(|| tracking_err("runs/create: no run_id in the answer".into()))?;
        Ok(RunId(run_id.to_string()))
    }

    async fn log_params(&self, run: &RunId, params: &BTreeMap<String, String>) -> Result<()> {
        check_keys("params", params.keys())?;
        self.log_batch(run, Vec::new(), pairs(params), Vec::new())
            .await
    }

    async fn log_metrics(&self, run: &RunId, metrics: &[MetricPoint]) -> Result<()> {
        for m in metrics {
            check_name("metric key", &m.key)?;
            check_metric_value(m)?;
        }
        let values = metrics
            .iter()
            .map(|m| json!({ "key": m.key, "value": m.value, "timestamp": m.timestamp_ms, "step": m.step }))
            .collect();
        self.log_batch(run, values, Vec::new(), Vec::new()).await
    }

    async fn set_tags(&self, run: &RunId, tags: &BTreeMap<String, String>) -> Result<()> {
        check_keys("tags", tags.keys())?;
        self.log_batch(run, Vec::new(), Vec::new(), pairs(tags))
            .await
    }

    async fn log_artifact(&self, run: &RunId, path: &str, bytes: Vec<u8>) -> Result<()> {
        check_name("artifact path", path)?;
        let url = self.artifact_url(run, path).await?;
        self.send("mlflow-artifacts PUT", self.client.put(url).body(bytes))
            .await?;
        Ok(())
    }

    async fn end_run(&self, run: &RunId, status: RunStatus) -> Result<()> {
        check_name("run id", &run.0)?;
        self.post_json(
            "runs/update",
            &json!({ "run_id": run.0, "status": status.as_str(), "end_time": now_ms(self.clock.as_ref()) }),
        )
        .await?;
        Ok(())
    }

    async fn get_run(&self, run: &RunId) -> Result<RunRecord> {
        let v = self.raw_run(run).await?;
        let info = &v["info"];
        let experiment = self
            .experiment_name(info["experiment_id"].as_str().unwrap_or(""))
            .await?;
        Ok(RunRecord {
            run_id: run.clone(),
            experiment,
            name: info["run_name"].as_str().unwrap_or("").to_string(),
            status: parse_status(info["status"].as_str().unwrap_or("")),
            start_time_ms: as_ms(&info["start_time"]).unwrap_or(0),
            end_time_ms: as_ms(&info["end_time"]),
            params: key_values(&v["data"]["params"]),
            tags: key_values(&v["data"]["tags"])
                .into_iter()
                .filter(|(k, _)| !k.starts_with("mlflow."))
                .collect(),
            metrics: v["data"]["metrics"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(point)
                        .map(|p| (p.key, p.value))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    async fn list_runs(&self, experiment: &str) -> Result<Vec<RunRecord>> {
        check_name("experiment", experiment)?;
        let Some(id) = self.experiment_id(experiment, false).await? else {
            return Ok(Vec::new());
        };
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({ "experiment_ids": [id], "max_results": 1000, "order_by": ["attributes.start_time ASC"] });
            if let Some(t) = &token {
                body["page_token"] = json!(t);
            }
            let v = self.post_json("runs/search", &body).await?;
            for r in v["runs"].as_array().into_iter().flatten() {
                if let Some(run_id) = r["info"]["run_id"].as_str() {
                    ids.push(RunId(run_id.to_string()));
                }
            }
            token = v["next_page_token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        let mut runs = Vec::with_capacity(ids.len());
        for run in &ids {
            runs.push(self.get_run(run).await?);
        }
        super::sort_runs(&mut runs);
        Ok(runs)
    }

    async fn metric_history(&self, run: &RunId, key: &str) -> Result<Vec<MetricPoint>> {
        check_name("run id", &run.0)?;
        check_name("metric key", key)?;
        let mut points = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run.0.as_str()),
                ("metric_key", key),
                ("max_results", "25000"),
            ];
            if let Some(t) = &token {
                query.push(("page_token", t));
            }
            let v = self.get_json("metrics/get-history", &query).await?;
            points.extend(
                v["metrics"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(point),
            );
            token = v["next_page_token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        super::sort_points(&mut points);
        Ok(points)
    }

    async fn get_artifact(&self, run: &RunId, path: &str) -> Result<Vec<u8>> {
        check_name("artifact path", path)?;
        let url = self.artifact_url(run, path).await?;
        Ok(self
            .send("mlflow-artifacts GET", self.client.get(url))
            .await?
            .to_vec())
    }
}
