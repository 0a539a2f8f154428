//! Staging one side for a live run: the merged model as `cargo xtask config`
//! prints it ([`Project::config`]: paths absolute, `$` escaped) rewritten into one compose file that
//! runs beside anything else on the engine. Published ports, container names
//! and profiled services are dropped; every network (the implicit `default`
//! too) gets a name under the run's project and a subnet of its own; named
//! volumes lose `name:`/`external` so `down -v` removes them; missing secret
//! files get a placeholder; an image that is not in the engine is replaced
//! by its offline build (`fog-offline/<service>`) when there is one, and a
//! service with no image at all is listed as not measured, never dropped
//! silently. Nothing here talks to Compose.

use serde_yaml::{Mapping, Value};
use xshell::{cmd, Shell};

use super::declared::repository;
use super::model::NotMeasured;
use crate::compose::{key_str, Project};
use crate::image::{image_vars, Source};
use crate::process::Runner;

/// A side ready to start.
#[derive(Debug)]
pub struct Staged {
    /// The compose file to run.
    pub yaml: String,
    /// Services that will run, with the image each runs.
    pub services: Vec<(String, String)>,
    pub not_measured: Vec<NotMeasured>,
    /// Docker names of the networks the file creates.
    pub networks: Vec<String>,
}

/// Where a service's image comes from in a live run.
#[derive(Debug, PartialEq, Eq)]
pub enum ImageChoice {
    Present(String),
    Missing(String),
}

/// The image to run for `image`: itself when present, else its offline
/// build when one is in the engine, else the reason why there is none.
pub fn choose_image(sh: &Shell, runner: &Runner, image: &str) -> ImageChoice {
    let present = |img: &str| crate::docker::image_exists(runner, img);
    if present(image) {
        return ImageChoice::Present(image.to_string());
    }
    let repo = repository(image);
    // The repository's image variables (from its overlays' model) say how an
    // image like this one comes into the engine.
    let vars = image_vars(&crate::project_root()).unwrap_or_default();
    let var = vars.into_iter().find(|v| repository(&v.default) == repo);
    let reason = match var.map(|v| v.source) {
        Some(Source::Upstream(Some(offline))) => {
            let format = "{{.Repository}}:{{.Tag}}";
            let wanted = offline.repository();
            let tags = runner
                .probe(cmd!(sh, "docker images --format {format} {wanted}"))
                .unwrap_or_default();
            let prefix = format!("{wanted}:{}", offline.version_prefix);
            if let Some(found) = tags.lines().find(|t| t.starts_with(&prefix)) {
                return ImageChoice::Present(found.to_string());
            }
            format!("{image} is not in the engine and nothing is pulled: `cargo xtask images offline --only {}` builds its offline image", offline.name)
        }
        Some(Source::Upstream(None)) => format!(
            "no image here: {image} is not in the engine, cannot be pulled, and Debian has no package for it"
        ),
        Some(Source::Project(_)) => {
            format!("{image} is not in the engine: `cargo xtask images build` builds it")
        }
        None => format!("{image} is not in the engine and nothing is pulled"),
    };
    ImageChoice::Missing(reason)
}

/// Rewrite `project` to run as compose project `name` on `subnets` (one
/// per network, in order; at least as many as the model has networks + 1).
/// `secret_dir` receives placeholder files for missing file secrets.
pub fn stage(
    sh: &Shell,
    runner: &Runner,
    project: &Project,
    name: &str,
    subnets: &[String],
    secret_dir: &std::path::Path,
) -> anyhow::Result<Staged> {
    let mut model = project.config();
    let mut not_measured = Vec::new();
    let mut services = Vec::new();
    let mut uses_default = false;
    if let Some(map) = model.get_mut("services").and_then(Value::as_mapping_mut) {
        let mut keep = Mapping::new();
        for (key, mut svc) in std::mem::take(map) {
            let service = key_str(&key);
            let profiled = svc
                .get("profiles")
                .and_then(Value::as_sequence)
                .is_some_and(|p| !p.is_empty());
            if profiled {
                continue;
            }
            if svc.get("network_mode").is_some() {
                not_measured.push(NotMeasured {
                    service,
                    reason: "uses network_mode, which cannot be isolated for a report".into(),
                });
                continue;
            }
            let Some(image) = svc.get("image").and_then(Value::as_str).map(String::from) else {
                not_measured.push(NotMeasured {
                    service,
                    reason: "has no image: (build-only services are not built for a report)".into(),
                });
                continue;
            };
            match choose_image(sh, runner, &image) {
                ImageChoice::Present(img) => {
                    if let Some(m) = svc.as_mapping_mut() {
                        m.insert("image".into(), Value::String(img.clone()));
                        for k in ["ports", "container_name", "profiles", "build"] {
                            m.remove(k);
                        }
                    }
                    uses_default |= svc.get("networks").is_none();
                    services.push((service, img));
                    keep.insert(key, svc);
                }
                ImageChoice::Missing(reason) => not_measured.push(NotMeasured { service, reason }),
            }
        }
        let kept: Vec<String> = services.iter().map(|(s, _)| s.clone()).collect();
        for svc in keep.values_mut() {
            match svc.get_mut("depends_on") {
                Some(Value::Mapping(deps)) => deps.retain(|k, _| kept.contains(&key_str(k))),
                Some(Value::Sequence(deps)) => deps.retain(|k| kept.contains(&key_str(k))),
                _ => {}
            }
        }
        *map = keep;
    }
    let top = model
        .as_mapping_mut()
        .ok_or_else(|| anyhow::anyhow!("the compose model is not a mapping"))?;
    let mut networks_out = Vec::new();
    let mut networks = top
        .remove("networks")
        .and_then(|v| v.as_mapping().cloned())
        .unwrap_or_default();
    if uses_default && !networks.contains_key("default") {
        networks.insert("default".into(), Value::Mapping(Mapping::new()));
    }
    if networks.len() > subnets.len() {
        anyhow::bail!(
            "{} networks but only {} subnets to give them",
            networks.len(),
            subnets.len()
        );
    }
    for ((key, net), subnet) in networks.iter_mut().zip(subnets) {
        let docker_name = format!("{name}-{}", key_str(key));
        let mut fresh = Mapping::new();
        fresh.insert("name".into(), docker_name.clone().into());
        fresh.insert("driver".into(), "bridge".into());
        if let Some(internal) = net.get("internal") {
            fresh.insert("internal".into(), internal.clone());
        }
        let ipam: Value = serde_yaml::from_str(&format!("config:\n  - subnet: {subnet}\n"))?;
        fresh.insert("ipam".into(), ipam);
        *net = Value::Mapping(fresh);
        networks_out.push(docker_name);
    }
    if !networks.is_empty() {
        top.insert("networks".into(), Value::Mapping(networks));
    }
    if let Some(Value::Mapping(volumes)) = top.get_mut("volumes") {
        for v in volumes.values_mut() {
            if let Value::Mapping(m) = v {
                m.remove("name");
                m.remove("external");
            }
        }
    }
    for section in ["secrets", "configs"] {
        if let Some(Value::Mapping(items)) = top.get_mut(section) {
            for (key, item) in items.iter_mut() {
                let file = item.get("file").and_then(Value::as_str).map(String::from);
                if file
                    .as_deref()
                    .is_some_and(|f| std::path::Path::new(f).is_file())
                {
                    continue;
                }
                let placeholder = secret_dir.join(format!("{section}-{}", key_str(key)));
                let value = crate::dotenv::random_secret(24)?;
                crate::dotenv::write_atomic(&placeholder, value.as_bytes(), 0o644)?;
                let mut m = Mapping::new();
                m.insert("file".into(), placeholder.display().to_string().into());
                *item = Value::Mapping(m);
            }
        }
    }
    Ok(Staged {
        yaml: serde_yaml::to_string(&model)?,
        services,
        not_measured,
        networks: networks_out,
    })
}
