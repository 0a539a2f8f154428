//! What Compose refuses, checked natively: keys outside the compose-spec
//! (top level and service level, `x-` extensions allowed), syntax only one
//! Compose version knows (`include`, top-level `name`, `develop`, the
//! `!reset`/`!override` tags are v2-only; v1 refuses them by name), services
//! with neither `image` nor `build`, and `depends_on` on an undefined service,
//! on itself, or in a cycle (named with its path). The key sets are written
//! out from the compose-spec schema.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use super::env::Flavour;
use super::key_str;
use super::lines::Seg;

/// A validation error: where, and what is wrong there.
pub type Invalid = (Vec<Seg>, String);

const TOP: &[&str] = &[
    "version", "services", "networks", "volumes", "secrets", "configs", "name", "include", "models",
];
const TOP_V2_ONLY: &[&str] = &["name", "include", "models"];

const SERVICE: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cap_add",
    "cap_drop",
    "cgroup",
    "cgroup_parent",
    "command",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpus",
    "cpuset",
    "credential_spec",
    "depends_on",
    "deploy",
    "develop",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "entrypoint",
    "env_file",
    "environment",
    "expose",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "healthcheck",
    "hostname",
    "image",
    "init",
    "ipc",
    "isolation",
    "label_file",
    "labels",
    "links",
    "logging",
    "mac_address",
    "mem_limit",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "network_mode",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "pids_limit",
    "platform",
    "ports",
    "post_start",
    "pre_stop",
    "privileged",
    "profiles",
    "provider",
    "pull_policy",
    "read_only",
    "restart",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "storage_opt",
    "sysctls",
    "tmpfs",
    "tty",
    "ulimits",
    "use_api_socket",
    "user",
    "userns_mode",
    "uts",
    "volumes",
    "volumes_from",
    "working_dir",
];
const SERVICE_V2_ONLY: &[&str] = &[
    "annotations",
    "attach",
    "develop",
    "gpus",
    "label_file",
    "models",
    "post_start",
    "pre_stop",
    "provider",
    "use_api_socket",
];

fn v1_refuses(what: &str) -> String {
    format!("{what} is Compose v2 syntax, which docker-compose v1 rejects; use `docker compose` (v2) or remove it")
}

/// Keys and tags of one parsed (not yet interpolated) file.
pub fn check_file(raw: &Value, flavour: Flavour) -> Result<(), Invalid> {
    let Some(top) = raw.as_mapping() else {
        return Err((
            Vec::new(),
            "a compose file must be a mapping of top-level keys".into(),
        ));
    };
    if let Some(v) = top.get("version") {
        if !v.is_string() {
            return Err((
                vec![Seg::key("version")],
                "`version` must be a string, e.g. \"3.8\" (Compose ignores it)".into(),
            ));
        }
    }
    let legacy =
        flavour == Flavour::V1 && !top.contains_key("services") && !top.contains_key("version");
    for k in top.keys().filter(|_| !legacy) {
        let key = key_str(k);
        if key.starts_with("x-") {
            continue;
        }
        if !TOP.contains(&key.as_str()) {
            return Err((
                vec![Seg::Key(key.clone())],
                format!(
                    "unknown top-level key `{key}`; the compose-spec allows {}",
                    TOP.join(", ")
                ),
            ));
        }
        if flavour == Flavour::V1 && TOP_V2_ONLY.contains(&key.as_str()) {
            return Err((
                vec![Seg::Key(key.clone())],
                v1_refuses(&format!("top-level `{key}`")),
            ));
        }
    }
    if let Some(Value::Mapping(services)) = top.get("services") {
        for (name, svc) in services {
            let name = key_str(name);
            let Some(svc) = svc.as_mapping() else {
                continue;
            };
            for k in svc.keys() {
                let key = key_str(k);
                let at = || {
                    vec![
                        Seg::key("services"),
                        Seg::Key(name.clone()),
                        Seg::Key(key.clone()),
                    ]
                };
                if key.starts_with("x-") {
                    continue;
                }
                if !(SERVICE.contains(&key.as_str()) || flavour == Flavour::V1 && key == "net") {
                    return Err((
                        at(),
                        format!(
                            "service `{name}` has unknown key `{key}` (not in the compose-spec)"
                        ),
                    ));
                }
                if flavour == Flavour::V1 && SERVICE_V2_ONLY.contains(&key.as_str()) {
                    return Err((at(), v1_refuses(&format!("`{key}`"))));
                }
            }
        }
    }
    check_tags(raw, flavour)
}

/// `!reset` and `!override` are v2 merge tags; any other tag is refused.
fn check_tags(raw: &Value, flavour: Flavour) -> Result<(), Invalid> {
    let mut stack: Vec<(Vec<Seg>, &Value)> = vec![(Vec::new(), raw)];
    while let Some((at, v)) = stack.pop() {
        match v {
            Value::Tagged(t) => {
                let tag = t.tag.to_string();
                let name = tag.trim_start_matches('!');
                if name != "reset" && name != "override" {
                    return Err((
                        at,
                        format!(
                            "unknown YAML tag `{tag}`; Compose knows only !reset and !override"
                        ),
                    ));
                }
                if flavour == Flavour::V1 {
                    return Err((at, v1_refuses(&format!("the `{tag}` tag"))));
                }
                stack.push((at, &t.value));
            }
            Value::Mapping(m) => {
                for (k, v) in m {
                    let mut p = at.clone();
                    p.push(Seg::Key(key_str(k)));
                    stack.push((p, v));
                }
            }
            Value::Sequence(items) => {
                for (i, v) in items.iter().enumerate() {
                    let mut p = at.clone();
                    p.push(Seg::Index(i));
                    stack.push((p, v));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Dependencies v2 adds for `links`, `volumes_from` and `network_mode:
/// service:` (so they must exist); v1 prints none.
pub fn imply_dependencies(model: &mut Value, flavour: Flavour) {
    if flavour != Flavour::V2 {
        return;
    }
    let Some(services) = model.get_mut("services").and_then(Value::as_mapping_mut) else {
        return;
    };
    for svc in services.values_mut() {
        let Some(svc) = svc.as_mapping_mut() else {
            continue;
        };
        let mut implied = Vec::new();
        let list = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_sequence)
                .map(|s| s.iter().map(key_str).collect())
                .unwrap_or_default()
        };
        for link in list(svc.get("links")) {
            implied.push(link.split(':').next().unwrap_or_default().to_string());
        }
        for from in list(svc.get("volumes_from")) {
            if !from.starts_with("container:") {
                implied.push(from.split(':').next().unwrap_or_default().to_string());
            }
        }
        if let Some(dep) = svc
            .get("network_mode")
            .and_then(Value::as_str)
            .and_then(|m| m.strip_prefix("service:"))
        {
            implied.push(dep.to_string());
        }
        if implied.is_empty() {
            continue;
        }
        let deps = svc
            .entry("depends_on".into())
            .or_insert_with(|| Value::Mapping(Default::default()));
        if let Some(deps) = deps.as_mapping_mut() {
            for dep in implied {
                deps.entry(dep.into()).or_insert_with(|| {
                    let mut m = serde_yaml::Mapping::new();
                    m.insert("condition".into(), "service_started".into());
                    Value::Mapping(m)
                });
            }
        }
    }
}

/// v1 refuses a local build context that does not exist (v2 checks at build time).
pub fn check_build_paths(
    model: &Value,
    dir: &std::path::Path,
    flavour: Flavour,
) -> Result<(), Invalid> {
    if flavour != Flavour::V1 {
        return Ok(());
    }
    let Some(services) = model.get("services").and_then(Value::as_mapping) else {
        return Ok(());
    };
    for (name, svc) in services {
        let ctx = match svc.get("build") {
            Some(Value::String(c)) => c.clone(),
            Some(Value::Mapping(b)) => b.get("context").map(key_str).unwrap_or_else(|| ".".into()),
            _ => continue,
        };
        if super::service::is_url(&ctx) || dir.join(&ctx).is_dir() {
            continue;
        }
        let name = key_str(name);
        return Err((
            vec![
                Seg::key("services"),
                Seg::Key(name.clone()),
                Seg::key("build"),
            ],
            format!(
                "service `{name}`: build context `{ctx}` does not exist (Compose v1 checks it)"
            ),
        ));
    }
    Ok(())
}

/// Rules on the merged services: an image or a build, and dependencies that
/// exist and form no cycle.
pub fn check_services(model: &Value, flavour: Flavour) -> Result<(), Invalid> {
    let Some(services) = model.get("services").and_then(Value::as_mapping) else {
        return Ok(());
    };
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, svc) in services {
        let name = key_str(name);
        let at = || vec![Seg::key("services"), Seg::Key(name.clone())];
        let has = |k: &str| {
            svc.get(k)
                .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
        };
        if !has("image") && !has("build") {
            return Err((at(), format!("service `{name}` has neither an image nor a build context; add `image:` or `build:`")));
        }
        let mut list = Vec::new();
        if let Some(Value::Mapping(d)) = svc.get("depends_on") {
            for (dep, spec) in d {
                let dep = key_str(dep);
                let required = spec
                    .get("required")
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if flavour == Flavour::V1 && spec.get("required").is_some() {
                    return Err((at(), v1_refuses("`depends_on` with `required:`")));
                }
                if dep == name {
                    return Err((at(), format!("service `{name}` depends on itself")));
                }
                // An undefined dependency is left to `check`'s undefined-dependency rule.
                let _ = required;
                if !services.contains_key(dep.as_str()) {
                    continue;
                }
                list.push(dep);
            }
        }
        deps.insert(name, list);
    }
    if let Some(cycle) = find_cycle(&deps) {
        let at = vec![
            Seg::key("services"),
            Seg::Key(cycle[0].clone()),
            Seg::key("depends_on"),
        ];
        return Err((at, format!("dependency cycle: {}", cycle.join(" -> "))));
    }
    Ok(())
}

/// A required `depends_on` on a service no file defines, as Compose
/// refuses it. Kept apart from [`check_services`] so `check` can report it
/// as its own finding (naming the overlay to add) while `config` refuses.
pub fn undefined_dependency(model: &Value) -> Result<(), Invalid> {
    let Some(services) = model.get("services").and_then(Value::as_mapping) else {
        return Ok(());
    };
    for (name, svc) in services {
        let Some(Value::Mapping(deps)) = svc.get("depends_on") else {
            continue;
        };
        for (dep, spec) in deps {
            let required = spec
                .get("required")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            if required && !services.contains_key(dep) {
                let (name, dep) = (key_str(name), key_str(dep));
                let at = vec![
                    Seg::key("services"),
                    Seg::Key(name.clone()),
                    Seg::key("depends_on"),
                    Seg::Key(dep.clone()),
                ];
                return Err((
                    at,
                    format!("service `{name}` depends on undefined service `{dep}`"),
                ));
            }
        }
    }
    Ok(())
}

/// The first cycle in `deps` as a path that ends where it starts
/// (iterative depth-first search, so long chains cannot overflow the stack).
fn find_cycle(deps: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    for start in deps.keys() {
        if done.contains(start.as_str()) {
            continue;
        }
        // (node, index of the next child to visit)
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        while let Some((node, next)) = path.last_mut() {
            let children = deps.get(*node).map(Vec::as_slice).unwrap_or_default();
            if let Some(child) = children.get(*next) {
                *next += 1;
                let child = child.as_str();
                if let Some(i) = path.iter().position(|(n, _)| *n == child) {
                    let mut cycle: Vec<String> =
                        path[i..].iter().map(|(n, _)| n.to_string()).collect();
                    cycle.push(child.to_string());
                    return Some(cycle);
                }
                if !done.contains(child) {
                    path.push((child, 0));
                }
            } else {
                done.insert(node);
                path.pop();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn unknown_and_v2_only_keys() {
        let (at, msg) = check_file(
            &yaml("services: {a: {image: x, wrongField: 1}}"),
            Flavour::V2,
        )
        .unwrap_err();
        assert_eq!(
            super::super::lines::display_path(&at),
            "services.a.wrongField"
        );
        assert!(msg.contains("wrongField"), "{msg}");
        assert!(check_file(
            &yaml("name: p\nservices: {a: {image: x, develop: {}}}"),
            Flavour::V2
        )
        .is_ok());
        let (_, msg) = check_file(&yaml("name: p\nservices: {}"), Flavour::V1).unwrap_err();
        assert!(msg.contains("v2") && msg.contains("name"), "{msg}");
        let (_, msg) = check_file(
            &yaml("services: {a: {image: x, ports: !reset []}}"),
            Flavour::V1,
        )
        .unwrap_err();
        assert!(msg.contains("!reset"), "{msg}");
        assert!(check_file(&yaml("services: {a: {image: !foo x}}"), Flavour::V2).is_err());
        assert!(check_file(
            &yaml("x-any: 1\nservices: {a: {image: x, x-y: 2}}"),
            Flavour::V1
        )
        .is_ok());
    }

    fn check_services_v2(v: &Value) -> Result<(), Invalid> {
        check_services(v, Flavour::V2)
    }

    #[test]
    fn cycles_are_named_with_their_path() {
        let m = yaml("services: {a: {image: x, depends_on: {b: {}}}, b: {image: x, depends_on: {c: {}}}, c: {image: x, depends_on: {a: {}}}}");
        let (_, msg) = check_services(&m, Flavour::V2).unwrap_err();
        assert_eq!(msg, "dependency cycle: a -> b -> c -> a");
        let m = yaml("services: {a: {image: x, depends_on: {a: {}}}}");
        assert!(check_services(&m, Flavour::V2)
            .unwrap_err()
            .1
            .contains("itself"));
        let m = yaml("services: {a: {build: ., depends_on: {b: {required: false}}}}");
        assert!(check_services(&m, Flavour::V2).is_ok());
        assert!(check_services_v2(&yaml("services: {a: {command: x}}"))
            .unwrap_err()
            .1
            .contains("neither"));
    }
}
