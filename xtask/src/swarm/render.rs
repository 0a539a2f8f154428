//! Rendering the merged compose model into a stack file `docker stack deploy`
//! accepts (compose schema 3.9). The input is the model `cargo xtask config`
//! prints ([`Project::config`]: absolute host paths, `$` escaped), taken
//! from the compose model as it is, so there is one reading of the overlays. Every key Swarm ignores or rejects is
//! translated or reported as a [`Note`], never silently lost: `restart`
//! becomes `deploy.restart_policy`, `build` and `container_name` are dropped,
//! `depends_on` (no start order in Swarm) is dropped with what each service
//! must tolerate, services behind `profiles` are left out, host-IP ports are
//! left out (Swarm binds every interface) unless `--publish`, read-only bind
//! mounts of files below the project become Swarm configs, file secrets
//! become external Swarm secrets, bridge networks become attachable overlay
//! networks on the same subnets, service-level `tmpfs` (which `docker stack
//! deploy` ignores) becomes `type: tmpfs` mounts. Rolling update, rollback and restart
//! policies get safe defaults that the overlays' `deploy:` keys override.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_yaml::{Mapping, Value};

use super::assets::{self, Asset};
use super::policy::{filter_keys, one_shot_services, render_deploy, DeployDefaults};
use crate::compose::{
    key_str, types::scalar_string, Location, Mount, MountKind, Project, Seg, SourceFile,
};

/// Service keys Swarm (compose schema 3.9) uses as they are.
const KEPT: &[&str] = &[
    "cap_add",
    "cap_drop",
    "command",
    "credential_spec",
    "dns",
    "dns_search",
    "entrypoint",
    "environment",
    "extra_hosts",
    "hostname",
    "image",
    "init",
    "labels",
    "logging",
    "read_only",
    "stdin_open",
    "stop_grace_period",
    "stop_signal",
    "sysctls",
    "tty",
    "ulimits",
    "user",
    "working_dir",
];

/// Healthcheck keys of schema 3.9 (`start_interval` is newer).
const HEALTHCHECK_KEYS: &[&str] = &[
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "disable",
];

/// What the renderer needs besides the model.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The stack name (`docker stack deploy ... NAME`).
    pub stack: String,
    /// `(role or service, replicas)` from `--replicas`.
    pub replicas: Vec<(String, u64)>,
    /// Publish host-IP ports on every interface instead of leaving them out.
    pub publish: bool,
    /// Image reference -> reference pinned by digest, where one is known.
    pub pinned: BTreeMap<String, String>,
    /// Services to leave out (no image anywhere), with the reason.
    pub left_out: BTreeMap<String, String>,
    /// Report a missing secret file instead of failing (`check --target swarm`).
    pub lenient: bool,
    /// `(role or service, constraint)` from `--placement`, e.g.
    /// `("mixnode", "node.labels.fog.mix == true")`.
    pub placement: Vec<(String, String)>,
    /// `vip` (Swarm's default, needs IPVS in every node's kernel) or `dnsrr`
    /// (service names resolve to the task addresses, as with Compose).
    pub endpoint_mode: EndpointMode,
    /// The environment the model comes from (`betanet`), put on every
    /// container as a label so the data commands find its credentials.
    pub environment: Option<String>,
}

/// How a service name resolves on the overlay networks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum EndpointMode {
    /// DNS round robin over the task addresses; ports publish in host mode.
    #[default]
    Dnsrr,
    /// A virtual IP balanced by IPVS; ports publish on the ingress mesh.
    Vip,
}

impl EndpointMode {
    pub fn name(self) -> &'static str {
        match self {
            EndpointMode::Dnsrr => "dnsrr",
            EndpointMode::Vip => "vip",
        }
    }
}

/// What happened to a key Swarm does not take as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Rewritten into the Swarm form.
    Translated,
    /// Removed: Swarm would ignore or reject it.
    Dropped,
    /// The whole service is not deployed.
    LeftOut,
}

/// One translated, dropped or left-out key.
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub service: Option<String>,
    pub key: String,
    pub action: Action,
    pub message: String,
    #[serde(skip)]
    pub at: Option<Location>,
}

/// The rendered stack and everything needed to deploy it.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The stack file as a YAML value.
    pub stack: Value,
    pub notes: Vec<Note>,
    /// Swarm secrets to create before the deploy.
    pub secrets: Vec<Asset>,
    /// Swarm configs to create before the deploy.
    pub configs: Vec<Asset>,
    /// Deployed services (compose names), in model order.
    pub services: Vec<String>,
    /// Services that run once and exit (restart on failure only).
    pub one_shots: Vec<String>,
}

impl Plan {
    pub fn to_yaml(&self) -> String {
        crate::compose::emit::to_yaml(&self.stack)
    }
}

/// Render `project` for Swarm.
pub fn render(project: &Project, opts: &Options) -> Result<Plan> {
    let model = project.config();
    let mut notes = Vec::new();
    let mut note = |service: Option<&str>, key: &str, action: Action, message: String| {
        let at = match service {
            Some(s) => project.locate_nearest(&[Seg::key("services"), Seg::key(s), Seg::key(key)]),
            None => project.locate_nearest(&[Seg::key(key)]),
        };
        notes.push(Note {
            service: service.map(str::to_string),
            key: key.to_string(),
            action,
            message,
            at,
        });
    };
    let one_shots = one_shot_services(project);
    for role in opts
        .replicas
        .iter()
        .map(|r| &r.0)
        .chain(opts.placement.iter().map(|p| &p.0))
    {
        if !project
            .services()
            .iter()
            .any(|s| matches_role(project, &s.name, role))
        {
            crate::usage_bail!(
                "--replicas/--placement {role}=...: no service or role `{role}` in this environment; known: {}",
                project.service_names().join(", ")
            );
        }
    }

    let mut services = Mapping::new();
    let mut deployed = Vec::new();
    let mut configs: Vec<Asset> = Vec::new();
    let empty = Mapping::new();
    let model_services = model
        .get("services")
        .and_then(Value::as_mapping)
        .unwrap_or(&empty);
    for svc in project.services() {
        let name = svc.name.as_str();
        if let Some(reason) = opts.left_out.get(name) {
            note(Some(name), "image", Action::LeftOut, reason.clone());
            continue;
        }
        if !svc.profiles.is_empty() {
            note(
                Some(name),
                "profiles",
                Action::LeftOut,
                format!(
                    "only in profile(s) {}, which a stack cannot activate; run it on the stack's network with `docker run --network NETWORK`",
                    svc.profiles.join(", ")
                ),
            );
            continue;
        }
        let raw = model_services
            .get(name)
            .and_then(Value::as_mapping)
            .unwrap_or(&empty);
        let mut out = Mapping::new();
        let one_shot = one_shots.contains(name);
        for (k, v) in raw {
            let key = key_str(k);
            match key.as_str() {
                k if KEPT.contains(&k) => {
                    out.insert(key.as_str().into(), v.clone());
                }
                "image" => {}
                "healthcheck" => {
                    out.insert("healthcheck".into(), filter_keys(v, HEALTHCHECK_KEYS));
                }
                "networks" | "secrets" | "deploy" | "restart" | "volumes" | "ports"
                | "profiles" | "tmpfs" => {}
                "build" => note(
                    Some(name),
                    "build",
                    Action::Dropped,
                    format!(
                        "Swarm builds nothing; the image {} is deployed",
                        svc.image.as_deref().unwrap_or("(none)")
                    ),
                ),
                "depends_on" => {
                    for (dep, cond) in &svc.depends_on {
                        let what = match cond.as_str() {
                            "service_completed_successfully" => format!(
                                "Swarm has no start order: `{name}` starts before one-shot `{dep}` completes and must retry until it has"
                            ),
                            _ => format!(
                                "Swarm has no start order ({cond} is not waited for): `{name}` must retry `{dep}` until it answers"
                            ),
                        };
                        note(Some(name), "depends_on", Action::Dropped, what);
                    }
                }
                other => note(
                    Some(name),
                    other,
                    Action::Dropped,
                    format!("Swarm ignores `{other}`"),
                ),
            }
        }
        if let Some(environment) = &opts.environment {
            add_label(&mut out, super::ENVIRONMENT_LABEL, environment);
        }
        let image = svc.image.clone().unwrap_or_default();
        let pinned = opts.pinned.get(&image).cloned().unwrap_or(image);
        out.insert("image".into(), Value::from(pinned));
        if let Some(nets) = raw.get("networks") {
            out.insert("networks".into(), nets.clone());
        }
        if let Some(secrets) = raw.get("secrets") {
            out.insert("secrets".into(), secrets.clone());
        }
        render_ports(svc, opts, &mut out, &mut note);
        let (mut volumes, service_configs) =
            render_volumes(project, name, raw.get("volumes"), &opts.stack, &mut note)?;
        volumes.extend(render_tmpfs(name, raw.get("tmpfs"), &mut note));
        if !volumes.is_empty() {
            out.insert("volumes".into(), Value::Sequence(volumes));
        }
        if !service_configs.is_empty() {
            let refs = service_configs
                .iter()
                .map(|(asset, target)| {
                    let mut m = Mapping::new();
                    m.insert("source".into(), asset.key.clone().into());
                    m.insert("target".into(), target.clone().into());
                    m.insert("mode".into(), Value::from(0o444));
                    Value::Mapping(m)
                })
                .collect();
            out.insert("configs".into(), Value::Sequence(refs));
            for (asset, _) in service_configs {
                if !configs.iter().any(|c| c.key == asset.key) {
                    configs.push(asset);
                }
            }
        }
        let replicas = opts
            .replicas
            .iter()
            .rev()
            .find(|(role, _)| matches_role(project, name, role))
            .map(|(_, n)| *n);
        let stateful = svc
            .volumes
            .iter()
            .any(|m| m.kind == MountKind::Volume && !m.read_only && m.source.is_some());
        let deploy = render_deploy(
            raw,
            &DeployDefaults {
                one_shot,
                stateful,
                healthcheck: svc.has_healthcheck(),
                replicas,
                endpoint_mode: opts.endpoint_mode,
            },
            &mut |key, message| note(Some(name), key, Action::Translated, message),
        );
        let mut deploy = deploy;
        add_constraints(&mut deploy, project, name, &opts.placement);
        out.insert("deploy".into(), deploy);
        services.insert(name.into(), Value::Mapping(out));
        deployed.push(name.to_string());
    }

    let mut stack = Mapping::new();
    stack.insert("version".into(), "3.9".into());
    stack.insert("services".into(), Value::Mapping(services));
    if let Some(nets) = model.get("networks").and_then(Value::as_mapping) {
        let mut out = Mapping::new();
        for (k, v) in nets {
            out.insert(k.clone(), overlay_network(&key_str(k), v, &mut note));
        }
        stack.insert("networks".into(), Value::Mapping(out));
    }
    if let Some(vols) = model.get("volumes").and_then(Value::as_mapping) {
        stack.insert("volumes".into(), Value::Mapping(vols.clone()));
    }
    let secrets = render_secrets(&model, opts, &mut note)?;
    if !secrets.is_empty() {
        stack.insert("secrets".into(), external(&secrets));
    }
    if !configs.is_empty() {
        stack.insert("configs".into(), external(&configs));
    }
    if let Some(cfgs) = model.get("configs").and_then(Value::as_mapping) {
        if !cfgs.is_empty() {
            note(
                None,
                "configs",
                Action::Dropped,
                "top-level `configs` are not supported by this renderer yet; mount the file read-only instead".into(),
            );
        }
    }
    Ok(Plan {
        stack: Value::Mapping(stack),
        notes,
        secrets,
        configs,
        services: deployed,
        one_shots: one_shots.into_iter().collect(),
    })
}

/// `project` with `compose/swarm.yml` merged last, restricted to the
/// services `project` already has (the overlay adds policies, no services).
pub fn with_swarm_overlay(project: &Project) -> Result<Project> {
    let path = crate::project_root()
        .join(crate::environments::COMPOSE_DIR)
        .join("swarm.yml");
    let mut files: Vec<SourceFile> = project.files.iter().map(|f| (**f).clone()).collect();
    if path.is_file() {
        let mut overlay = SourceFile::load(&path, project.env())?;
        let present = project.service_names();
        if let Some(Value::Mapping(services)) = overlay.model.get_mut("services") {
            services.retain(|k, _| present.contains(&key_str(k).as_str()));
        }
        files.push(overlay);
    }
    Ok(Project::from_sources(files, project.env())?)
}

/// Append the `--placement` constraints that match `service`.
fn add_constraints(
    deploy: &mut Value,
    project: &Project,
    service: &str,
    rules: &[(String, String)],
) {
    let wanted: Vec<Value> = rules
        .iter()
        .filter(|(role, _)| matches_role(project, service, role))
        .map(|(_, c)| Value::from(c.as_str()))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let Some(m) = deploy.as_mapping_mut() else {
        return;
    };
    let placement = m
        .entry("placement".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    if let Some(p) = placement.as_mapping_mut() {
        let list = p
            .entry("constraints".into())
            .or_insert_with(|| Value::Sequence(Vec::new()));
        if let Some(list) = list.as_sequence_mut() {
            list.extend(wanted);
        }
    }
}

/// Whether `--replicas ROLE=N` applies to `service`: its name, a name prefix
/// before `-` (`mixnode` for `mixnode-2`), or its `NODE_TYPE` (`entry`).
pub fn matches_role(project: &Project, service: &str, role: &str) -> bool {
    service == role
        || service
            .strip_prefix(role)
            .is_some_and(|rest| rest.starts_with('-'))
        || project
            .service(service)
            .and_then(|s| s.env("NODE_TYPE"))
            .is_some_and(|t| t == role)
}

type NoteFn<'a> = dyn FnMut(Option<&str>, &str, Action, String) + 'a;

fn render_ports(
    svc: &crate::compose::Service,
    opts: &Options,
    out: &mut Mapping,
    note: &mut NoteFn<'_>,
) {
    let mut ports = Vec::new();
    for p in &svc.ports {
        let Some(published) = p.published else {
            note(
                Some(&svc.name),
                "ports",
                Action::Dropped,
                format!("{} publishes no fixed host port; Swarm services reach it on the overlay network", p.to_short()),
            );
            continue;
        };
        if !p.all_interfaces() && !opts.publish {
            note(
                Some(&svc.name),
                "ports",
                Action::Dropped,
                format!(
                    "{}: Swarm cannot bind one host IP (it publishes on every interface); left out, reach the service on the overlay network or pass --publish",
                    p.to_short()
                ),
            );
            continue;
        }
        if p.published.is_some_and(|r| r.start != r.end) || p.target.start != p.target.end {
            note(
                Some(&svc.name),
                "ports",
                Action::Dropped,
                format!("{}: port ranges are not rendered", p.to_short()),
            );
            continue;
        }
        if !p.all_interfaces() {
            note(
                Some(&svc.name),
                "ports",
                Action::Translated,
                format!(
                    "{} is published on every interface (--publish): Swarm cannot bind {}",
                    p.to_short(),
                    p.host_ip.as_deref().unwrap_or_default()
                ),
            );
        }
        let mut m = Mapping::new();
        m.insert("target".into(), Value::from(p.target.start));
        m.insert("published".into(), Value::from(published.start));
        m.insert("protocol".into(), p.protocol.clone().into());
        let mode = match opts.endpoint_mode {
            EndpointMode::Dnsrr => "host",
            EndpointMode::Vip => "ingress",
        };
        m.insert("mode".into(), mode.into());
        ports.push(Value::Mapping(m));
    }
    if !ports.is_empty() {
        out.insert("ports".into(), Value::Sequence(ports));
    }
}

type ServiceConfigs = Vec<(Asset, String)>;

/// Named volumes stay; read-only binds below the project become configs;
/// other binds stay (they must exist on every node) with a note.
fn render_volumes(
    project: &Project,
    service: &str,
    raw: Option<&Value>,
    stack: &str,
    note: &mut NoteFn<'_>,
) -> Result<(Vec<Value>, ServiceConfigs)> {
    let raw_items = raw
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let root = project.dir.parent().unwrap_or(&project.dir).to_path_buf();
    let mut volumes = Vec::new();
    let mut configs = Vec::new();
    for raw in raw_items {
        let mount = Mount::parse(&raw).map_err(|e| anyhow::anyhow!("service `{service}`: {e}"))?;
        let source = mount.source.as_deref().unwrap_or_default();
        if mount.kind != MountKind::Bind {
            volumes.push(raw);
            continue;
        }
        let path = Path::new(source);
        if mount.read_only && path.starts_with(&root) && path.exists() {
            let found = assets::bind_configs(stack, path, &mount.target)
                .with_context(|| format!("service `{service}`: bind mount {source}"))?;
            note(
                Some(service),
                "volumes",
                Action::Translated,
                format!(
                    "read-only bind {source} -> {} becomes {} Swarm config(s)",
                    mount.target,
                    found.len()
                ),
            );
            configs.extend(found);
        } else {
            note(
                Some(service),
                "volumes",
                Action::Translated,
                format!(
                    "bind mount {source} kept: it must exist on every node the service runs on"
                ),
            );
            volumes.push(raw);
        }
    }
    Ok((volumes, configs))
}

/// Service-level `tmpfs:` entries (`/path` or `/path:size=64m,...`) as
/// `type: tmpfs` mounts: `docker stack deploy` ignores the `tmpfs` key, so a
/// read-only service would find no writable directory (Postgres' socket
/// directory). `size` is kept (schema 3.9 has no other tmpfs option); other
/// options are reported as dropped.
fn render_tmpfs(service: &str, raw: Option<&Value>, note: &mut NoteFn<'_>) -> Vec<Value> {
    let items: Vec<String> = match raw {
        Some(Value::Sequence(items)) => items.iter().map(scalar_string).collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(other) => vec![scalar_string(other)],
    };
    let mut mounts = Vec::new();
    for item in items {
        let (target, options) = item.split_once(':').unwrap_or((item.as_str(), ""));
        let mut m = Mapping::new();
        m.insert("type".into(), "tmpfs".into());
        m.insert("target".into(), target.into());
        let mut dropped = Vec::new();
        for opt in options.split(',').filter(|o| !o.is_empty()) {
            match opt.split_once('=') {
                Some(("size", size)) if tmpfs_bytes(size).is_some() => {
                    let mut t = Mapping::new();
                    t.insert("size".into(), Value::from(tmpfs_bytes(size).unwrap_or(0)));
                    m.insert("tmpfs".into(), Value::Mapping(t));
                }
                _ => dropped.push(opt),
            }
        }
        let mut message =
            format!("{item} becomes a `type: tmpfs` mount (`docker stack deploy` ignores `tmpfs`)");
        if !dropped.is_empty() {
            message.push_str(&format!(
                "; option(s) {} dropped (schema 3.9 keeps `size` only)",
                dropped.join(",")
            ));
        }
        note(Some(service), "tmpfs", Action::Translated, message);
        mounts.push(Value::Mapping(m));
    }
    mounts
}

/// `64m`, `1g`, `65536k` or plain bytes as a byte count.
fn tmpfs_bytes(size: &str) -> Option<u64> {
    let lower = size.to_ascii_lowercase();
    let (digits, factor) = match lower.strip_suffix(['k', 'm', 'g']) {
        Some(d) => (
            d,
            match lower.chars().last() {
                Some('k') => 1 << 10,
                Some('m') => 1 << 20,
                _ => 1 << 30,
            },
        ),
        None => (lower.as_str(), 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// `key=value` in the service's container `labels` (list or mapping form).
fn add_label(service: &mut Mapping, key: &str, value: &str) {
    let labels = service
        .entry("labels".into())
        .or_insert_with(|| Value::Mapping(Mapping::new()));
    match labels {
        Value::Sequence(items) => {
            items.retain(|i| !scalar_string(i).starts_with(&format!("{key}=")));
            items.push(format!("{key}={value}").into());
        }
        Value::Mapping(m) => {
            m.insert(key.into(), value.into());
        }
        other => {
            let mut m = Mapping::new();
            m.insert(key.into(), value.into());
            *other = Value::Mapping(m);
        }
    }
}

/// A bridge network as an attachable overlay on the same subnets.
fn overlay_network(key: &str, v: &Value, note: &mut NoteFn<'_>) -> Value {
    let mut m = v.as_mapping().cloned().unwrap_or_default();
    if m.get("external").and_then(Value::as_bool) == Some(true) {
        return Value::Mapping(m);
    }
    let driver = m.get("driver").map(scalar_string);
    if driver.as_deref().is_some_and(|d| d != "overlay") {
        note(
            None,
            "networks",
            Action::Translated,
            format!(
                "network `{key}`: driver {} -> overlay (attachable), subnets kept",
                driver.unwrap_or_default()
            ),
        );
    }
    m.insert("driver".into(), "overlay".into());
    m.insert("attachable".into(), true.into());
    if let Some(opts) = m.get_mut("driver_opts").and_then(Value::as_mapping_mut) {
        opts.retain(|k, _| !key_str(k).starts_with("com.docker.network.bridge."));
    }
    Value::Mapping(m)
}

/// Top-level file secrets as Swarm secrets named by their content.
fn render_secrets(model: &Value, opts: &Options, note: &mut NoteFn<'_>) -> Result<Vec<Asset>> {
    let mut out = Vec::new();
    if let Some(secrets) = model.get("secrets").and_then(Value::as_mapping) {
        for (k, v) in secrets {
            let key = key_str(k);
            match v.get("file").map(scalar_string) {
                Some(file) if opts.lenient && !Path::new(&file).is_file() => note(
                    None,
                    "secrets",
                    Action::Dropped,
                    format!(
                        "secret `{key}`: {file} does not exist yet; a deploy fails until it does"
                    ),
                ),
                Some(file) => out.push(
                    Asset::secret(&opts.stack, &key, Path::new(&file))
                        .with_context(|| format!("secret `{key}`"))?,
                ),
                None => anyhow::bail!(
                    "secret `{key}` has no `file:`; only file secrets can be deployed to Swarm"
                ),
            }
        }
    }
    Ok(out)
}

/// `{key: {external: true, name: NAME}}` for secrets and configs the xtask creates.
fn external(assets: &[Asset]) -> Value {
    let mut m = Mapping::new();
    for a in assets {
        let mut item = Mapping::new();
        item.insert("external".into(), true.into());
        item.insert("name".into(), a.name.clone().into());
        m.insert(a.key.clone().into(), Value::Mapping(item));
    }
    Value::Mapping(m)
}
