//! The compose model: what Compose itself would make of `-f a.yml -f b.yml`,
//! built natively (no Docker), so every tool that needs to know what compose
//! files mean shares one reading of them. Loading a [`Project`] parses each
//! file with serde_yaml (anchors and `<<` merge keys applied), indexes its key
//! paths to lines ([`lines::LineIndex`]), interpolates values from an
//! [`EnvSource`] (process environment, then an env file), normalises each
//! service, resolves `extends` and `include`, and merges the files in order
//! ([`merge`]) by the compose-spec rules, reading them as Compose v2 or v1
//! does ([`Flavour`]); reading is bounded ([`read`]). The API:
//!
//! ```no_run
//! use compose::{EnvSource, Project, Seg};
//! # fn main() -> Result<(), compose::LoadError> {
//! # let absolute_files = vec![std::path::PathBuf::from("/repo/compose/base.yml")];
//! // Variables: the process environment, then an env file.
//! let env = EnvSource::with_process_env(Some(std::path::Path::new("/repo/.env")))?;
//! let project = Project::load(&absolute_files, &env)?; // Err(LoadError): file:line:col
//! for svc in project.services() {                     // merged, in first-defined order
//!     let _ = (&svc.name, &svc.image, &svc.command, &svc.profiles);
//!     let _ = &svc.ports;       // Vec<Port { host_ip, published: Option<PortRange>, target, protocol }>
//!     let _ = svc.has_healthcheck();
//!     let _ = svc.env("NODE_TYPE");
//!     let _ = (&svc.networks, &svc.volumes, &svc.depends_on, &svc.raw); // raw: the merged mapping
//! }
//! project.service("grafana"); project.network_names(); project.volume_names();
//! project.section("networks");       // top-level mapping (e.g. ipam subnets, `name:`)
//! project.env().get("POSTGRES_USER"); // the variables it was interpolated with
//! project.locate(&[Seg::key("services"), Seg::key("grafana")]); // Location { file, line }
//! project.config();                  // the model as Compose would print it
//! project.to_yaml();                 // that, as YAML v1 and v2 both accept
//! # Ok(()) }
//! ```
//!
//! [`ProjectLoader`] loads many projects with one env and parses each file
//! once. Errors are [`LoadError`]s with the file, and the line and column where
//! known; their `Display` is `file:line:col: message`.

pub mod emit;
pub mod env;
mod envfile;
mod extends;
mod include;
pub mod interpolate;
pub mod lines;
pub mod merge;
pub mod read;
mod service;
pub mod types;
mod validate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml::{Mapping, Value};

pub use env::{EnvSource, Flavour};

pub use lines::{LineIndex, Seg};
pub use service::Service;
pub use types::{Healthcheck, Mount, MountKind, Port, PortRange};

/// What went wrong while loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    Read,
    Parse,
    Interpolation,
    Invalid,
}

/// A load failure with its position: `file:line:col: message`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {message}", .file.display(), position(.line, .column))]
pub struct LoadError {
    pub kind: LoadErrorKind,
    pub file: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl LoadError {
    pub fn read(path: &Path, err: &std::io::Error) -> LoadError {
        LoadError {
            kind: LoadErrorKind::Read,
            file: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("cannot read: {err}"),
        }
    }
}

/// `:line:col`, `:line` or nothing.
fn position(line: &Option<usize>, column: &Option<usize>) -> String {
    match (*line, *column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// One input file: its text, raw value, normalised value and (built on
/// first use, since a clean check never needs it) its line index.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    /// Parsed with anchors and `<<` applied, before interpolation.
    pub raw: Value,
    /// Interpolated and normalised (the input to the merge).
    pub model: Value,
    lines: std::sync::OnceLock<LineIndex>,
}

impl SourceFile {
    /// Parse, index, interpolate and normalise one file.
    pub fn load(path: &Path, env: &EnvSource) -> Result<SourceFile, LoadError> {
        let text = read::read_text(path)?;
        SourceFile::from_text(path, &text, env)
    }

    /// Key path -> line index of this file.
    pub fn lines(&self) -> &LineIndex {
        self.lines.get_or_init(|| LineIndex::build(&self.text))
    }

    pub fn from_text(path: &Path, text: &str, env: &EnvSource) -> Result<SourceFile, LoadError> {
        let error = |kind, line, column, message| LoadError {
            kind,
            file: path.to_path_buf(),
            line,
            column,
            message,
        };
        let text = read::strip_bom(text);
        if let Err((line, msg)) = lines::check_depth(text) {
            return Err(error(LoadErrorKind::Parse, Some(line), None, msg));
        }
        let mut raw: Value = match serde_yaml::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                let loc = e.location();
                let msg = e.to_string();
                // serde_yaml appends " at line L column C"; the position is in front already.
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                return Err(error(
                    LoadErrorKind::Parse,
                    loc.as_ref().map(|l| l.line()),
                    loc.as_ref().map(|l| l.column()),
                    format!("invalid YAML: {msg}"),
                ));
            }
        };
        if raw.is_null() {
            return Err(error(
                LoadErrorKind::Invalid,
                None,
                None,
                "empty compose file; define at least `services:`".into(),
            ));
        }
        let lines = || LineIndex::build(text);
        let invalid = |(at, msg): (Vec<Seg>, String)| {
            error(LoadErrorKind::Invalid, lines().nearest_line(&at), None, msg)
        };

        raw.apply_merge().map_err(|e| {
            error(
                LoadErrorKind::Parse,
                None,
                None,
                format!("bad `<<` merge: {e}"),
            )
        })?;
        validate::check_file(&raw, env.flavour).map_err(invalid)?;
        let mut model = raw.clone();
        interpolate::interpolate_value(&mut model, env, &mut Vec::new()).map_err(|(at, e)| {
            error(
                LoadErrorKind::Interpolation,
                lines().nearest_line(&at),
                None,
                format!("{}: {e}", lines::display_path(&at)),
            )
        })?;
        merge::normalise_file(&mut model, env.flavour).map_err(|(at, msg)| {
            error(
                LoadErrorKind::Invalid,
                lines().nearest_line(&at),
                None,
                format!("{}: {msg}", lines::display_path(&at)),
            )
        })?;
        extends::resolve(&mut model, path, env).map_err(invalid)?;
        include::resolve(&mut model, path, env).map_err(invalid)?;
        Ok(SourceFile {
            path: path.to_path_buf(),
            text: text.to_string(),
            raw,
            model,
            lines: Default::default(),
        })
    }
}

/// Loads many projects that share files and variables, parsing each file
/// once (checking every named environment reads `base.yml` ten times).
#[derive(Debug)]
pub struct ProjectLoader {
    env: Arc<EnvSource>,
    files: std::collections::HashMap<PathBuf, Result<Arc<SourceFile>, LoadError>>,
}

impl ProjectLoader {
    pub fn new(env: &EnvSource) -> ProjectLoader {
        ProjectLoader {
            env: Arc::new(env.clone()),
            files: Default::default(),
        }
    }

    /// Like [`Project::load`], reusing files this loader already parsed.
    pub fn load(&mut self, files: &[PathBuf]) -> Result<Project, LoadError> {
        let mut sources = Vec::with_capacity(files.len());
        for f in files {
            let env = &self.env;
            let parsed = self
                .files
                .entry(f.clone())
                .or_insert_with(|| SourceFile::load(f, env).map(Arc::new));
            sources.push(parsed.clone()?);
        }
        Project::from_shared(sources, Arc::clone(&self.env))
    }
}

/// A file and line a finding points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: Option<usize>,
}

/// The merged, interpolated model of several compose files.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project directory: the directory of the first file.
    pub dir: PathBuf,
    /// The input files, shared with the [`ProjectLoader`] that parsed them.
    pub files: Vec<Arc<SourceFile>>,
    model: Value,
    services: Vec<Service>,
    env: Arc<EnvSource>,
}

impl Project {
    /// Load and merge `files` in order with variables from `env`.
    pub fn load(files: &[PathBuf], env: &EnvSource) -> Result<Project, LoadError> {
        let sources = files
            .iter()
            .map(|f| SourceFile::load(f, env))
            .collect::<Result<Vec<_>, _>>()?;
        Project::from_sources(sources, env)
    }

    /// Merge already loaded files (lets callers parse a file once for many projects).
    pub fn from_sources(files: Vec<SourceFile>, env: &EnvSource) -> Result<Project, LoadError> {
        let files = files.into_iter().map(Arc::new).collect();
        Project::from_shared(files, Arc::new(env.clone()))
    }

    fn from_shared(files: Vec<Arc<SourceFile>>, env: Arc<EnvSource>) -> Result<Project, LoadError> {
        let dir = files
            .first()
            .and_then(|f| f.path.parent())
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let mut model = Value::Mapping(Mapping::new());
        for file in &files {
            merge::merge(&mut model, file.model.clone(), &mut Vec::new());
        }
        let merged_error = |(at, message): (Vec<Seg>, String)| {
            let loc = locate_in(&files, &at).or_else(|| {
                (1..at.len())
                    .rev()
                    .find_map(|n| locate_in(&files, &at[..n]))
            });
            LoadError {
                kind: LoadErrorKind::Invalid,
                file: loc
                    .as_ref()
                    .map(|l| l.file.clone())
                    .or_else(|| files.first().map(|f| f.path.clone()))
                    .unwrap_or_default(),
                line: loc.and_then(|l| l.line),
                column: None,
                message,
            }
        };
        merge::strip_tags(&mut model);
        envfile::apply(&mut model, &dir, &env).map_err(merged_error)?;
        validate::imply_dependencies(&mut model, env.flavour);
        validate::check_services(&model, env.flavour).map_err(merged_error)?;
        validate::check_build_paths(&model, &dir, env.flavour).map_err(merged_error)?;
        let mut services = Vec::new();
        if let Some(map) = model.get("services").and_then(Value::as_mapping) {
            for (name, value) in map {
                let name = key_str(name);
                let service = Service::from_value(&name, value).map_err(|message| {
                    let at = [Seg::key("services"), Seg::Key(name.clone())];
                    let loc = locate_in(&files, &at);
                    LoadError {
                        kind: LoadErrorKind::Invalid,
                        file: loc.as_ref().map(|l| l.file.clone()).unwrap_or_default(),
                        line: loc.and_then(|l| l.line),
                        column: None,
                        message: format!("service `{name}`: {message}"),
                    }
                })?;
                services.push(service);
            }
        }
        Ok(Project {
            dir,
            files,
            model,
            services,
            env,
        })
    }

    /// What Compose refuses on top of what loading checks: a required
    /// `depends_on` on an undefined service (`check` reports it as a finding).
    pub fn check_dependencies(&self) -> Result<(), LoadError> {
        validate::undefined_dependency(&self.model).map_err(|(at, message)| {
            let loc = self.locate_nearest(&at);
            LoadError {
                kind: LoadErrorKind::Invalid,
                file: loc.as_ref().map(|l| l.file.clone()).unwrap_or_default(),
                line: loc.and_then(|l| l.line),
                column: None,
                message,
            }
        })
    }

    /// Every service, in the order the files first define them.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn service_names(&self) -> Vec<&str> {
        self.services.iter().map(|s| s.name.as_str()).collect()
    }

    /// The merged model as a YAML value (normalised forms, `$` unescaped).
    pub fn model(&self) -> &Value {
        &self.model
    }

    /// A top-level section (`networks`, `volumes`, `secrets`, `configs`) as a mapping.
    pub fn section(&self, name: &str) -> Option<&Mapping> {
        self.model.get(name).and_then(Value::as_mapping)
    }

    /// Keys of the top-level `networks` mapping.
    pub fn network_names(&self) -> Vec<String> {
        self.section("networks")
            .map(|m| m.keys().map(key_str).collect())
            .unwrap_or_default()
    }

    /// Keys of the top-level `volumes` mapping.
    pub fn volume_names(&self) -> Vec<String> {
        self.section("volumes")
            .map(|m| m.keys().map(key_str).collect())
            .unwrap_or_default()
    }

    /// The variables the project was interpolated with.
    pub fn env(&self) -> &EnvSource {
        &self.env
    }

    /// The last file that defines `path`, and the line there. `None` when no
    /// file spells the path out.
    pub fn locate(&self, path: &[Seg]) -> Option<Location> {
        locate_in(&self.files, path)
    }

    /// Every file that defines `path`, in file order, with its line there.
    pub fn locate_all(&self, path: &[Seg]) -> Vec<Location> {
        self.files
            .iter()
            .filter(|file| value_at(&file.model, path).is_some())
            .map(|file| Location {
                file: file.path.clone(),
                line: line_in(file, path),
            })
            .collect()
    }

    /// The last file whose text spells out `path` itself (no fallback to a
    /// parent key), with the line.
    pub fn locate_exact(&self, path: &[Seg]) -> Option<Location> {
        self.files.iter().rev().find_map(|file| {
            Some(Location {
                file: file.path.clone(),
                line: Some(file.lines().line(path)?),
            })
        })
    }

    /// The value at `path` as the last file that defines it wrote it: before
    /// interpolation (anchors and `<<` applied), with that file. The merged
    /// model says what a value is; this says where it comes from (an
    /// `image: ${VAR:-default}` line, see [`interpolate::variable_default`]).
    /// `None` when no file of the project spells the path out (a value from
    /// `extends` or `include`).
    pub fn raw_at(&self, path: &[Seg]) -> Option<(&SourceFile, &Value)> {
        self.files
            .iter()
            .rev()
            .find_map(|file| Some((file.as_ref(), value_at(&file.raw, path)?)))
    }

    /// Like [`Project::locate`] but falls back to the nearest defined ancestor.
    pub fn locate_nearest(&self, path: &[Seg]) -> Option<Location> {
        (1..=path.len()).rev().find_map(|n| self.locate(&path[..n]))
    }

    /// Where an item of a service's list (`ports`, `volumes`, ...) was defined:
    /// the last file whose list has an item `matches` accepts.
    pub fn locate_item(
        &self,
        service: &str,
        field: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Option<Location> {
        self.files.iter().rev().find_map(|file| {
            let items = file.model.get("services")?.get(service)?.get(field)?;
            let i = items.as_sequence()?.iter().position(&matches)?;
            let path = [
                Seg::key("services"),
                Seg::key(service),
                Seg::key(field),
                Seg::Index(i),
            ];
            Some(Location {
                file: file.path.clone(),
                line: file.lines().nearest_line(&path),
            })
        })
    }

    /// The model as a compose file Compose accepts: `x-` extensions dropped,
    /// `$` escaped as `$$`, relative host paths made absolute. What
    /// [`Project::to_yaml`] prints, for callers that rewrite it further.
    pub fn config(&self) -> Value {
        service::config(self)
    }

    /// [`Project::config`] as YAML that Compose v1 and v2 both read back
    /// (`cargo xtask config`'s output).
    pub fn to_yaml(&self) -> String {
        emit::to_yaml(&self.config())
    }
}

fn locate_in(files: &[Arc<SourceFile>], path: &[Seg]) -> Option<Location> {
    files.iter().rev().find_map(|file| {
        value_at(&file.model, path)?;
        Some(Location {
            file: file.path.clone(),
            line: line_in(file, path),
        })
    })
}

/// The line of `path` in `file`. A key of a normalised list (`depends_on: [db]`,
/// `environment: [A=1]`) is found at its list item in the raw file.
fn line_in(file: &SourceFile, path: &[Seg]) -> Option<usize> {
    if let Some(line) = file.lines().line(path) {
        return Some(line);
    }
    if let Some((Seg::Key(k), parent)) = path.split_last() {
        if let Some(Value::Sequence(items)) = value_at(&file.raw, parent) {
            let prefix = format!("{k}=");
            let found = items.iter().position(|item| {
                let s = types::scalar_string(item);
                s == *k || s.starts_with(&prefix)
            });
            if let Some(i) = found {
                let mut at = parent.to_vec();
                at.push(Seg::Index(i));
                if let Some(line) = file.lines().line(&at) {
                    return Some(line);
                }
            }
        }
    }
    file.lines().nearest_line(path)
}

/// The value at `path` inside `v`.
pub fn value_at<'a>(v: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| match seg {
        Seg::Key(k) => v.get(k.as_str()),
        Seg::Index(i) => v.get(*i),
    })
}

/// A mapping key as a string (numbers and booleans printed).
pub fn key_str(k: &Value) -> String {
    types::scalar_string(k)
}
