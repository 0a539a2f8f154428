//! Swarm policies for one rendered service: which services are one-shots
//! (restart on failure only, a completed task counts as converged), the
//! `deploy:` block from the overlays (schema 3.9 keys) completed with a
//! restart policy translated from `restart:`, rolling update and rollback
//! defaults (start-first only where two tasks can run side by side), the
//! endpoint mode and `--replicas`.

use std::collections::BTreeSet;

use serde_yaml::{Mapping, Value};

use super::render::EndpointMode;
use crate::compose::{key_str, types::scalar_string, Project};

/// `deploy` keys of schema 3.9.
const DEPLOY_KEYS: &[&str] = &[
    "endpoint_mode",
    "labels",
    "mode",
    "placement",
    "replicas",
    "resources",
    "restart_policy",
    "rollback_config",
    "update_config",
    "max_replicas_per_node",
];

/// Services that run once and exit: `restart: "no"`, or the target of a
/// `service_completed_successfully` dependency.
pub fn one_shot_services(project: &Project) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for svc in project.services() {
        let restart = svc
            .raw
            .get("restart")
            .map(scalar_string)
            .unwrap_or_default();
        if restart == "no" {
            out.insert(svc.name.clone());
        }
        for (dep, cond) in &svc.depends_on {
            if cond == "service_completed_successfully" {
                out.insert(dep.clone());
            }
        }
    }
    out
}

pub fn filter_keys(v: &Value, keys: &[&str]) -> Value {
    match v.as_mapping() {
        Some(m) => Value::Mapping(
            m.iter()
                .filter(|(k, _)| keys.contains(&key_str(k).as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        None => v.clone(),
    }
}

/// What the defaults depend on.
pub struct DeployDefaults {
    pub one_shot: bool,
    pub stateful: bool,
    pub healthcheck: bool,
    pub replicas: Option<u64>,
    pub endpoint_mode: EndpointMode,
}

/// The overlays' `deploy:` (3.9 keys only) with defaults for what they leave
/// out: restart policy from `restart:`, rolling update and rollback, replicas.
pub fn render_deploy(
    raw: &Mapping,
    d: &DeployDefaults,
    note: &mut dyn FnMut(&str, String),
) -> Value {
    let mut deploy = match raw.get("deploy") {
        Some(v) => filter_keys(v, DEPLOY_KEYS),
        None => Value::Mapping(Mapping::new()),
    };
    let m = deploy
        .as_mapping_mut()
        .expect("filter_keys keeps a mapping");
    if let Some(n) = d.replicas {
        m.insert("replicas".into(), Value::from(n));
    }
    if !m.contains_key("endpoint_mode") {
        m.insert("endpoint_mode".into(), d.endpoint_mode.name().into());
    }
    if d.one_shot {
        let labels = m
            .entry("labels".into())
            .or_insert_with(|| Value::Mapping(Mapping::new()));
        if let Some(labels) = labels.as_mapping_mut() {
            labels.insert(super::ONE_SHOT_LABEL.into(), "true".into());
        }
    }
    let restart = raw.get("restart").map(scalar_string);
    if !m.contains_key("restart_policy") {
        let (condition, attempts) = if d.one_shot {
            ("on-failure", Some(5))
        } else {
            match restart.as_deref() {
                Some(r) if r.starts_with("on-failure") => (
                    "on-failure",
                    r.split_once(':').and_then(|(_, n)| n.parse::<u64>().ok()),
                ),
                _ => ("any", None),
            }
        };
        let mut policy = Mapping::new();
        policy.insert("condition".into(), condition.into());
        policy.insert("delay".into(), "5s".into());
        if let Some(n) = attempts {
            policy.insert("max_attempts".into(), Value::from(n));
        }
        m.insert("restart_policy".into(), Value::Mapping(policy));
        if let Some(r) = &restart {
            let why = if d.one_shot {
                "one-shot service: restarts on failure only, at most 5 times".to_string()
            } else {
                format!("restart: {r} -> deploy.restart_policy.condition: {condition}")
            };
            note("restart", why);
        }
    } else if restart.is_some() {
        note(
            "restart",
            "dropped in favour of the overlay's deploy.restart_policy".into(),
        );
    }
    // Start the new task before stopping the old one only when two tasks can
    // run side by side: nothing writes a named volume and a healthcheck says
    // when the new one is ready. Overlays can set `order` themselves.
    let order = if !d.one_shot && !d.stateful && d.healthcheck {
        "start-first"
    } else {
        "stop-first"
    };
    for (key, failure_action) in [("update_config", "rollback"), ("rollback_config", "pause")] {
        let mut cfg = m
            .get(key)
            .and_then(Value::as_mapping)
            .cloned()
            .unwrap_or_default();
        let defaults: [(&str, Value); 5] = [
            ("parallelism", Value::from(1)),
            ("delay", "2s".into()),
            ("order", order.into()),
            ("failure_action", failure_action.into()),
            ("monitor", "10s".into()),
        ];
        for (k, v) in defaults {
            if !cfg.contains_key(k) {
                cfg.insert(k.into(), v);
            }
        }
        m.insert(key.into(), Value::Mapping(cfg));
    }
    deploy
}
