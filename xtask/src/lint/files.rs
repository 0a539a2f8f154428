//! Rules judged file by file rather than on the merged model, so a defect is
//! reported where it is written even when a later file overrides it: unpinned
//! images, literal secrets (on the raw, uninterpolated text), and a service
//! an overlay redefines in full (its own `image:`) instead of extending.

use std::sync::Arc;

use serde_yaml::Value;

use super::rules::image_repository;
use super::Finding;
use crate::compose::types::scalar_string;
use crate::compose::{key_str, Location, Project, Seg, SourceFile};
/// A key that names a secret (PASSWORD, SECRET, TOKEN or KEY, not `*_FILE`):
/// the same test that decides which `.env` values are generated.
use crate::dotenv::is_secret_key;

pub fn run(project: &Project, out: &mut Vec<Finding>) {
    let built: std::collections::HashSet<&str> = project
        .services()
        .iter()
        .filter(|s| s.raw.get("build").is_some())
        .map(|s| s.name.as_str())
        .collect();
    for (i, file) in project.files.iter().enumerate() {
        image_tags(&built, file, out);
        literal_secrets(file, out);
        redefinitions(&project.files[..i], file, out);
    }
}

fn services(v: &Value) -> impl Iterator<Item = (String, &Value)> {
    v.get("services")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .map(|(k, v)| (key_str(k), v))
}

fn location(file: &SourceFile, path: &[Seg]) -> Option<Location> {
    Some(Location {
        file: file.path.clone(),
        line: file.lines().nearest_line(path),
    })
}

fn service_path(name: &str, rest: &[&str]) -> Vec<Seg> {
    let mut path = vec![Seg::key("services"), Seg::key(name)];
    path.extend(rest.iter().map(|k| Seg::key(k)));
    path
}

/// A tag with no `.` version (`15`, `v2-alpine`, `stable`) moves with new
/// releases; a git-sha-like hex tag of 7+ characters is pinned.
fn is_floating_tag(tag: &str) -> bool {
    let hex = tag.len() >= 7 && tag.bytes().all(|b| b.is_ascii_hexdigit());
    !tag.contains('.') && !hex
}

/// Image tags; skipped where `image:` names what `build:` produces.
fn image_tags(built: &std::collections::HashSet<&str>, file: &SourceFile, out: &mut Vec<Finding>) {
    for (name, svc) in services(&file.model) {
        let Some(image) = svc.get("image").map(scalar_string) else {
            continue;
        };
        if built.contains(name.as_str()) {
            continue;
        }
        if image.contains('@') {
            continue;
        }
        let tag = image
            .get(image_repository(&image).len() + 1..)
            .unwrap_or("");
        let at = || location(file, &service_path(&name, &["image"]));
        let problem = match tag {
            "" => "has no tag (it means `latest`)",
            "latest" => "uses the moving tag `latest`",
            _ if is_floating_tag(tag) => {
                out.push(Finding::warning(
                    "floating-tag",
                    at(),
                    format!("service `{name}` image `{image}` has a tag without a full version"),
                    "pin the full version, e.g. `15.8-alpine` instead of `15-alpine`",
                ));
                continue;
            }
            _ => continue,
        };
        out.push(Finding::error(
            "unpinned-image",
            at(),
            format!("service `{name}` image `{image}` {problem}"),
            "pin a version tag or a digest, e.g. `name:1.2.3` or `name@sha256:...`",
        ));
    }
}

/// `scheme://user:password@host` with a literal password (a `${VAR:-x}`
/// expression counts as a variable, its `:` as no separator).
pub(super) fn url_with_literal_password(value: &str) -> bool {
    let mut masked = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("${") {
        masked.push_str(&rest[..i]);
        masked.push_str("$V");
        rest = rest[i..].find('}').map_or("", |j| &rest[i + j + 1..]);
    }
    masked.push_str(rest);
    let Some((_, rest)) = masked.split_once("://") else {
        return false;
    };
    let Some((userinfo, _)) = rest.split_once('@') else {
        return false;
    };
    // `${USER:-fog}` is a variable with a default, not `user:password`.
    let user_end = match userinfo.strip_prefix("${") {
        Some(var) => var.find('}').map_or(0, |i| i + 3),
        None => 0,
    };
    let after = &userinfo[user_end..];
    matches!(after.split_once(':'), Some((_, pw)) if !pw.is_empty() && !pw.contains('$'))
}

/// Settings named like secrets that hold none: switches such as
/// `MYSQL_ALLOW_EMPTY_PASSWORD=yes` or `MYSQL_RANDOM_ROOT_PASSWORD=1`.
fn is_flag(key: &str, value: &str) -> bool {
    const SWITCH: &[&str] = &[
        "yes", "no", "true", "false", "on", "off", "1", "0", "y", "n",
    ];
    const FLAG_WORDS: &[&str] = &[
        "ALLOW_EMPTY",
        "RANDOM",
        "GENERATE",
        "ONETIME",
        "_ENABLED",
        "_DISABLED",
        "REQUIRE",
    ];
    let key = key.to_ascii_uppercase();
    SWITCH.contains(&value.to_ascii_lowercase().as_str())
        || FLAG_WORDS.iter().any(|w| key.contains(w))
}

fn literal_secrets(file: &SourceFile, out: &mut Vec<Finding>) {
    for (name, svc) in services(&file.raw) {
        let pairs: Vec<(String, String, Seg)> = match svc.get("environment") {
            Some(Value::Mapping(m)) => m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (key_str(k), scalar_string(v), Seg::Key(key_str(k))))
                .collect(),
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| {
                    let s = scalar_string(item);
                    let (k, v) = s.split_once('=')?;
                    Some((k.to_string(), v.to_string(), Seg::Index(i)))
                })
                .collect(),
            _ => continue,
        };
        for (key, value, seg) in pairs {
            let is_path = value.starts_with('/') || value.starts_with("./");
            if is_flag(&key, &value) {
                continue;
            }
            let named_secret =
                is_secret_key(&key) && !value.is_empty() && !value.contains('$') && !is_path;
            let why = if named_secret {
                format!("service `{name}` sets `{key}` to a literal value in the file")
            } else if url_with_literal_password(&value) {
                format!("service `{name}` puts a literal password in the URL of `{key}`")
            } else {
                continue;
            };
            let mut path = service_path(&name, &["environment"]);
            path.push(seg);
            out.push(Finding::error(
                "literal-secret",
                location(file, &path),
                why,
                &format!(
                    "take it from the environment (`{key}: ${{{key}:?set {key}}}` with the value in your .env) or use a `{key}_FILE` secret"
                ),
            ));
        }
    }
}

fn redefinitions(earlier: &[Arc<SourceFile>], file: &SourceFile, out: &mut Vec<Finding>) {
    for (name, svc) in services(&file.model) {
        let Some(image) = svc.get("image").map(scalar_string) else {
            continue;
        };
        let first = earlier.iter().find_map(|f| {
            let prev = f.model.get("services")?.get(name.as_str())?.get("image")?;
            Some((f, scalar_string(prev)))
        });
        let Some((first_file, first_image)) = first else {
            continue;
        };
        // Changing the tag (or the same image) is what overrides are for.
        if image_repository(&first_image) == image_repository(&image) {
            continue;
        }
        let first_at = first_file.lines().nearest_line(&service_path(&name, &[]));
        out.push(Finding::warning(
            "redefined-service",
            location(file, &service_path(&name, &[])),
            format!(
                "`{name}` is defined again with its own image `{image}`; {}:{} already runs `{first_image}`",
                first_file.path.display(),
                first_at.unwrap_or(0)
            ),
            &format!("if `{name}` is meant to be a different service, give it its own name"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_urls() {
        // Secret keys are dotenv's `is_secret_key`, tested there.
        assert!(is_floating_tag("15-alpine") && is_floating_tag("stable"));
        assert!(!is_floating_tag("15.8-alpine") && !is_floating_tag("3f2a9c1"));
        assert!(url_with_literal_password("postgres://fog:pw@db:5432/fog"));
        assert!(!url_with_literal_password("postgres://fog:${PW}@db/fog"));
        assert!(!url_with_literal_password(
            "postgres://${U:-fog}@db/${D:-fog}"
        ));
        assert!(url_with_literal_password("postgres://${U:-fog}:pw@db/fog"));
        assert!(!url_with_literal_password("http://mixnode-1:8080"));
        assert!(!url_with_literal_password("postgres://${U:-fog}@db/fog"));
        assert!(url_with_literal_password("postgres://${U:-fog}:pw@db/fog"));
    }
}
