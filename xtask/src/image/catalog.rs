//! Which images an environment needs. Each service's `image:` is read from the
//! environment's compose files (later overlays win, YAML anchors and merge keys
//! applied) and interpolated against `.env`; when the compose files are not
//! there yet, the built-in table of image variables stands in. The table also
//! says which images the project builds itself and which third-party images
//! have an offline equivalent built from Debian packages.

use std::{fs, path::Path};

use anyhow::{Context, Result};

use super::envfile::image_env;
use crate::compose::interpolate::interpolate;
use crate::environments::Environment;

/// How an image variable's image comes into the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Built by `images build` from `docker/<name>/`.
    Project(&'static str),
    /// Pulled from a registry; `offline` names its Debian-built stand-in.
    Upstream(Option<&'static OfflineService>),
}

/// A third-party service built offline from Debian packages.
#[derive(Debug, PartialEq, Eq)]
pub struct OfflineService {
    /// Image name below `fog-offline/` and directory below `docker/offline/`.
    pub name: &'static str,
    /// The Debian package that provides it and the upstream version prefix
    /// it must have (the tag is the full upstream version, see [`tag_for`]).
    pub package: &'static str,
    pub version_prefix: &'static str,
}

impl OfflineService {
    /// `fog-offline/<name>`, the repository of every tag of this service.
    pub fn repository(&self) -> String {
        format!("fog-offline/{}", self.name)
    }

    /// The image for Debian package version `debian_version` of its package.
    pub fn image(&self, debian_version: &str) -> String {
        format!("{}:{}", self.repository(), tag_for(debian_version))
    }

    /// The image name when the package version is not known yet (no base
    /// imported): the pinned prefix with `*` for the rest.
    pub fn image_pattern(&self) -> String {
        format!("{}:{}*-bookworm", self.repository(), self.version_prefix)
    }

    /// Whether `image` is one of this service's offline images.
    pub fn is_its_image(&self, image: &str) -> bool {
        image
            .strip_prefix(&self.repository())
            .is_some_and(|tag| tag.starts_with(':'))
    }
}

/// The tag for a Debian package version: the upstream version (no epoch, no
/// Debian revision, no `+ds`-style repack suffix) plus `-bookworm`, e.g.
/// `15.14-0+deb12u1` gives `15.14-bookworm` and `2.42.0+ds-5+deb12u1` gives
/// `2.42.0-bookworm`. A full version, so `check`'s floating-tag rule is quiet.
pub fn tag_for(debian_version: &str) -> String {
    let no_epoch = debian_version
        .split_once(':')
        .map_or(debian_version, |(_, v)| v);
    let upstream = no_epoch.rsplit_once('-').map_or(no_epoch, |(u, _)| u);
    let upstream = upstream.split('+').next().unwrap_or(upstream);
    format!("{upstream}-bookworm")
}

pub const OFFLINE_SERVICES: &[OfflineService] = &[
    OfflineService {
        name: "postgres",
        package: "postgresql-15",
        version_prefix: "15.",
    },
    OfflineService {
        name: "prometheus",
        package: "prometheus",
        version_prefix: "2.42.",
    },
    OfflineService {
        name: "alertmanager",
        package: "prometheus-alertmanager",
        version_prefix: "0.25.",
    },
    OfflineService {
        name: "node-exporter",
        package: "prometheus-node-exporter",
        version_prefix: "1.5.",
    },
];

/// One image variable of `.env.example`.
#[derive(Debug)]
pub struct ImageVar {
    pub var: &'static str,
    pub default: &'static str,
    pub overlay: &'static str,
    pub services: &'static [&'static str],
    pub source: Source,
}

const fn offline(i: usize) -> Source {
    Source::Upstream(Some(&OFFLINE_SERVICES[i]))
}

pub const IMAGE_VARS: &[ImageVar] = &[
    ImageVar {
        var: "POSTGRES_IMAGE",
        default: "postgres:15.8-alpine",
        overlay: "base",
        services: &["postgres"],
        source: offline(0),
    },
    ImageVar {
        var: "PROMETHEUS_IMAGE",
        default: "prom/prometheus:v2.53.2",
        overlay: "base",
        services: &["prometheus"],
        source: offline(1),
    },
    ImageVar {
        var: "GRAFANA_IMAGE",
        default: "grafana/grafana:11.2.0",
        overlay: "base",
        services: &["grafana"],
        source: Source::Upstream(None),
    },
    ImageVar {
        var: "LOKI_IMAGE",
        default: "grafana/loki:2.9.10",
        overlay: "base",
        services: &["loki"],
        source: Source::Upstream(None),
    },
    ImageVar {
        var: "MIGRATE_IMAGE",
        default: "fog-compute/migrate:0.1.0",
        overlay: "base",
        services: &["migrate"],
        source: Source::Project("migrate"),
    },
    ImageVar {
        var: "MIXNODE_IMAGE",
        default: "fog-compute/mixnode:0.1.0",
        overlay: "betanet",
        services: &["mixnode-1", "mixnode-2", "mixnode-3", "loadgen"],
        source: Source::Project("mixnode"),
    },
    ImageVar {
        var: "NODE_EXPORTER_IMAGE",
        default: "prom/node-exporter:v1.8.2",
        overlay: "monitoring",
        services: &["node-exporter"],
        source: offline(3),
    },
    ImageVar {
        var: "CADVISOR_IMAGE",
        default: "gcr.io/cadvisor/cadvisor:v0.49.1",
        overlay: "monitoring",
        services: &["cadvisor"],
        source: Source::Upstream(None),
    },
    ImageVar {
        var: "ALERTMANAGER_IMAGE",
        default: "prom/alertmanager:v0.27.0",
        overlay: "monitoring",
        services: &["alertmanager"],
        source: offline(2),
    },
];

/// An image the environment needs and where it comes from.
#[derive(Debug, Clone)]
pub struct Needed {
    /// The image variable that sets it, if the compose file uses one.
    pub var: Option<&'static str>,
    /// The image reference after interpolation.
    pub image: String,
    pub services: Vec<String>,
    pub source: Source,
}

/// Images the environment needs, one entry per distinct image, in file order.
pub fn needed(env: &Environment, root: &Path) -> Result<Vec<Needed>> {
    let vars = image_env(root)?;
    let files = env.files();
    let mut raw: Vec<(String, String)> = Vec::new();
    if files.iter().all(|f| root.join(f).is_file()) {
        for file in &files {
            for (service, image) in service_images(&root.join(file))? {
                match raw.iter_mut().find(|(s, _)| *s == service) {
                    Some(entry) => entry.1 = image,
                    None => raw.push((service, image)),
                }
            }
        }
    } else {
        for spec in IMAGE_VARS.iter().filter(|s| env.has(s.overlay)) {
            for service in spec.services {
                raw.push((
                    service.to_string(),
                    format!("${{{}:-{}}}", spec.var, spec.default),
                ));
            }
        }
    }
    let mut out: Vec<Needed> = Vec::new();
    for (service, raw_image) in raw {
        let spec = IMAGE_VARS.iter().find(|s| raw_image.contains(s.var));
        let image = interpolate(&raw_image, &vars).map_err(|e| {
            anyhow::anyhow!(
                "service `{service}` image `{raw_image}`: {e}; set the variable in .env"
            )
        })?;
        match out.iter_mut().find(|n| n.image == image) {
            Some(n) => n.services.push(service),
            None => out.push(Needed {
                var: spec.map(|s| s.var),
                source: spec.map_or(Source::Upstream(None), |s| s.source),
                image,
                services: vec![service],
            }),
        }
    }
    Ok(out)
}

/// `(service, raw image)` for every service of one compose file that sets `image:`.
fn service_images(path: &Path) -> Result<Vec<(String, String)>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut doc: serde_yaml::Value = serde_yaml::from_str(&text).with_context(|| {
        format!(
            "{}: not valid YAML; run `cargo xtask check`",
            path.display()
        )
    })?;
    doc.apply_merge()
        .with_context(|| format!("{}: bad YAML merge key", path.display()))?;
    let Some(services) = doc.get("services").and_then(|s| s.as_mapping()) else {
        return Ok(Vec::new());
    };
    Ok(services
        .iter()
        .filter_map(|(name, body)| {
            let image = body.get("image")?.as_str()?;
            Some((name.as_str()?.to_string(), image.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_forms() {
        // The image values go through the compose model's interpolation.
        let env = crate::compose::EnvSource::from_pairs([("SET", "x"), ("EMPTY", "")]);
        let interpolate =
            |text: &str, env: &crate::compose::EnvSource| interpolate(text, env).unwrap();
        assert_eq!(interpolate("${SET:-d}", &env), "x");
        assert_eq!(interpolate("${EMPTY:-d}", &env), "d");
        assert_eq!(interpolate("${EMPTY-d}", &env), "");
        assert_eq!(interpolate("${UNSET-d}", &env), "d");
        assert_eq!(interpolate("a/$SET:1 $$x", &env), "a/x:1 $x");
        assert_eq!(
            interpolate("prom/prometheus:${TAG:-v2.53.2}", &env),
            "prom/prometheus:v2.53.2"
        );
    }

    #[test]
    fn tags_are_full_upstream_versions() {
        assert_eq!(tag_for("15.14-0+deb12u1"), "15.14-bookworm");
        assert_eq!(tag_for("2.42.0+ds-5+deb12u1"), "2.42.0-bookworm");
        assert_eq!(tag_for("0.25.0-1+b4"), "0.25.0-bookworm");
        assert_eq!(tag_for("1:1.5.0-1"), "1.5.0-bookworm");
        let pg = &OFFLINE_SERVICES[0];
        assert_eq!(
            pg.image("15.18-0+deb12u1"),
            "fog-offline/postgres:15.18-bookworm"
        );
        assert!(pg.is_its_image("fog-offline/postgres:15.18-bookworm"));
        assert!(!pg.is_its_image("fog-offline/postgres-x:1.0"));
        assert_eq!(pg.image_pattern(), "fog-offline/postgres:15.*-bookworm");
    }

    #[test]
    fn fallback_table_covers_the_environment() {
        let root = std::env::temp_dir().join("xtask-catalog-empty-root");
        let env: Environment = "dev+betanet".parse().unwrap();
        let needed = needed(&env, &root).unwrap();
        let vars: Vec<_> = needed.iter().filter_map(|n| n.var).collect();
        assert_eq!(
            vars,
            [
                "POSTGRES_IMAGE",
                "PROMETHEUS_IMAGE",
                "GRAFANA_IMAGE",
                "LOKI_IMAGE",
                "MIGRATE_IMAGE",
                "MIXNODE_IMAGE"
            ]
        );
        let mixnode = needed
            .iter()
            .find(|n| n.var == Some("MIXNODE_IMAGE"))
            .unwrap();
        assert_eq!(mixnode.services.len(), 4);
        assert_eq!(mixnode.source, Source::Project("mixnode"));
    }

    /// The fallback table repeats the overlays' image defaults: tie the two,
    /// both ways, so neither can drift.
    #[test]
    fn image_vars_are_exactly_the_overlays_image_lines() {
        let root = crate::project_root();
        let mut seen = Vec::new();
        for overlay in ["base", "dev", "betanet", "prod", "monitoring"] {
            let file = root.join(format!("compose/{overlay}.yml"));
            for (service, raw) in service_images(&file).unwrap() {
                let spec = IMAGE_VARS
                    .iter()
                    .find(|s| s.services.contains(&service.as_str()))
                    .unwrap_or_else(|| {
                        panic!(
                            "{}: service `{service}` is missing from IMAGE_VARS",
                            file.display()
                        )
                    });
                assert_eq!(
                    (raw.as_str(), overlay),
                    (
                        format!("${{{}:-{}}}", spec.var, spec.default).as_str(),
                        spec.overlay
                    ),
                    "{}: service `{service}`",
                    file.display()
                );
                seen.push(service);
            }
        }
        for spec in IMAGE_VARS {
            for service in spec.services {
                assert!(
                    seen.iter().any(|s| s == service),
                    "IMAGE_VARS lists `{service}`, which no overlay defines with an image"
                );
            }
        }
    }

    #[test]
    fn later_overlay_wins_and_anchors_merge() {
        let root = std::env::temp_dir().join(format!("xtask-catalog-{}", std::process::id()));
        fs::create_dir_all(root.join("compose")).unwrap();
        fs::write(
            root.join("compose/base.yml"),
            "services:\n  postgres:\n    image: ${POSTGRES_IMAGE:-postgres:15.8-alpine}\n",
        )
        .unwrap();
        fs::write(
            root.join("compose/betanet.yml"),
            "x-mix: &mix\n  image: ${MIXNODE_IMAGE:-fog-compute/mixnode:0.1.0}\nservices:\n  mixnode-1:\n    <<: *mix\n  mixnode-2:\n    <<: *mix\n  postgres:\n    image: custom/pg:1\n",
        )
        .unwrap();
        let env: Environment = "betanet".parse().unwrap();
        let needed = needed(&env, &root).unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(needed[0].image, "custom/pg:1");
        assert_eq!(needed[0].var, None);
        assert_eq!(needed[1].image, "fog-compute/mixnode:0.1.0");
        assert_eq!(needed[1].services, ["mixnode-1", "mixnode-2"]);
    }
}
