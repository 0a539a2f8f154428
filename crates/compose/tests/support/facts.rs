//! The facts the conformance tests compare between our model and Compose's
//! `config` output, for one service: image, command, entrypoint,
//! environment, labels, networks, published ports (one per port of a range,
//! short and long syntax alike), volumes, build context and dependencies.
//! Shared by the corpus test (`crates/compose/tests/conformance.rs`) and the
//! xtask's environment tests (`xtask/tests/conformance.rs`, by `#[path]`).

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

/// The facts compared for one service.
#[derive(Debug, PartialEq, Eq)]
pub struct ServiceFacts {
    image: Option<String>,
    command: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    environment: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    networks: BTreeSet<String>,
    ports: BTreeSet<String>,
    /// `source -> target` (source empty for anonymous volumes).
    volumes: BTreeSet<String>,
    build_context: Option<String>,
    depends_on: BTreeSet<String>,
}

pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => format!("{other:?}"),
    }
}

/// `ip:published:target/proto` from either port syntax, one per port of a range.
fn ports(v: &Value) -> Vec<String> {
    let one = port(v);
    let (head, proto) = one.rsplit_once('/').unwrap();
    let parts: Vec<&str> = head
        .rsplitn(3, ':')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if parts.len() != 3 {
        return vec![one];
    }
    let range = |s: &str| -> Option<(u32, u32)> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    match (range(parts[1]), range(parts[2])) {
        (Some((p0, p1)), Some((t0, t1))) if t1 > t0 && p1 - p0 == t1 - t0 => (0..=t1 - t0)
            .map(|i| format!("{}:{}:{}/{proto}", parts[0], p0 + i, t0 + i))
            .collect(),
        (None, Some((t0, t1))) if t1 > t0 && parts[1].is_empty() => (t0..=t1)
            .map(|t| format!("{}::{t}/{proto}", parts[0]))
            .collect(),
        _ => vec![one],
    }
}

fn port(v: &Value) -> String {
    let (ip, published, target, proto) = match v {
        Value::Mapping(m) => {
            let get = |k: &str| m.get(k).map(text).unwrap_or_default();
            let proto = m.get("protocol").map(text).unwrap_or_else(|| "tcp".into());
            (get("host_ip"), get("published"), get("target"), proto)
        }
        other => {
            let s = text(other);
            let (spec, proto) = s.rsplit_once('/').unwrap_or((&s, "tcp"));
            let mut parts = spec.rsplitn(3, ':');
            let target = parts.next().unwrap_or_default();
            let published = parts.next().unwrap_or_default();
            let ip = parts.next().unwrap_or_default();
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            (ip.into(), published.into(), target.into(), proto.into())
        }
    };
    let ip = if ip == "0.0.0.0" { String::new() } else { ip };
    format!("{ip}:{published}:{target}/{proto}")
}

fn volume(v: &Value) -> String {
    match v {
        Value::Mapping(m) => {
            let source = m.get("source").map(text).unwrap_or_default();
            format!("{source} -> {}", text(&m["target"]))
        }
        other => {
            let s = text(other);
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [t] => format!(" -> {t}"),
                [s, t] | [s, t, _] => format!("{s} -> {t}"),
                _ => format!("? -> {s}"),
            }
        }
    }
}

/// A command as a list: lists as they are, strings split like a shell would.
fn words(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().map(text).collect(),
        other => shell_split(&text(other)),
    }
}

fn shell_split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'') | (None, '"') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (_, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (text(k), text(v))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let s = text(i);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

pub fn facts(doc: &Value) -> BTreeMap<String, ServiceFacts> {
    let Some(services) = doc.get("services").and_then(Value::as_mapping) else {
        return BTreeMap::new();
    };
    services
        .iter()
        .map(|(name, s)| {
            let list = |k: &str| -> Vec<&Value> {
                s.get(k)
                    .and_then(Value::as_sequence)
                    .map(|v| v.iter().collect())
                    .unwrap_or_default()
            };
            let keys = |k: &str| -> BTreeSet<String> {
                match s.get(k) {
                    Some(Value::Mapping(m)) => m.keys().map(text).collect(),
                    Some(Value::Sequence(items)) => items.iter().map(text).collect(),
                    _ => BTreeSet::new(),
                }
            };
            let build_context = s.get("build").map(|b| match b {
                Value::Mapping(m) => m.get("context").map(text).unwrap_or_else(|| ".".into()),
                other => text(other),
            });
            let facts = ServiceFacts {
                image: s.get("image").map(text),
                command: s.get("command").filter(|c| !c.is_null()).map(words),
                entrypoint: s.get("entrypoint").filter(|c| !c.is_null()).map(words),
                environment: string_map(s.get("environment")),
                labels: string_map(s.get("labels")),
                // v2 adds the implicit `default` network to every service.
                networks: keys("networks")
                    .into_iter()
                    .filter(|n| n != "default")
                    .collect(),
                ports: list("ports").into_iter().flat_map(ports).collect(),
                volumes: list("volumes").into_iter().map(volume).collect(),
                build_context,
                depends_on: keys("depends_on"),
            };
            (text(name), facts)
        })
        .collect()
}
