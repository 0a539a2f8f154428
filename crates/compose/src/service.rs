//! [`Service`]: the typed view of one merged service, and the whole model
//! as a compose file Compose accepts ([`crate::Project::config`]).

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::interpolate::escape;
use super::types::{is_host_path, scalar_string, Healthcheck, Mount, Port};
use super::{key_str, Project};

/// One merged service.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    /// `command` as a list (a string command is split on whitespace).
    pub command: Option<Vec<String>>,
    pub ports: Vec<Port>,
    pub volumes: Vec<Mount>,
    /// Network keys the service joins.
    pub networks: Vec<String>,
    /// `(service, condition)` pairs.
    pub depends_on: Vec<(String, String)>,
    /// Variables; `None` for a bare `KEY` (taken from the environment at run time).
    pub environment: BTreeMap<String, Option<String>>,
    pub healthcheck: Option<Healthcheck>,
    pub profiles: Vec<String>,
    /// The merged service mapping, for any key not typed above.
    pub raw: Value,
}

impl Service {
    pub(super) fn from_value(name: &str, v: &Value) -> Result<Service, String> {
        let str_list = |key: &str| -> Vec<String> {
            match v.get(key) {
                Some(Value::Sequence(items)) => items.iter().map(scalar_string).collect(),
                Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
                _ => Vec::new(),
            }
        };
        let keys = |key: &str| -> Vec<String> {
            v.get(key)
                .and_then(Value::as_mapping)
                .map(|m| m.keys().map(key_str).collect())
                .unwrap_or_default()
        };
        let ports = match v.get("ports") {
            Some(Value::Sequence(items)) => {
                items.iter().map(Port::parse).collect::<Result<_, _>>()?
            }
            _ => Vec::new(),
        };
        let volumes = match v.get("volumes") {
            Some(Value::Sequence(items)) => {
                items.iter().map(Mount::parse).collect::<Result<_, _>>()?
            }
            _ => Vec::new(),
        };
        let depends_on = v
            .get("depends_on")
            .and_then(Value::as_mapping)
            .map(|m| {
                m.iter()
                    .map(|(k, d)| {
                        let cond = d.get("condition").map(scalar_string);
                        (key_str(k), cond.unwrap_or_else(|| "service_started".into()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let environment = v
            .get("environment")
            .and_then(Value::as_mapping)
            .map(|m| {
                m.iter()
                    .map(|(k, val)| (key_str(k), (!val.is_null()).then(|| scalar_string(val))))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Service {
            name: name.to_string(),
            image: v.get("image").map(scalar_string),
            command: v.get("command").map(|_| str_list("command")),
            ports,
            volumes,
            networks: keys("networks"),
            depends_on,
            environment,
            healthcheck: v.get("healthcheck").and_then(Healthcheck::parse),
            profiles: str_list("profiles"),
            raw: v.clone(),
        })
    }

    /// The value of an environment variable set in the service (`None` when
    /// unset or bare).
    pub fn env(&self, key: &str) -> Option<&str> {
        self.environment.get(key)?.as_deref()
    }

    /// Whether the service has a healthcheck that is not disabled.
    pub fn has_healthcheck(&self) -> bool {
        self.healthcheck
            .as_ref()
            .is_some_and(|h| !h.disable && !h.test.is_empty())
    }
}

/// The model as `config` prints it (see [`Project::config`]).
pub(super) fn config(project: &Project) -> Value {
    let mut out = Mapping::new();
    if let Some(top) = project.model.as_mapping() {
        for (k, v) in top {
            let key = key_str(k);
            if key.starts_with("x-") {
                continue;
            }
            let mut v = v.clone();
            match key.as_str() {
                "services" => {
                    if let Some(services) = v.as_mapping_mut() {
                        let v1 = project.env.flavour == super::Flavour::V1;
                        for svc in services.values_mut() {
                            absolutise_as(svc, &project.dir, v1);
                        }
                    }
                }
                "secrets" | "configs" => {
                    if let Some(items) = v.as_mapping_mut() {
                        for item in items.values_mut() {
                            if let Some(Value::String(f)) = item.get_mut("file") {
                                *f = absolute(&project.dir, f);
                            }
                        }
                    }
                }
                _ => {}
            }
            out.insert(k.clone(), v);
        }
    }
    let mut out = Value::Mapping(out);
    escape_strings(&mut out);
    out
}

/// A build context that is a URL (git or http), kept as written.
pub fn is_url(ctx: &str) -> bool {
    [
        "http://",
        "https://",
        "git://",
        "git@",
        "ssh://",
        "github.com/",
    ]
    .iter()
    .any(|p| ctx.starts_with(p))
}

/// `~` or `~/x` with the home directory, as Compose expands bind sources.
fn expand_home(path: &str) -> String {
    match (path.strip_prefix('~'), std::env::var("HOME")) {
        (Some(rest), Ok(home)) if rest.is_empty() || rest.starts_with('/') => {
            format!("{home}{rest}")
        }
        _ => path.to_string(),
    }
}

/// A path without a trailing `/` (except `/` itself).
fn clean(p: &str) -> String {
    let t = p.trim_end_matches('/');
    if t.is_empty() && p.starts_with('/') {
        "/".into()
    } else {
        t.to_string()
    }
}

pub(super) fn absolutise_service(svc: &mut Value, dir: &Path) {
    absolutise_as(svc, dir, false)
}

fn absolutise_as(svc: &mut Value, dir: &Path, v1: bool) {
    if let Some(Value::Sequence(volumes)) = svc.get_mut("volumes") {
        for v in volumes {
            match v {
                Value::String(s) => {
                    if let Some((src, rest)) = s.split_once(':') {
                        // Compose cleans the target path; v1 also the source.
                        let (target, mode) = rest.split_once(':').unwrap_or((rest, ""));
                        let target = clean(target);
                        let mode = if mode.is_empty() {
                            String::new()
                        } else {
                            format!(":{mode}")
                        };
                        if src.is_empty() {
                            *s = format!(".:{target}{mode}");
                        } else if is_host_path(src) {
                            let src = absolute(dir, &expand_home(src));
                            let src = if v1 { clean(&src) } else { src };
                            *s = format!("{src}:{target}{mode}");
                        } else {
                            *s = format!("{src}:{target}{mode}");
                        }
                    }
                }
                Value::Mapping(m) if m.get("type").and_then(Value::as_str) == Some("bind") => {
                    if let Some(Value::String(src)) = m.get_mut("source") {
                        *src = absolute(dir, &expand_home(src));
                    }
                }
                _ => {}
            }
        }
    }
    match svc.get_mut("build") {
        Some(Value::String(ctx)) if !is_url(ctx) => *ctx = absolute(dir, ctx),
        Some(Value::Mapping(b)) => {
            if let Some(Value::String(ctx)) = b.get_mut("context") {
                if !is_url(ctx) {
                    *ctx = absolute(dir, ctx);
                }
            }
        }
        _ => {}
    }
}

/// `rel` resolved against `dir`, lexically (`./a/../b` -> `dir/b`).
pub fn absolute(dir: &Path, rel: &str) -> String {
    if rel.starts_with('~') || Path::new(rel).is_absolute() {
        return rel.to_string();
    }
    let base = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(dir)
    };
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.display().to_string()
}

fn escape_strings(v: &mut Value) {
    match v {
        Value::String(s) if s.contains('$') => *s = escape(s),
        Value::Sequence(items) => items.iter_mut().for_each(escape_strings),
        // Compose escapes `$` in keys too (labels, environment names).
        Value::Mapping(m) => {
            let escaped: serde_yaml::Mapping = std::mem::take(m)
                .into_iter()
                .map(|(k, mut v)| {
                    escape_strings(&mut v);
                    let k = match k {
                        Value::String(s) if s.contains('$') => Value::String(escape(&s)),
                        k => k,
                    };
                    (k, v)
                })
                .collect();
            *m = escaped;
        }
        Value::Tagged(t) => escape_strings(&mut t.value),
        _ => {}
    }
}
