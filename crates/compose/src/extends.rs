//! `extends`: a service takes another service (of the same file, or of
//! `file:` relative to the extending file) as its base, and its own keys
//! merge over the base by the same rules as a later `-f` file. Chains are
//! followed up to [`MAX_CHAIN`] links and a cycle is named with its path.
//! A base from another directory has its relative paths (build context,
//! bind sources, `env_file`) made absolute against that directory. Under
//! Compose v1, a base with `links`, `volumes_from` or `network_mode:
//! service:` cannot be extended, as v1 enforces.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::env::{EnvSource, Flavour};
use super::lines::Seg;
use super::read::MAX_CHAIN;
use super::{key_str, merge};

type Invalid = (Vec<Seg>, String);

/// Other files `extends` reads, loaded (interpolated, normalised) once.
struct Files<'a> {
    env: &'a EnvSource,
    loaded: HashMap<PathBuf, Value>,
}

impl Files<'_> {
    /// Whether `path` is in the version 1 format (services at the top level).
    fn legacy(&self, path: &Path) -> Result<bool, String> {
        let text = super::read::read_text(path).map_err(|e| e.to_string())?;
        let v: Value = serde_yaml::from_str(&text).unwrap_or(Value::Null);
        Ok(v.get("services").is_none() && v.get("version").is_none())
    }

    fn services(&mut self, path: &Path) -> Result<&Mapping, String> {
        if !self.loaded.contains_key(path) {
            let text = super::read::read_text(path).map_err(|e| e.to_string())?;
            let mut v: Value = serde_yaml::from_str(&text)
                .map_err(|e| format!("{}: invalid YAML: {e}", path.display()))?;
            v.apply_merge().map_err(|e| e.to_string())?;
            super::interpolate::interpolate_value(&mut v, self.env, &mut Vec::new())
                .map_err(|(_, e)| format!("{}: {e}", path.display()))?;
            super::merge::normalise_file(&mut v, self.env.flavour)
                .map_err(|(_, e)| format!("{}: {e}", path.display()))?;
            self.loaded.insert(path.to_path_buf(), v);
        }
        self.loaded[path]
            .get("services")
            .and_then(Value::as_mapping)
            .ok_or_else(|| format!("{} has no services", path.display()))
    }
}

/// Resolve every `extends` of the (interpolated, normalised) `model` of `file`.
pub fn resolve(model: &mut Value, file: &Path, env: &EnvSource) -> Result<(), Invalid> {
    let has_extends = model
        .get("services")
        .and_then(Value::as_mapping)
        .is_some_and(|m| m.values().any(|s| s.get("extends").is_some()));
    if !has_extends {
        return Ok(());
    }
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    let mut files = Files {
        env,
        loaded: HashMap::new(),
    };
    files.loaded.insert(file.clone(), model.clone());
    let names: Vec<String> = model["services"]
        .as_mapping()
        .map(|m| m.keys().map(key_str).collect())
        .unwrap_or_default();
    for name in names {
        let at = vec![
            Seg::key("services"),
            Seg::Key(name.clone()),
            Seg::key("extends"),
        ];
        if model["services"][name.as_str()].get("extends").is_none() {
            continue;
        }
        let resolved = resolve_one(&mut files, &file, &name, &mut Vec::new(), env.flavour)
            .map_err(|m| (at, m))?;
        model["services"][name.as_str()] = resolved;
    }
    Ok(())
}

fn resolve_one(
    files: &mut Files,
    file: &Path,
    name: &str,
    chain: &mut Vec<String>,
    flavour: Flavour,
) -> Result<Value, String> {
    let link = format!("{}:{name}", file.display());
    if chain.contains(&link) {
        chain.push(link);
        return Err(format!("extends cycle: {}", chain.join(" -> ")));
    }
    if chain.len() >= MAX_CHAIN {
        return Err(format!("extends chain longer than {MAX_CHAIN} services"));
    }
    chain.push(link);
    let mut svc = files.services(file)?.get(name).cloned().ok_or_else(|| {
        format!(
            "cannot extend service `{name}`: {} has no such service",
            file.display()
        )
    })?;
    let Some(ext) = svc.as_mapping_mut().and_then(|m| m.remove("extends")) else {
        chain.pop();
        return Ok(svc);
    };
    let (base_name, base_file) = match &ext {
        Value::String(s) => (s.clone(), None),
        Value::Mapping(m) => (
            m.get("service")
                .and_then(Value::as_str)
                .ok_or("`extends` needs `service:`")?
                .to_string(),
            m.get("file").and_then(Value::as_str).map(str::to_string),
        ),
        _ => return Err("`extends` must be a service name or {service, file}".into()),
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    let base_path = match base_file {
        Some(f) => dir.join(f),
        None => file.to_path_buf(),
    };
    if flavour == Flavour::V1
        && base_path != file
        && files.legacy(&base_path)? != files.legacy(file)?
    {
        return Err(format!(
            "cannot extend `{base_name}` from {}: v1 refuses extends between the version 1 format and later formats",
            base_path.display()
        ));
    }
    let mut base = resolve_one(files, &base_path, &base_name, chain, flavour)?;
    if flavour == Flavour::V1 {
        let links = ["links", "volumes_from"]
            .iter()
            .any(|k| base.get(k).is_some())
            || base
                .get("network_mode")
                .and_then(Value::as_str)
                .is_some_and(|m| m.starts_with("service:"));
        if links {
            return Err(format!("cannot extend service `{base_name}`: services with `links`, `volumes_from` or `network_mode: service:` cannot be extended (Compose v1)"));
        }
    }
    let base_dir = base_path.parent().unwrap_or(Path::new("."));
    if base_dir != dir {
        rebase(&mut base, base_dir);
    }
    let mut wrapped = Value::Mapping(Mapping::new());
    wrapped["services"] = Value::Mapping(Mapping::new());
    wrapped["services"][name] = base;
    let mut over = Value::Mapping(Mapping::new());
    over["services"] = Value::Mapping(Mapping::new());
    over["services"][name] = svc;
    merge::merge(&mut wrapped, over, &mut Vec::new());
    chain.pop();
    Ok(wrapped["services"][name].clone())
}

/// Make the relative paths of a service from `dir` absolute.
fn rebase(svc: &mut Value, dir: &Path) {
    let abs = |s: &str| super::service::absolute(dir, s);
    match svc.get_mut("build") {
        Some(Value::String(ctx)) if !super::service::is_url(ctx) => *ctx = abs(ctx),
        Some(Value::Mapping(b)) => {
            if let Some(Value::String(ctx)) = b.get_mut("context") {
                if !super::service::is_url(ctx) {
                    *ctx = abs(ctx);
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Sequence(items)) = svc.get_mut("env_file") {
        for item in items {
            match item {
                Value::String(p) => *p = abs(p),
                Value::Mapping(m) => {
                    if let Some(Value::String(p)) = m.get_mut("path") {
                        *p = abs(p);
                    }
                }
                _ => {}
            }
        }
    }
    if let Some(Value::Sequence(volumes)) = svc.get_mut("volumes") {
        for v in volumes {
            if let Value::String(s) = v {
                if let Some((src, rest)) = s.split_once(':') {
                    if src.starts_with('.') {
                        *s = format!("{}:{rest}", abs(src));
                    }
                }
            }
        }
    }
}
