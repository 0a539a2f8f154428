//! Normalising one file and merging several, by the compose-spec rules:
//! mappings merge recursively and later scalars win; `command`, `entrypoint`
//! and `healthcheck.test` are replaced whole; `environment` and `labels` merge
//! by key (list `K=V` and map forms both become maps); `ports` merge by
//! (host ip, target, published, protocol); `volumes` by target; `secrets` and
//! `configs` by target (or source); a `networks` list becomes a map;
//! `depends_on` lists become maps with `condition: service_started`; other
//! sequences are appended without duplicates. v2's `!reset` and `!override`
//! tags clear or replace a value.

use serde_yaml::{Mapping, Value};

use super::env::Flavour;
use super::key_str;
use super::lines::Seg;
use super::types::{scalar_string, Mount, Port};

/// A normalisation error: the key path and what is wrong there.
pub type NormaliseError = (Vec<Seg>, String);

/// Bring every service of one (interpolated) file into the canonical forms
/// above, so files can be merged and compared entry by entry.
pub fn normalise_file(root: &mut Value, flavour: Flavour) -> Result<(), NormaliseError> {
    let Some(map) = root.as_mapping_mut() else {
        return Err((Vec::new(), "a compose file must be a mapping".into()));
    };
    legacy_v1_format(map, flavour);
    let map = root.as_mapping_mut().expect("checked above");
    let Some(services) = map.get_mut("services") else {
        return Ok(());
    };
    if services.is_null() {
        *services = Value::Mapping(Mapping::new());
    }
    let Some(services) = services.as_mapping_mut() else {
        return Err((
            vec![Seg::key("services")],
            "`services` must be a mapping".into(),
        ));
    };
    for (name, service) in services.iter_mut() {
        let name = key_str(name);
        if service.is_null() {
            *service = Value::Mapping(Mapping::new());
        }
        let path = |k: &str| vec![Seg::key("services"), Seg::Key(name.clone()), Seg::key(k)];
        let Some(svc) = service.as_mapping_mut() else {
            return Err((
                path("")[..2].to_vec(),
                format!("service `{name}` must be a mapping"),
            ));
        };
        if flavour == Flavour::V1 {
            v1_types(svc).map_err(|(k, m)| (path(&k), m))?;
        }
        for key in ["environment", "labels", "sysctls"] {
            if let Some(v) = svc.get_mut(key) {
                *v = key_value_map(v).map_err(|m| (path(key), m))?;
            }
        }
        if let Some(Value::Mapping(build)) = svc.get_mut("build") {
            if let Some(args) = build.get_mut("args") {
                *args = key_value_map(args).map_err(|m| (path("build"), m))?;
            }
        }
        // String-or-list fields become lists, so a later file appends to them.
        for key in ["env_file", "dns", "dns_search", "tmpfs"] {
            if let Some(v) = svc.get_mut(key) {
                if let Value::String(one) = v {
                    *v = Value::Sequence(vec![Value::String(one.clone())]);
                }
            }
        }
        if let Some(v) = svc.get_mut("networks") {
            *v = list_to_map(v, |_| Value::Null);
        }
        if let Some(v) = svc.get_mut("depends_on") {
            *v = list_to_map(v, |_| started());
            if let Some(m) = v.as_mapping_mut() {
                for dep in m.values_mut() {
                    if dep.is_null() {
                        *dep = started();
                    }
                    if let Some(d) = dep.as_mapping_mut() {
                        d.entry("condition".into())
                            .or_insert("service_started".into());
                    }
                }
            }
        }
        if let Some(Value::Sequence(ports)) = svc.get_mut("ports") {
            for (i, p) in ports.iter_mut().enumerate() {
                let port = Port::parse(p).map_err(|m| {
                    let mut at = path("ports");
                    at.push(Seg::Index(i));
                    (at, m)
                })?;
                *p = Value::String(port.to_short());
            }
        }
        if let Some(Value::Sequence(volumes)) = svc.get_mut("volumes") {
            for (i, v) in volumes.iter_mut().enumerate() {
                // `${UNSET}:/data`: v1 mounts the project directory, v2 refuses.
                if let Value::String(s) = v {
                    if s.starts_with(':') {
                        if flavour == Flavour::V1 {
                            // Kept empty: v1 prints it as a literal `.`.
                        } else {
                            let mut at = path("volumes");
                            at.push(Seg::Index(i));
                            return Err((
                                at,
                                format!("volume `{s}` has an empty source (an unset variable?)"),
                            ));
                        }
                    }
                }
            }
            let mut targets: Vec<String> = Vec::new();
            let mut keep = Vec::new();
            for (i, v) in volumes.iter().enumerate() {
                let mount = Mount::parse(v).map_err(|m| {
                    let mut at = path("volumes");
                    at.push(Seg::Index(i));
                    (at, m)
                })?;
                let target = mount.target.trim_end_matches('/').to_string();
                // Two mounts at one target: v1 refuses, v2 keeps the last.
                if let Some(j) = targets.iter().position(|t| *t == target) {
                    if flavour == Flavour::V1 {
                        let mut at = path("volumes");
                        at.push(Seg::Index(i));
                        return Err((at, format!("duplicate mount point `{target}`")));
                    }
                    keep[j] = false;
                }
                targets.push(target);
                keep.push(true);
            }
            let mut keep = keep.into_iter();
            volumes.retain(|_| keep.next().unwrap_or(true));
        }
    }
    Ok(())
}

/// v1 reads a file with neither `version` nor `services` as the version 1
/// format: every top-level key is a service (`net:` is `network_mode:`).
/// v2 no longer does, and refuses such files.
fn legacy_v1_format(map: &mut Mapping, flavour: Flavour) {
    if flavour != Flavour::V1 || map.contains_key("services") || map.contains_key("version") {
        return;
    }
    let mut services = Mapping::new();
    for (k, mut v) in std::mem::take(map) {
        if key_str(&k).starts_with("x-") {
            map.insert(k, v);
            continue;
        }
        if let Some(svc) = v.as_mapping_mut() {
            if let Some(net) = svc.remove("net") {
                svc.insert("network_mode".into(), net);
            }
        }
        services.insert(k, v);
    }
    map.insert("services".into(), Value::Mapping(services));
}

/// Types v1's schema refuses and v2 accepts: booleans as environment
/// values and `host_ip` in long-syntax ports.
fn v1_types(svc: &Mapping) -> Result<(), (String, String)> {
    if let Some(Value::Mapping(env)) = svc.get("environment") {
        if let Some((k, _)) = env.iter().find(|(_, v)| v.is_bool()) {
            return Err((
                "environment".into(),
                format!(
                    "`{}` is a boolean; Compose v1 wants a string (quote it)",
                    key_str(k)
                ),
            ));
        }
    }
    if let Some(Value::Sequence(ports)) = svc.get("ports") {
        if ports.iter().any(|p| p.get("host_ip").is_some()) {
            return Err((
                "ports".into(),
                "`host_ip` in a long-syntax port is Compose v2 syntax, which v1 rejects".into(),
            ));
        }
    }
    Ok(())
}

fn started() -> Value {
    let mut m = Mapping::new();
    m.insert("condition".into(), "service_started".into());
    Value::Mapping(m)
}

/// `[K=V, K]` or `{K: V}` -> `{K: "V"}` (a bare `K` maps to null).
fn key_value_map(v: &Value) -> Result<Value, String> {
    let mut out = Mapping::new();
    match v {
        Value::Tagged(t) => {
            let mut t = t.clone();
            t.value = key_value_map(&t.value)?;
            return Ok(Value::Tagged(t));
        }
        Value::Sequence(items) => {
            for item in items {
                let s = scalar_string(item);
                match s.split_once('=') {
                    Some((k, val)) => out.insert(k.into(), val.into()),
                    None => out.insert(s.into(), Value::Null),
                };
            }
        }
        Value::Mapping(m) => {
            for (k, val) in m {
                let val = match val {
                    Value::Null => Value::Null,
                    other => Value::String(scalar_string(other)),
                };
                out.insert(Value::String(key_str(k)), val);
            }
        }
        Value::Null => {}
        _ => return Err("expected a list of KEY=VALUE or a mapping".into()),
    }
    Ok(Value::Mapping(out))
}

fn list_to_map(v: &Value, item: impl Fn(&str) -> Value + Copy) -> Value {
    match v {
        Value::Tagged(t) => {
            let mut t = t.clone();
            t.value = list_to_map(&t.value, item);
            Value::Tagged(t)
        }
        Value::Sequence(items) => {
            let mut out = Mapping::new();
            for name in items {
                let name = scalar_string(name);
                let value = item(&name);
                out.insert(name.into(), value);
            }
            Value::Mapping(out)
        }
        Value::Null => Value::Mapping(Mapping::new()),
        other => other.clone(),
    }
}

/// Drop the `!reset`/`!override` tags left after merging (a tag in the
/// first file that defines a value just keeps the value).
pub fn strip_tags(v: &mut Value) {
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        if let Value::Tagged(t) = v {
            let inner = std::mem::replace(&mut t.value, Value::Null);
            *v = inner;
            stack.push(v);
            continue;
        }
        match v {
            Value::Mapping(m) => stack.extend(m.values_mut()),
            Value::Sequence(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
}

/// Merge the normalised `over` into `base`. `path` is the key path of `base`.
pub fn merge(base: &mut Value, over: Value, path: &mut Vec<String>) {
    let over = match over {
        Value::Tagged(t) if t.tag == "override" => {
            *base = t.value;
            return;
        }
        Value::Tagged(t) if t.tag == "reset" => {
            *base = Value::Null;
            return;
        }
        other => other,
    };
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                if matches!(&v, Value::Tagged(t) if t.tag == "reset") {
                    b.remove(&k);
                    continue;
                }
                match b.get_mut(&k) {
                    Some(existing) if !existing.is_null() && !replaced_whole(path, &k) => {
                        path.push(key_str(&k));
                        merge(existing, v, path);
                        path.pop();
                    }
                    _ => {
                        let v = match v {
                            Value::Tagged(t) if t.tag == "override" => t.value,
                            v => v,
                        };
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(o)) => {
            let unique = unique_key_fn(path);
            for item in o {
                let key = unique(&item);
                match b.iter().position(|e| unique(e) == key) {
                    Some(i) => b[i] = item,
                    None => b.push(item),
                }
            }
        }
        (base, Value::Null) if !base.is_null() => {}
        (base, over) => *base = over,
    }
}

/// `services.<name>.{command,entrypoint}` and `services.<name>.healthcheck.test`.
fn replaced_whole(path: &[String], key: &Value) -> bool {
    let key = key.as_str().unwrap_or("");
    match path {
        [s, _] if s == "services" => matches!(key, "command" | "entrypoint"),
        [s, _, h] if s == "services" && h == "healthcheck" => key == "test",
        _ => false,
    }
}

/// The identity of a sequence item for merging: equal keys replace each other.
fn unique_key_fn(path: &[String]) -> fn(&Value) -> String {
    let field = match path {
        [s, _, f] if s == "services" => f.as_str(),
        _ => "",
    };
    match field {
        "ports" => |v| {
            Port::parse(v)
                .map(|p| p.to_short())
                .unwrap_or_else(|_| scalar_string(v))
        },
        "volumes" => |v| {
            Mount::parse(v)
                .map(|m| m.target)
                .unwrap_or_else(|_| scalar_string(v))
        },
        "secrets" | "configs" => |v| match v {
            Value::Mapping(m) => {
                let source = m.get("source").map(scalar_string).unwrap_or_default();
                m.get("target").map(scalar_string).unwrap_or(source)
            }
            other => scalar_string(other),
        },
        _ => |v| serde_yaml::to_string(v).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Normalise and merge YAML documents the way `Project::load` does.
    fn merged(docs: &[&str]) -> Value {
        let mut out = Value::Mapping(Mapping::new());
        for doc in docs {
            let mut v: Value = serde_yaml::from_str(doc).unwrap();
            v.apply_merge().unwrap();
            normalise_file(&mut v, Flavour::V2).unwrap();
            merge(&mut out, v, &mut Vec::new());
        }
        out
    }

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn scalars_are_replaced_and_mappings_merged() {
        let m = merged(&[
            "services: {db: {image: 'pg:15', restart: always}}",
            "services: {db: {image: 'pg:16'}, web: {image: 'nginx:1'}}",
        ]);
        assert_eq!(
            m["services"]["db"],
            yaml("{image: 'pg:16', restart: always}")
        );
        assert_eq!(m["services"]["web"]["image"], Value::from("nginx:1"));
    }

    #[test]
    fn command_entrypoint_and_healthcheck_test_are_replaced() {
        let m = merged(&[
            "services: {a: {command: [x, y], entrypoint: [sh, -c], healthcheck: {test: [CMD, a], interval: 5s}}}",
            "services: {a: {command: [z], entrypoint: [tini], healthcheck: {test: [CMD, b]}}}",
        ]);
        let a = &m["services"]["a"];
        assert_eq!(a["command"], yaml("[z]"));
        assert_eq!(a["entrypoint"], yaml("[tini]"));
        assert_eq!(a["healthcheck"], yaml("{test: [CMD, b], interval: 5s}"));
    }

    #[test]
    fn environment_and_labels_merge_by_key_across_forms() {
        let m = merged(&[
            "services: {a: {environment: [A=1, B=2, C], labels: {x: '1'}}}",
            "services: {a: {environment: {B: 3, D: true}, labels: [y=2, x=3]}}",
        ]);
        let a = &m["services"]["a"];
        assert_eq!(
            a["environment"],
            yaml("{A: '1', B: '3', C: null, D: 'true'}")
        );
        assert_eq!(a["labels"], yaml("{x: '3', y: '2'}"));
    }

    #[test]
    fn ports_merge_by_ip_target_published_protocol() {
        let m = merged(&[
            "services: {a: {ports: ['127.0.0.1:5432:5432', '8080:80']}}",
            "services: {a: {ports: [{target: 5432, published: 5432, host_ip: 127.0.0.1}, '8080:80/udp', '9090']}}",
        ]);
        assert_eq!(
            m["services"]["a"]["ports"],
            yaml("['127.0.0.1:5432:5432/tcp', '8080:80/tcp', '8080:80/udp', '9090/tcp']")
        );
    }

    #[test]
    fn volumes_merge_by_target() {
        let m = merged(&[
            "services: {a: {volumes: ['data:/var/lib/data', './conf:/etc/conf:ro']}}",
            "services: {a: {volumes: ['dev-data:/var/lib/data', {type: tmpfs, target: /tmp}]}}",
        ]);
        assert_eq!(
            m["services"]["a"]["volumes"],
            yaml("['dev-data:/var/lib/data', './conf:/etc/conf:ro', {type: tmpfs, target: /tmp}]")
        );
    }

    #[test]
    fn networks_list_becomes_map_and_merges() {
        let m = merged(&[
            "services: {a: {networks: [front]}}",
            "services: {a: {networks: {back: {aliases: [b]}}}}",
        ]);
        assert_eq!(
            m["services"]["a"]["networks"],
            yaml("{front: null, back: {aliases: [b]}}")
        );
    }

    #[test]
    fn network_aliases_are_unioned() {
        let m = merged(&[
            "services: {a: {networks: {n: {aliases: [x, y]}}}}",
            "services: {a: {networks: {n: {aliases: [y, z]}}}}",
        ]);
        assert_eq!(
            m["services"]["a"]["networks"]["n"]["aliases"],
            yaml("[x, y, z]")
        );
    }

    #[test]
    fn build_args_and_sysctls_merge_by_key_string_fields_append() {
        let m = merged(&[
            "services: {a: {build: {context: ., args: [A=1, B=2]}, sysctls: [net.core.somaxconn=1024], dns: 1.1.1.1}}",
            "services: {a: {build: {args: {B: 3}}, sysctls: {net.ipv4.tcp_syncookies: 0}, dns: [9.9.9.9]}}",
        ]);
        let a = &m["services"]["a"];
        assert_eq!(a["build"], yaml("{context: ., args: {A: '1', B: '3'}}"));
        assert_eq!(
            a["sysctls"],
            yaml("{net.core.somaxconn: '1024', net.ipv4.tcp_syncookies: '0'}")
        );
        assert_eq!(a["dns"], yaml("[1.1.1.1, 9.9.9.9]"));
    }

    /// Our choice where Compose differs (v1 rejects `image: null`): an empty
    /// value in a later file changes nothing, and an empty service is `{}`.
    #[test]
    fn a_later_null_keeps_the_earlier_value() {
        let m = merged(&[
            "services: {a: {image: 'x:1'}}",
            "services: {a: {image: null}, b: }",
        ]);
        assert_eq!(m["services"]["a"]["image"], Value::from("x:1"));
        assert_eq!(m["services"]["b"], yaml("{}"));
    }

    #[test]
    fn depends_on_list_becomes_service_started_map() {
        let m = merged(&[
            "services: {a: {depends_on: [db]}}",
            "services: {a: {depends_on: {cache: {condition: service_healthy}}}}",
        ]);
        assert_eq!(
            m["services"]["a"]["depends_on"],
            yaml("{db: {condition: service_started}, cache: {condition: service_healthy}}")
        );
    }

    #[test]
    fn other_sequences_append_without_duplicates() {
        let m = merged(&[
            "services: {a: {cap_add: [NET_ADMIN], profiles: [x]}}",
            "services: {a: {cap_add: [SYS_TIME, NET_ADMIN]}}",
        ]);
        assert_eq!(m["services"]["a"]["cap_add"], yaml("[NET_ADMIN, SYS_TIME]"));
        assert_eq!(m["services"]["a"]["profiles"], yaml("[x]"));
    }

    #[test]
    fn top_level_networks_and_volumes_merge() {
        let m = merged(&[
            "networks: {n: {driver: bridge}}\nvolumes: {v: {}}",
            "networks: {n: {labels: {a: b}}, m: {}}\nvolumes: {w: null}",
        ]);
        assert_eq!(
            m["networks"],
            yaml("{n: {driver: bridge, labels: {a: b}}, m: {}}")
        );
        assert_eq!(m["volumes"], yaml("{v: {}, w: null}"));
    }

    #[test]
    fn anchors_and_merge_keys_expand_before_merging() {
        let m = merged(&[
            "x-n: &n {image: 'mix:1', environment: {A: '1'}}\nservices: {m1: {<<: *n, environment: {B: '2'}}}",
        ]);
        assert_eq!(
            m["services"]["m1"],
            yaml("{image: 'mix:1', environment: {B: '2'}}")
        );
    }

    #[test]
    fn reset_and_override_tags() {
        let m = merged(&[
            "services: {a: {ports: ['80:80'], environment: {A: '1'}}}",
            "services: {a: {ports: !reset [], environment: !override {B: '2'}}}",
        ]);
        assert_eq!(m["services"]["a"], yaml("{environment: {B: '2'}}"));
    }
}
