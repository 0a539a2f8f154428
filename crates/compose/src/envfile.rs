//! A service's `env_file`s read into its `environment`, as both Compose
//! versions do it: the files in order (later ones win), then the service's
//! own `environment` over them; relative paths resolve against the project
//! directory; a missing file is an error unless v2's long form says
//! `required: false` (v1 knows only the list of paths). v2 interpolates the
//! values with the project's variables; v1 keeps them literal. A bare
//! `KEY` in `environment` takes its value from the variables, or stays
//! unset when there is none.

use std::path::Path;

use serde_yaml::{Mapping, Value};

use super::env::{EnvSource, Flavour};
use super::lines::Seg;

type Invalid = (Vec<Seg>, String);

/// Apply `env_file` and bare keys to every service of the merged `model`.
pub fn apply(model: &mut Value, dir: &Path, env: &EnvSource) -> Result<(), Invalid> {
    let Some(services) = model.get_mut("services").and_then(Value::as_mapping_mut) else {
        return Ok(());
    };
    for (name, svc) in services.iter_mut() {
        let name = super::key_str(name);
        let at = || {
            vec![
                Seg::key("services"),
                Seg::Key(name.clone()),
                Seg::key("env_file"),
            ]
        };
        let Some(svc) = svc.as_mapping_mut() else {
            continue;
        };
        let mut merged = Mapping::new();
        if let Some(files) = svc.remove("env_file") {
            let items = match files {
                Value::Sequence(items) => items,
                Value::Null => Vec::new(),
                other => vec![other],
            };
            for item in items {
                let (path, required) = match &item {
                    Value::String(p) => (p.clone(), true),
                    Value::Mapping(m) if env.flavour == Flavour::V2 => (
                        m.get("path").and_then(Value::as_str).unwrap_or_default().to_string(),
                        m.get("required").and_then(Value::as_bool).unwrap_or(true),
                    ),
                    Value::Mapping(_) => {
                        return Err((at(), "`env_file` with `path:`/`required:` is Compose v2 syntax, which docker-compose v1 rejects".into()))
                    }
                    _ => return Err((at(), "an `env_file` entry must be a path".into())),
                };
                let full = dir.join(&path);
                if !full.is_file() && !required {
                    continue;
                }
                let text = super::read::read_env_text(&full).map_err(|e| {
                    (
                        at(),
                        format!("env_file `{path}` of service `{name}`: {}", e.message),
                    )
                })?;
                let vars = if env.flavour == Flavour::V2 {
                    env.read_vars(&full, &text)
                        .map_err(|e| (at(), e.to_string()))?
                } else {
                    // v1 expands only `${...}`, from the process environment
                    // and the lines above, not from the project's `.env`.
                    EnvSource::with_process_env(None)
                        .unwrap_or_default()
                        .with_flavour(Flavour::V1)
                        .read_vars(&full, &braced_only(&text))
                        .map_err(|e| (at(), e.to_string()))?
                };
                for (k, v) in vars {
                    merged.insert(Value::String(k), Value::String(v));
                }
            }
        }
        let own = svc.remove("environment");
        if let Some(Value::Mapping(own)) = own {
            for (k, v) in own {
                merged.insert(k, v);
            }
        }
        for (k, v) in merged.iter_mut() {
            if v.is_null() {
                if let Some(found) = env.get(&super::key_str(k)) {
                    *v = Value::String(found.to_string());
                }
            }
        }
        if !merged.is_empty() {
            svc.insert("environment".into(), Value::Mapping(merged));
        }
    }
    Ok(())
}

/// `$` not followed by `{` escaped as `$$`, so only `${...}` expands.
fn braced_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '$' && chars.peek() != Some(&'{') {
            out.push('$');
        }
    }
    out
}
