//! The project: `c360.toml` plus the `features/`, `models/` and `jobs/` folders.
//!
//! Loading is parse → validate (pure, errors name file and key) → use. Settings can be
//! overridden by environment variables (`C360_STORE`, `C360_SOURCE`, ...) and then by
//! command-line flags, in that order of precedence (flags win).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod validate;

pub use validate::{check_job, check_model, ModelIndex, Validation};

use crate::diagnostic::{toml_error, Collector, Diagnostic};
use crate::features::{self, DefErrors, FeatureSet};
use crate::names::StoreUri;

/// `c360.toml`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub project: ProjectSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub source: SourceSection,
    #[serde(default)]
    pub paths: PathsSection,
    /// `[service]`: `c360 serve` (absent = defaults; inside a SageMaker container an absent
    /// section makes `c360 serve` the inference server instead).
    #[serde(default)]
    pub service: Option<ServiceSection>,
    /// `[aws]`: S3 (VPC endpoint, SSE-KMS) and SageMaker settings; see [`crate::aws`].
    #[serde(default)]
    pub aws: crate::aws::AwsSettings,
    /// `[catalog]`: the central catalog products and snapshots are registered in (Glue,
    /// with Lake Formation tags); see [`crate::mesh`].
    #[serde(default)]
    pub catalog: crate::mesh::CatalogSettings,
    /// `[events]`: where product events go (EventBridge); see [`crate::mesh`].
    #[serde(default)]
    pub events: crate::mesh::EventSettings,
}

/// `[project]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSection {
    /// A name for logs and the catalog.
    #[serde(default = "default_name")]
    pub name: String,
}

impl Default for ProjectSection {
    fn default() -> Self {
        ProjectSection {
            name: default_name(),
        }
    }
}

fn default_name() -> String {
    "customer360".into()
}

/// `[store]`: where snapshots, runs and products live.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSection {
    /// `file://path`, a bare path (relative to c360.toml), or `s3://bucket/prefix`.
    /// Env: `C360_STORE`.
    #[serde(default = "default_store")]
    pub uri: String,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            uri: default_store(),
        }
    }
}

fn default_store() -> String {
    ".c360/store".into()
}

/// `[source]`: where the Customer 360 tables are.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// A folder (or `file://`/`s3://` URI) holding customers, orders, interactions and
    /// support_tickets. Env: `C360_SOURCE`.
    #[serde(default = "default_source")]
    pub uri: String,
}

impl Default for SourceSection {
    fn default() -> Self {
        SourceSection {
            uri: default_source(),
        }
    }
}

fn default_source() -> String {
    ".c360/data".into()
}

/// `[paths]`: the definition folders, relative to c360.toml.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PathsSection {
    #[serde(default = "default_features")]
    pub features: String,
    #[serde(default = "default_models")]
    pub models: String,
    #[serde(default = "default_jobs")]
    pub jobs: String,
}

impl Default for PathsSection {
    fn default() -> Self {
        PathsSection {
            features: default_features(),
            models: default_models(),
            jobs: default_jobs(),
        }
    }
}

fn default_features() -> String {
    "features".into()
}
fn default_models() -> String {
    "models".into()
}
fn default_jobs() -> String {
    "jobs".into()
}

/// `[service]`: the long-running `c360 serve` (scheduler + HTTP API).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSection {
    /// Address to listen on (default `127.0.0.1:8360`); `--bind` overrides.
    #[serde(default)]
    pub bind: Option<String>,
    /// Whether the cron scheduler runs (default true); off = API only.
    #[serde(default)]
    pub scheduler: Option<bool>,
    /// Seconds a run's lease (`runs/<job>/lease.json`) lasts without renewal (default 60);
    /// another replica may take over an expired lease.
    #[serde(default)]
    pub lease_seconds: Option<u64>,
    /// Seconds between checks of each product's `latest.json` for the lookup index
    /// (default 2).
    #[serde(default)]
    pub reload_seconds: Option<f64>,
    /// Seconds a shutdown waits for running runs before leaving them to be resumed
    /// (default 30).
    #[serde(default)]
    pub shutdown_grace_seconds: Option<u64>,
    /// Seconds for a request's headers to arrive, from the connection's opening or the
    /// end of the previous response (so also the keep-alive idle timeout); past it the
    /// connection is closed (default 10; 0.05 to 3600).
    #[serde(default)]
    pub header_timeout_seconds: Option<f64>,
    /// Seconds for a whole request body to arrive, past it 408, and the longest a response
    /// write may stay blocked by a client that stops reading (default 30; 0.05 to 3600).
    #[serde(default)]
    pub body_timeout_seconds: Option<f64>,
    /// Connections served at once; more wait in the listen backlog (default 512; 1 to
    /// 65536; lowered to fit the descriptor limit).
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// The largest request body in bytes: a larger Content-Length gets 413 before the
    /// body is read (default 1048576; 1 to 104857600).
    #[serde(default)]
    pub max_body_bytes: Option<u64>,
    /// Environment variable with more tokens, `name:role:token` separated by commas
    /// (default `C360_SERVICE_TOKENS`); the tokens are hashed on load.
    #[serde(default)]
    pub tokens_env: Option<String>,
    /// Bearer tokens, stored as SHA-256 hashes: `echo -n TOKEN | sha256sum`.
    #[serde(default)]
    pub tokens: Vec<TokenSection>,
    /// Roles beyond (or replacing) the built-in `admin`, `operator` and `marketing`.
    #[serde(default)]
    pub roles: Vec<RoleSection>,
}

/// The durations of `[service]`, range-checked so that no deadline computed from them can
/// overflow (pure: `c360 validate` and every command check them when c360.toml loads).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServiceDurations {
    pub lease: Duration,
    pub reload: Duration,
    pub grace: Duration,
}

impl ServiceSection {
    /// `lease_seconds` 1..=86400 (default 60), `reload_seconds` 0.05..=3600 (default 2),
    /// `shutdown_grace_seconds` 0..=86400 (default 30); an error names the key and range.
    pub fn durations(&self) -> Result<ServiceDurations, String> {
        let secs = |key: &str, v: Option<u64>, default: u64, lo: u64, hi: u64| {
            let v = v.unwrap_or(default);
            if (lo..=hi).contains(&v) {
                Ok(Duration::from_secs(v))
            } else {
                Err(format!(
                    "service.{key} = {v} is out of range: {lo} to {hi} seconds"
                ))
            }
        };
        let reload = self.reload_seconds.unwrap_or(2.0);
        if !(0.05..=3600.0).contains(&reload) {
            return Err(format!(
                "service.reload_seconds = {reload} is out of range: 0.05 to 3600 seconds"
            ));
        }
        Ok(ServiceDurations {
            lease: secs("lease_seconds", self.lease_seconds, 60, 1, 86_400)?,
            reload: Duration::from_secs_f64(reload),
            grace: secs(
                "shutdown_grace_seconds",
                self.shutdown_grace_seconds,
                30,
                0,
                86_400,
            )?,
        })
    }
}

/// `[[service.tokens]]`: one bearer token.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSection {
    /// Who holds it (logged on denials; the token itself never is).
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// A role name (built in or from `[[service.roles]]`).
    pub role: String,
}

/// `[[service.roles]]`: what a role may do.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSection {
    pub name: String,
    /// Actions: `trigger_runs`, `read_runs`, `read_products`.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Column tags the role may receive: `pii`.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Why a project could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// Every problem of `c360.toml` (`file`), each with its key and, when known, its line.
    #[error("{}", config_message(file, problems))]
    Config {
        file: String,
        problems: Vec<Diagnostic>,
    },
    #[error(transparent)]
    Definitions(#[from] DefErrors),
}

impl ProjectError {
    fn config(file: &str, problem: Diagnostic) -> ProjectError {
        ProjectError::Config {
            file: file.to_string(),
            problems: vec![problem],
        }
    }
}

/// One problem as `file: key: reason`; several as a list under the file's name.
fn config_message(file: &str, problems: &[Diagnostic]) -> String {
    match problems {
        [one] => one.to_string(),
        many => format!(
            "{file}: {} problems:\n{}",
            many.len(),
            many.iter()
                .map(|d| match d.line {
                    Some(n) => format!("  - {}: {} (line {n})", d.key, d.reason),
                    None => format!("  - {}: {}", d.key, d.reason),
                })
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

pub use crate::diagnostic::toml_reason;

/// A loaded project: config with overrides applied, paths resolved.
#[derive(Debug, Clone)]
pub struct Project {
    /// The folder of c360.toml (or the working folder when there is none).
    pub root: PathBuf,
    pub config_file: Option<PathBuf>,
    pub config: Config,
}

impl Project {
    /// Loads `c360.toml` from `explicit`, `$C360_CONFIG`, or the working folder; without
    /// one, the embedded defaults apply (store and source under `.c360/`).
    pub fn load(explicit: Option<&Path>) -> Result<Project, ProjectError> {
        let env = std::env::var_os("C360_CONFIG").map(PathBuf::from);
        let candidate = explicit.map(Path::to_path_buf).or(env);
        let (file, must_exist) = match candidate {
            Some(p) => (p, true),
            None => (PathBuf::from("c360.toml"), false),
        };
        let name = file.display().to_string();
        let (config, config_file, text) = if file.is_file() {
            let text = read_definition(&file).map_err(|e| {
                ProjectError::config(&name, Diagnostic::new(&name, "(file)", e.to_string()))
            })?;
            let cfg: Config = toml::from_str(&text)
                .map_err(|e| ProjectError::config(&name, toml_error(&name, &text, &e)))?;
            (cfg, Some(file.clone()), Some(text))
        } else if must_exist {
            return Err(ProjectError::config(
                &name,
                Diagnostic::new(&name, "(file)", "not found"),
            ));
        } else {
            (Config::default(), None, None)
        };
        let root = config_file
            .as_ref()
            .and_then(|f| f.parent().map(Path::to_path_buf))
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let mut p = Project {
            root,
            config_file,
            config,
        };
        if let Ok(v) = std::env::var("C360_STORE") {
            p.config.store.uri = v;
        }
        if let Ok(v) = std::env::var("C360_SOURCE") {
            p.config.source.uri = v;
        }
        let problems = p.check_config(text.as_deref());
        if !problems.is_empty() {
            return Err(ProjectError::Config {
                file: p.file_name(),
                problems,
            });
        }
        crate::aws::configure(p.config.aws.clone());
        Ok(p)
    }

    fn file_name(&self) -> String {
        self.config_file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "c360.toml (defaults)".into())
    }

    /// Every problem of `c360.toml` once loaded (with overrides): the URIs, `[service]`'s
    /// durations and `[aws]`; `text` (the file's text) places each on its line.
    fn check_config(&self, text: Option<&str>) -> Vec<Diagnostic> {
        let mut found = Collector::named(self.file_name(), text);
        for (key, uri) in [
            ("store.uri", &self.config.store.uri),
            ("source.uri", &self.config.source.uri),
        ] {
            let glue = key == "source.uri" && crate::source::glue::GlueUri::is_glue_uri(uri);
            if glue {
                if let Err(reason) = crate::source::glue::GlueUri::parse(uri) {
                    found.push(key, reason);
                }
            } else if let Err(e) = StoreUri::parse(uri) {
                found.push(key, e.reason);
            }
        }
        if let Some(s) = &self.config.service {
            if let Err(reason) = s.durations() {
                found.push("[service]", reason);
            }
        }
        let s3 = StoreUri::is_s3_uri(&self.config.store.uri);
        for e in self.config.aws.validate(s3) {
            found.push(e.key, e.reason);
        }
        for (key, reason) in self.config.catalog.validate() {
            found.push(key, reason);
        }
        // What opening the catalog and the event bus refuses (a Glue catalog over a store
        // not on S3, a malformed bus name): no call is made.
        for e in crate::mesh::Mesh::problems(&self.config, &self.store_uri()) {
            match e {
                crate::mesh::MeshError::Settings { section, message } => {
                    found.push(format!("[{section}]"), message)
                }
                other => found.push("[catalog]", other.to_string()),
            }
        }
        found.into_vec()
    }

    /// The price table file for the planner, when `[aws.sagemaker] prices` names one.
    pub fn prices_file(&self) -> Option<PathBuf> {
        self.config
            .aws
            .sagemaker
            .prices
            .as_ref()
            .map(|p| self.root.join(p))
    }

    /// Resolves a path or URI from the config relative to the project root.
    pub fn resolve_uri(&self, uri: &str) -> String {
        match StoreUri::parse(uri).map(|u| u.resolve(&self.root)) {
            Ok(StoreUri::File(p)) => p.display().to_string(),
            // S3 URIs, and URIs `check_config` refuses, stay as written.
            _ => uri.to_string(),
        }
    }

    pub fn store_uri(&self) -> String {
        self.resolve_uri(&self.config.store.uri)
    }

    pub fn source_uri(&self) -> String {
        self.resolve_uri(&self.config.source.uri)
    }

    pub fn features_dir(&self) -> PathBuf {
        self.root.join(&self.config.paths.features)
    }

    pub fn models_dir(&self) -> PathBuf {
        self.root.join(&self.config.paths.models)
    }

    pub fn jobs_dir(&self) -> PathBuf {
        self.root.join(&self.config.paths.jobs)
    }

    pub fn feature_sets(&self) -> Result<Vec<FeatureSet>, DefErrors> {
        features::load_sets(&self.features_dir())
    }
}

/// Largest definition file c360 reads (feature sets, jobs, `model.toml`, `c360.toml`, price
/// tables, `fitted.json`): 4 MiB, far above any real one.
pub const MAX_DEFINITION_BYTES: u64 = 4 << 20;

/// Largest model artifact c360 loads (an xgboost `save_model` file): 1 GiB.
pub const MAX_MODEL_BYTES: u64 = 1 << 30;

/// Reads a whole file of at most `max` bytes. Refuses, before reading, anything that is not
/// a regular file (a FIFO, or a link to `/dev/zero` or `/dev/urandom`, would block or never
/// end) and a file over `max`; reads at most `max + 1` bytes in case it grows meanwhile.
/// Errors are `InvalidData` with the reason (the caller names the file).
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::metadata(path)?;
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    if !meta.is_file() {
        return Err(invalid(
            "not a regular file (a folder, device or pipe cannot be a definition)".into(),
        ));
    }
    if meta.len() > max {
        return Err(invalid(format!(
            "{} bytes, over the limit of {max} bytes for this kind of file",
            meta.len()
        )));
    }
    let mut out = Vec::with_capacity(meta.len() as usize);
    std::fs::File::open(path)?
        .take(max + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(invalid(format!(
            "grew past the limit of {max} bytes while being read"
        )));
    }
    Ok(out)
}

/// [`read_bounded`] for text: UTF-8, at most [`MAX_DEFINITION_BYTES`].
pub fn read_definition(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_bounded(path, MAX_DEFINITION_BYTES)?).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "not UTF-8 text (first bad byte at offset {}): save it as UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}
