//! The generic compose rules, valid for any set of compose files: references
//! that resolve (networks, services, volumes), host ports published twice, a
//! duplicated image, overlapping subnets, unpinned images, literal secrets,
//! port exposure for dev and prod, missing bind-mount paths and
//! `service_healthy` without a healthcheck.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_yaml::Value;

use super::{Finding, Kind};
use crate::compose::types::{scalar_string, MountKind, Port};
use crate::compose::{key_str, Location, Project, Seg, Service};

/// Run every generic rule.
pub fn run(project: &Project, kind: Kind) -> Vec<Finding> {
    let mut out = Vec::new();
    references(project, &mut out);
    port_conflicts(project, &mut out);
    duplicate_images(project, &mut out);
    subnet_overlaps(project, &mut out);
    super::files::run(project, &mut out);
    exposure(project, kind, &mut out);
    bind_paths(project, &mut out);
    if kind == Kind::Prod {
        url_credentials(project, &mut out);
    }
    out
}

/// Prod keeps every credential in files: no environment value of the merged,
/// interpolated model may carry a password inside a URL
/// (`postgres://user:password@host`), which `docker inspect` would show.
fn url_credentials(project: &Project, out: &mut Vec<Finding>) {
    for svc in project.services() {
        for (key, value) in &svc.environment {
            let Some(value) = value else { continue };
            if !super::files::url_with_literal_password(value) {
                continue;
            }
            out.push(Finding::error(
                "prod-url-credential",
                at(project, &["services", &svc.name, "environment", key]),
                format!(
                    "prod passes a password inside the URL of `{key}` to service `{}`",
                    svc.name
                ),
                "leave the password out of the URL and mount it as a secret file (e.g. `DATABASE_PASSWORD_FILE: /run/secrets/postgres_password`)",
            ));
        }
    }
}

fn at(project: &Project, path: &[&str]) -> Option<Location> {
    let segs: Vec<Seg> = path.iter().map(|s| Seg::key(s)).collect();
    project.locate_nearest(&segs)
}

fn port_location(project: &Project, service: &str, port: &Port) -> Option<Location> {
    project
        .locate_item(service, "ports", |v| Port::parse(v).as_ref() == Ok(port))
        .or_else(|| at(project, &["services", service, "ports"]))
}

fn references(project: &Project, out: &mut Vec<Finding>) {
    let networks = project.network_names();
    let volumes = project.volume_names();
    for svc in project.services() {
        let name = svc.name.as_str();
        for net in &svc.networks {
            if net == "default" || networks.contains(net) {
                continue;
            }
            let segs: Vec<Seg> = ["services", name, "networks", net].map(Seg::key).to_vec();
            // Report every file that joins the undeclared network.
            for loc in project.locate_all(&segs) {
                out.push(Finding::error(
                    "undeclared-network",
                    Some(loc),
                    format!("service `{name}` joins network `{net}`, which no file declares"),
                    &format!(
                        "declare `{net}` under top-level `networks:` or use a declared network"
                    ),
                ));
            }
        }
        for (dep, condition) in &svc.depends_on {
            let path = ["services", name, "depends_on", dep];
            match project.service(dep) {
                None => out.push(Finding::error(
                    "undefined-dependency",
                    at(project, &path),
                    format!("service `{name}` depends on `{dep}`, which is not a service here"),
                    "remove the dependency or add the overlay that defines that service",
                )),
                Some(target) if condition == "service_healthy" && !target.has_healthcheck() => {
                    let cond: Vec<Seg> = ["services", name, "depends_on", dep, "condition"]
                        .map(Seg::key)
                        .to_vec();
                    out.push(Finding::error(
                        "healthy-without-healthcheck",
                        project.locate_exact(&cond).or_else(|| at(project, &path)),
                        format!("`{name}` waits for `{dep}` to be healthy, but `{dep}` has no healthcheck"),
                        &format!("add a healthcheck to `{dep}` or use condition: service_started"),
                    ))
                }
                Some(_) => {}
            }
        }
        for mount in &svc.volumes {
            let Some(source) = &mount.source else {
                continue;
            };
            if mount.kind == MountKind::Volume && !volumes.contains(source) {
                out.push(Finding::error(
                    "undeclared-volume",
                    mount_location(project, name, &mount.target),
                    format!(
                        "service `{name}` mounts named volume `{source}`, which no file declares"
                    ),
                    &format!("declare `{source}:` under top-level `volumes:`"),
                ));
            }
        }
    }
}

fn mount_location(project: &Project, service: &str, target: &str) -> Option<Location> {
    use crate::compose::Mount;
    project
        .locate_item(service, "volumes", |v| {
            Mount::parse(v).is_ok_and(|m| m.target == target)
        })
        .or_else(|| at(project, &["services", service, "volumes"]))
}

fn ips_collide(a: &Port, b: &Port) -> bool {
    a.all_interfaces() || b.all_interfaces() || a.host_ip == b.host_ip
}

fn port_conflicts(project: &Project, out: &mut Vec<Finding>) {
    let published: Vec<(&Service, &Port)> = project
        .services()
        .iter()
        .flat_map(|s| s.ports.iter().map(move |p| (s, p)))
        .filter(|(_, p)| p.published.is_some())
        .collect();
    for (i, (svc, port)) in published.iter().enumerate() {
        let earlier = published[..i].iter().find(|(_, other)| {
            other.protocol == port.protocol
                && ips_collide(port, other)
                && other.published.unwrap().overlaps(&port.published.unwrap())
        });
        if let Some((other_svc, other)) = earlier {
            let host = port.published.unwrap();
            out.push(Finding::error(
                "port-conflict",
                port_location(project, &svc.name, port),
                format!(
                    "host port {host}/{} of `{}` ({}) is already published by `{}` ({})",
                    port.protocol,
                    svc.name,
                    port.to_short(),
                    other_svc.name,
                    other.to_short()
                ),
                "publish one of them on another host port",
            ));
        }
    }
}

/// `repo/name:tag@digest` -> `repo/name`.
pub fn image_repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// `web-1`, `web-2` are replicas of `web`; profiled services do not run by default.
pub fn instance_group(svc: &Service) -> Option<String> {
    if !svc.profiles.is_empty() {
        return None;
    }
    let name = svc.name.as_str();
    let base = name.trim_end_matches(|c: char| c.is_ascii_digit());
    Some(match base.strip_suffix(['-', '_']) {
        Some(b) if base.len() < name.len() => b.to_string(),
        _ => name.to_string(),
    })
}

/// Images of services that run once per environment: a second one is a
/// duplicated service, not a replica. Workers sharing `alpine` are fine.
const SINGLETON_IMAGES: &[&str] = &[
    "prometheus",
    "grafana",
    "loki",
    "alertmanager",
    "postgres",
    "mysql",
    "mariadb",
    "mongo",
    "redis",
    "elasticsearch",
    "node-exporter",
    "cadvisor",
    "traefik",
];

fn duplicate_images(project: &Project, out: &mut Vec<Finding>) {
    let mut by_repo: BTreeMap<&str, Vec<(&Service, String)>> = BTreeMap::new();
    for svc in project.services() {
        let (Some(image), Some(group)) = (&svc.image, instance_group(svc)) else {
            continue;
        };
        if svc.raw.get("build").is_some() {
            continue;
        }
        let repo = image_repository(image);
        let last = repo.rsplit('/').next().unwrap_or(repo);
        if !SINGLETON_IMAGES.contains(&last) {
            continue;
        }
        by_repo.entry(repo).or_default().push((svc, group));
    }
    for (repo, services) in by_repo {
        let Some((first, first_group)) = services.first() else {
            continue;
        };
        for (svc, group) in &services[1..] {
            if group != first_group {
                out.push(Finding::warning(
                    "duplicate-service",
                    at(project, &["services", &svc.name]),
                    format!(
                        "`{}` and `{}` both run `{repo}`, which usually runs once per environment",
                        first.name, svc.name
                    ),
                    &format!("keep one `{repo}` service, or give `{}` a profile if it is meant as a second instance", svc.name),
                ));
            }
        }
    }
}

/// A subnet as (address as u128, prefix length, is IPv6); IPv4 in the top bits.
type Cidr = (u128, u32, bool);

/// Parse `a.b.c.d/n` or an IPv6 CIDR.
fn parse_cidr(s: &str) -> Option<Cidr> {
    let (ip, len) = s.trim().split_once('/')?;
    let len: u32 = len.parse().ok()?;
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(v4) if len <= 32 => Some((u128::from(u32::from(v4)) << 96, len, false)),
        IpAddr::V6(v6) if len <= 128 => Some((u128::from(v6), len, true)),
        _ => None,
    }
}

fn cidrs_overlap(a: Cidr, b: Cidr) -> bool {
    if a.2 != b.2 {
        return false;
    }
    let len = a.1.min(b.1);
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    (a.0 & mask) == (b.0 & mask)
}

fn subnet_overlaps(project: &Project, out: &mut Vec<Finding>) {
    // (network, index in ipam.config, subnet as written, parsed)
    let mut subnets: Vec<(String, usize, String, Cidr)> = Vec::new();
    let Some(networks) = project.section("networks") else {
        return;
    };
    for (name, net) in networks {
        let name = key_str(name);
        let Some(Value::Sequence(configs)) = net.get("ipam").and_then(|i| i.get("config")) else {
            continue;
        };
        for (i, config) in configs.iter().enumerate() {
            let Some(subnet) = config.get("subnet").map(scalar_string) else {
                continue;
            };
            match parse_cidr(&subnet) {
                Some(cidr) => subnets.push((name.clone(), i, subnet, cidr)),
                None => out.push(Finding::error(
                    "invalid-subnet",
                    subnet_location(project, &name, i),
                    format!("network `{name}` has subnet `{subnet}`, which is not a CIDR"),
                    "write the subnet as ADDRESS/PREFIX, e.g. 172.28.0.0/16",
                )),
            }
        }
    }
    for (j, (name, i, subnet, cidr)) in subnets.iter().enumerate() {
        if let Some((other, _, other_subnet, _)) = subnets[..j]
            .iter()
            .find(|(_, _, _, c)| cidrs_overlap(*c, *cidr))
        {
            out.push(Finding::error(
                "overlapping-subnet",
                subnet_location(project, name, *i),
                format!(
                    "network `{name}` subnet {subnet} overlaps `{other}` subnet {other_subnet}"
                ),
                "give each network its own non-overlapping subnet",
            ));
        }
    }
}

fn subnet_location(project: &Project, network: &str, i: usize) -> Option<Location> {
    let path = [
        Seg::key("networks"),
        Seg::key(network),
        Seg::key("ipam"),
        Seg::key("config"),
        Seg::Index(i),
        Seg::key("subnet"),
    ];
    project.locate_nearest(&path)
}

/// `127.0.0.1` (any of 127/8) or `::1`.
fn is_loopback(port: &Port) -> bool {
    port.host_ip
        .as_deref()
        .and_then(|ip| ip.parse::<IpAddr>().ok())
        .is_some_and(|ip| ip.is_loopback())
}

/// Prod publishes nothing from the base file's services and nothing beyond
/// loopback (overlays such as betanet keep their loopback ports: Compose v1
/// cannot remove ports in a later file). Dev publishes only on loopback.
fn exposure(project: &Project, kind: Kind, out: &mut Vec<Finding>) {
    let base: Vec<String> = project
        .files
        .first()
        .and_then(|f| f.model.get("services"))
        .and_then(Value::as_mapping)
        .map(|m| m.keys().map(key_str).collect())
        .unwrap_or_default();
    for svc in project.services() {
        for port in &svc.ports {
            let finding = match kind {
                Kind::Prod
                    if port.all_interfaces() || !is_loopback(port) || base.contains(&svc.name) =>
                {
                    Finding::error(
                        "prod-publishes-port",
                        port_location(project, &svc.name, port),
                        format!(
                            "prod publishes `{}` of service `{}` on the host",
                            port.to_short(),
                            svc.name
                        ),
                        "remove the port in prod; reach the service over the compose network",
                    )
                }
                Kind::Dev if !is_loopback(port) => Finding::error(
                    "public-bind",
                    port_location(project, &svc.name, port),
                    format!(
                        "dev publishes `{}` of service `{}` on all interfaces",
                        port.to_short(),
                        svc.name
                    ),
                    "bind it to loopback: \"127.0.0.1:HOST:CONTAINER\"",
                ),
                _ => continue,
            };
            out.push(finding);
        }
    }
}

/// A missing relative bind source is a mistake in the project; a missing
/// absolute one is usually a host path Docker creates (empty) itself.
fn bind_paths(project: &Project, out: &mut Vec<Finding>) {
    for svc in project.services() {
        for mount in &svc.volumes {
            let Some(source) = &mount.source else {
                continue;
            };
            if mount.kind != MountKind::Bind || source.starts_with('~') {
                continue;
            }
            let absolute = std::path::Path::new(source).is_absolute();
            if project.dir.join(source).exists() {
                continue;
            }
            let loc = mount_location(project, &svc.name, &mount.target);
            out.push(if absolute {
                Finding::warning(
                    "missing-bind-source",
                    loc,
                    format!(
                        "service `{}` bind-mounts host path `{source}`, which does not exist here; Docker will create it as an empty directory",
                        svc.name
                    ),
                    &format!("create `{source}` on the host first if the service expects content there"),
                )
            } else {
                Finding::error(
                    "missing-bind-source",
                    loc,
                    format!(
                        "service `{}` bind-mounts `{source}`, which does not exist in {}",
                        svc.name,
                        project.dir.display()
                    ),
                    "create the path (relative paths resolve against the directory of the first compose file) or fix the mount",
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prod_flags_a_password_inside_a_url() {
        let dir = std::env::temp_dir().join(format!("fog-url-cred-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("prod.yml");
        std::fs::write(
            &file,
            "services:\n  a:\n    image: x:1\n    environment:\n      DATABASE_URL: postgres://fog:${PW}@db/fog\n      PLAIN: postgres://fog@db/fog\n",
        )
        .unwrap();
        let env = crate::compose::EnvSource::from_pairs([("PW", "s3cret")]);
        let project = Project::load(&[file], &env).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let rules = |kind| -> Vec<&str> {
            run(&project, kind)
                .iter()
                .map(|f| f.rule)
                .filter(|r| *r == "prod-url-credential")
                .collect()
        };
        assert_eq!(rules(Kind::Prod), ["prod-url-credential"]);
        assert!(rules(Kind::Dev).is_empty());
    }

    #[test]
    fn repositories() {
        assert_eq!(
            image_repository("prom/prometheus:v2.53.2"),
            "prom/prometheus"
        );
        assert_eq!(image_repository("localhost:5000/x"), "localhost:5000/x");
        assert_eq!(image_repository("x@sha256:abc"), "x");
    }

    #[test]
    fn cidr_overlap() {
        let a = parse_cidr("172.28.0.0/16").unwrap();
        assert!(cidrs_overlap(a, parse_cidr("172.28.5.0/24").unwrap()));
        assert!(!cidrs_overlap(a, parse_cidr("172.30.0.0/16").unwrap()));
        assert!(cidrs_overlap(
            parse_cidr("10.0.0.0/8").unwrap(),
            parse_cidr("10.200.0.0/16").unwrap()
        ));
        assert!(parse_cidr("172.28.0.0").is_none());
    }
}
