//! This repository's own invariants, checked only for its named environments:
//! Postgres and the monitoring services sit on both networks, there is exactly
//! one Prometheus, Grafana and Loki, Grafana is published at 3001 -> 3000 in
//! dev, and dev services never mount the data volumes prod uses.

use std::collections::BTreeSet;

use super::rules::image_repository;
use super::Finding;
use crate::compose::{Location, MountKind, Project, ProjectLoader, Seg};
use crate::environments::Environment;

/// Services that must join both `fog-network` and `betanet-network`.
const ON_BOTH_NETWORKS: &[&str] = &[
    "postgres",
    "prometheus",
    "grafana",
    "loki",
    "node-exporter",
    "cadvisor",
    "alertmanager",
];
const NETWORKS: &[&str] = &["fog-network", "betanet-network"];
/// Image names (last path part of the repository) that must run exactly once.
const SINGLETONS: &[&str] = &["prometheus", "grafana", "loki"];

fn at(project: &Project, path: &[&str]) -> Option<Location> {
    let segs: Vec<Seg> = path.iter().map(|s| Seg::key(s)).collect();
    project.locate_nearest(&segs)
}

/// Named volumes mounted by any service of the `prod` environment.
pub fn prod_data_volumes(loader: &mut ProjectLoader) -> Option<BTreeSet<String>> {
    let prod: Environment = "prod".parse().ok()?;
    let root = crate::project_root();
    let files: Vec<_> = prod.files().iter().map(|f| root.join(f)).collect();
    let project = loader.load(&files).ok()?;
    Some(
        project
            .services()
            .iter()
            .flat_map(|s| &s.volumes)
            .filter(|m| m.kind == MountKind::Volume)
            .filter_map(|m| m.source.clone())
            .collect(),
    )
}

pub fn run(
    project: &Project,
    env: &Environment,
    prod_volumes: Option<&BTreeSet<String>>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for svc in project.services() {
        if !ON_BOTH_NETWORKS.contains(&svc.name.as_str()) {
            continue;
        }
        for net in NETWORKS {
            if !svc.networks.iter().any(|n| n == net) {
                out.push(Finding::error(
                    "repo-networks",
                    at(project, &["services", &svc.name, "networks"]),
                    format!(
                        "`{}` is not on `{net}`; Postgres and monitoring must reach both networks",
                        svc.name
                    ),
                    &format!("add `{net}` to the networks of `{}`", svc.name),
                ));
            }
        }
    }
    for wanted in SINGLETONS {
        let running: Vec<&str> = project
            .services()
            .iter()
            .filter(|s| {
                s.image
                    .as_deref()
                    .is_some_and(|i| image_repository(i).rsplit('/').next() == Some(wanted))
            })
            .map(|s| s.name.as_str())
            .collect();
        if running.len() != 1 {
            let loc = running
                .get(1)
                .and_then(|name| at(project, &["services", name, "image"]))
                .or_else(|| at(project, &["services"]));
            out.push(Finding::error(
                "repo-singleton",
                loc,
                format!(
                    "environment `{env}` runs {} {wanted} service(s) ({}); it needs exactly one",
                    running.len(),
                    running.join(", ")
                ),
                &format!("keep the single `{wanted}` service from base.yml"),
            ));
        }
    }
    if env.has("dev") {
        grafana_port(project, &mut out);
        if let Some(prod_volumes) = prod_volumes {
            dev_volumes(project, prod_volumes, &mut out);
        }
    }
    out
}

fn grafana_port(project: &Project, out: &mut Vec<Finding>) {
    let Some(grafana) = project.service("grafana") else {
        return;
    };
    let wanted: u16 = project
        .env()
        .get("GRAFANA_PORT")
        .and_then(|p| p.parse().ok())
        .unwrap_or(3001);
    let ok = grafana.ports.iter().any(|p| {
        p.target.start == 3000
            && p.host_ip.as_deref() == Some("127.0.0.1")
            && p.published
                .is_some_and(|h| h.start == wanted && h.end == wanted)
    });
    if !ok {
        out.push(Finding::error(
            "repo-grafana-port",
            at(project, &["services", "grafana", "ports"]),
            format!("dev must publish Grafana at 127.0.0.1:{wanted} -> 3000"),
            "use ports: [\"127.0.0.1:${GRAFANA_PORT:-3001}:3000\"] in dev.yml",
        ));
    }
}

fn dev_volumes(project: &Project, prod_volumes: &BTreeSet<String>, out: &mut Vec<Finding>) {
    for svc in project.services() {
        for mount in &svc.volumes {
            let Some(source) = &mount.source else {
                continue;
            };
            if mount.kind == MountKind::Volume && prod_volumes.contains(source) {
                let target = mount.target.clone();
                let loc = project
                    .locate_item(&svc.name, "volumes", |v| {
                        crate::compose::Mount::parse(v).is_ok_and(|m| m.target == target)
                    })
                    .or_else(|| at(project, &["services", &svc.name, "volumes"]));
                out.push(Finding::error(
                    "repo-dev-volumes",
                    loc,
                    format!(
                        "dev service `{}` mounts `{source}`, a data volume prod uses",
                        svc.name
                    ),
                    "mount a dev-only volume (e.g. `dev-<name>`) at this target in dev.yml",
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::compose::{EnvSource, SourceFile};

    const BASE: &str = "\
services:
  postgres:
    image: postgres:15.8-alpine
    networks: [fog-network, betanet-network]
    volumes: [postgres_data:/var/lib/postgresql/data]
  prometheus:
    image: prom/prometheus:v2.53.2
    networks: [fog-network]
  grafana:
    image: grafana/grafana:11.2.0
    networks: [fog-network, betanet-network]
networks: {fog-network: {}, betanet-network: {}}
volumes: {postgres_data: {}, pg_dev: {}}
";

    fn project(dev: &str) -> Project {
        let env = EnvSource::empty();
        let files = vec![
            SourceFile::from_text(Path::new("base.yml"), BASE, &env).unwrap(),
            SourceFile::from_text(Path::new("dev.yml"), dev, &env).unwrap(),
        ];
        Project::from_sources(files, &env).unwrap()
    }

    fn rules(findings: &[Finding]) -> Vec<(&str, Option<usize>)> {
        findings.iter().map(|f| (f.rule, f.line)).collect()
    }

    #[test]
    fn invariants_fire_with_their_lines() {
        let dev = "\
services:
  postgres:
    volumes: [postgres_data:/var/lib/postgresql/data]
  grafana:
    ports: ['3000:3000']
  prometheus-2:
    image: prom/prometheus:v2.53.2
";
        let env: Environment = "dev".parse().unwrap();
        let prod: BTreeSet<String> = ["postgres_data".to_string()].into();
        let found = run(&project(dev), &env, Some(&prod));
        assert_eq!(
            rules(&found),
            [
                ("repo-networks", Some(8)),
                ("repo-singleton", Some(7)),
                ("repo-singleton", Some(1)),
                ("repo-grafana-port", Some(5)),
                ("repo-dev-volumes", Some(3)),
            ]
        );
        assert!(
            found[1].message.contains("2 prometheus"),
            "{}",
            found[1].message
        );
        assert!(found[2].message.contains("0 loki"), "{}", found[2].message);
    }

    #[test]
    fn a_correct_dev_overlay_passes_the_dev_rules() {
        let dev = "\
services:
  postgres:
    volumes: [pg_dev:/var/lib/postgresql/data]
  grafana:
    ports: ['127.0.0.1:3001:3000']
";
        let env: Environment = "dev".parse().unwrap();
        let prod: BTreeSet<String> = ["postgres_data".to_string()].into();
        let found = run(&project(dev), &env, Some(&prod));
        let rules: Vec<&str> = found.iter().map(|f| f.rule).collect();
        // Only the fixture's own gaps remain: prometheus off betanet, no loki.
        assert_eq!(rules, ["repo-networks", "repo-singleton"]);
    }
}
