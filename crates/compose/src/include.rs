//! Compose v2's `include`: each entry (`path`, a list of paths, or
//! `{path, project_directory, env_file}`) is loaded as a project of its own,
//! with its own directory and `.env`, and its services, networks, volumes,
//! secrets and configs join the including file; a service defined on both
//! sides is an error, as in v2. Nesting is bounded by [`MAX_CHAIN`], which
//! also ends include cycles. Compose v1 refuses the key (see `validate`).

use std::cell::Cell;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

use super::env::EnvSource;
use super::lines::Seg;
use super::read::MAX_CHAIN;
use super::{key_str, Project};

type Invalid = (Vec<Seg>, String);

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// Replace `include` in `model` (of `file`) by what it includes.
pub fn resolve(model: &mut Value, file: &Path, env: &EnvSource) -> Result<(), Invalid> {
    let Some(entries) = model.as_mapping_mut().and_then(|m| m.remove("include")) else {
        return Ok(());
    };
    let at = || vec![Seg::key("include")];
    let dir = file.parent().unwrap_or(Path::new("."));
    let entries = match entries {
        Value::Sequence(items) => items,
        Value::Null => Vec::new(),
        other => vec![other],
    };
    for entry in entries {
        let (paths, project_dir, env_files) = match &entry {
            Value::String(p) => (vec![p.clone()], None, Vec::new()),
            Value::Mapping(m) => {
                let list = |k: &str| -> Vec<String> {
                    match m.get(k) {
                        Some(Value::String(s)) => vec![s.clone()],
                        Some(Value::Sequence(items)) => items.iter().map(key_str).collect(),
                        _ => Vec::new(),
                    }
                };
                let project_dir = m
                    .get("project_directory")
                    .and_then(Value::as_str)
                    .map(|d| dir.join(d));
                (list("path"), project_dir, list("env_file"))
            }
            _ => {
                return Err((
                    at(),
                    "an `include` entry must be a path or a mapping".into(),
                ))
            }
        };
        if paths.is_empty() {
            return Err((at(), "an `include` entry needs `path`".into()));
        }
        let files: Vec<PathBuf> = paths.iter().map(|p| dir.join(p)).collect();
        let inc_dir = project_dir
            .unwrap_or_else(|| files[0].parent().map(Path::to_path_buf).unwrap_or_default());
        let mut inc_env = env.clone();
        let dot_env = inc_dir.join(".env");
        for f in env_files
            .iter()
            .map(|f| dir.join(f))
            .chain(Some(dot_env).filter(|p| p.is_file()))
        {
            inc_env.load_file(&f).map_err(|e| (at(), e.to_string()))?;
        }
        if DEPTH.get() >= MAX_CHAIN {
            return Err((
                at(),
                format!("includes nested more than {MAX_CHAIN} levels deep (an include cycle?)"),
            ));
        }
        DEPTH.set(DEPTH.get() + 1);
        let loaded = Project::load(&files, &inc_env);
        DEPTH.set(DEPTH.get() - 1);
        let included = loaded.map_err(|e| (at(), format!("included {e}")))?;
        let mut inc_model = included.model().clone();
        if let Some(Value::Mapping(services)) = inc_model.get_mut("services") {
            for svc in services.values_mut() {
                super::service::absolutise_service(svc, &inc_dir);
            }
        }
        let Some(inc_map) = inc_model.as_mapping() else {
            continue;
        };
        let root = model.as_mapping_mut().expect("a compose file is a mapping");
        for section in ["services", "networks", "volumes", "secrets", "configs"] {
            let Some(Value::Mapping(theirs)) = inc_map.get(section) else {
                continue;
            };
            let ours = root
                .entry(section.into())
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if ours.is_null() {
                *ours = Value::Mapping(Mapping::new());
            }
            let Some(ours) = ours.as_mapping_mut() else {
                continue;
            };
            for (k, v) in theirs {
                if ours.contains_key(k) {
                    if section == "services" {
                        return Err((
                            at(),
                            format!(
                                "service `{}` is defined here and in included {}",
                                key_str(k),
                                files[0].display()
                            ),
                        ));
                    }
                    continue;
                }
                ours.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}
