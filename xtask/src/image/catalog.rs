//! Which images an environment runs, as the compose model says: each
//! service's merged, interpolated `image:` (read with the variables bring-up
//! uses), and where its default comes from, the `${VAR:-default}` of the
//! service's `image:` line. The default also says how an image comes into
//! the engine ([`source_of`]): `fog-compute/<name>` is built by `images
//! build`, a third-party image whose repository ends in an
//! [`OFFLINE_SERVICES`] name has an offline equivalent built from Debian
//! packages, anything else can only be pulled.

use std::path::Path;

use anyhow::Result;

use super::envfile::image_env;
use crate::compose::{interpolate::variable_default, EnvSource, Project, ProjectLoader, Seg};
use crate::environments::Environment;

/// How an image variable's image comes into the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Built by `images build` from `docker/<name>/`.
    Project(String),
    /// Pulled from a registry; `offline` names its Debian-built stand-in.
    Upstream(Option<&'static OfflineService>),
}

/// A third-party service built offline from Debian packages.
#[derive(Debug, PartialEq, Eq)]
pub struct OfflineService {
    /// Image name below the offline repository (`fog-offline/`) and
    /// directory below `docker/offline/`.
    pub name: &'static str,
    /// The Debian package that provides it and the upstream version prefix
    /// it must have (the tag is the full upstream version, see [`tag_for`]).
    pub package: &'static str,
    pub version_prefix: &'static str,
}

impl OfflineService {
    /// `fog-offline/<name>` (see [`crate::global::offline_repo`]), the
    /// repository of every tag of this service.
    pub fn repository(&self) -> String {
        format!("{}/{}", crate::global::offline_repo(), self.name)
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

/// The repository prefix of the images `images build` makes (`fog-compute/<name>`).
pub const PROJECT_REPOSITORY: &str = "fog-compute/";

/// How the image `default` comes into the engine: `fog-compute/<name>` is a
/// project image, a repository whose last segment names an offline service
/// (`prom/prometheus`, `postgres`) has an offline build, the rest is pulled.
pub fn source_of(default: &str) -> Source {
    let repo = repository(default);
    if let Some(name) = repo.strip_prefix(PROJECT_REPOSITORY) {
        return Source::Project(name.to_string());
    }
    let last = repo.rsplit('/').next().unwrap_or(repo);
    Source::Upstream(OFFLINE_SERVICES.iter().find(|s| s.name == last))
}

/// `prom/prometheus` of `prom/prometheus:v2.53.2` (a registry port is kept).
fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    }
}

/// One service's image in an environment's merged model.
#[derive(Debug, Clone)]
struct ServiceImage {
    service: String,
    /// The image after interpolation.
    image: String,
    /// `(VAR, default)` when the service's `image:` line is `${VAR:-default}`.
    variable: Option<(String, String)>,
}

/// The services of `project` that have an image, in file order.
fn service_images(project: &Project) -> Vec<ServiceImage> {
    project
        .services()
        .iter()
        .filter_map(|svc| {
            let image = svc.image.clone()?;
            let at = [Seg::key("services"), Seg::key(&svc.name), Seg::key("image")];
            let variable = project
                .raw_at(&at)
                .and_then(|(_, raw)| variable_default(raw.as_str()?))
                .map(|(var, default)| (var.to_string(), default.to_string()));
            Some(ServiceImage {
                service: svc.name.clone(),
                image,
                variable,
            })
        })
        .collect()
}

fn load(files: &[std::path::PathBuf], loader: &mut ProjectLoader) -> Result<Project> {
    Ok(loader.load(files)?)
}

/// An image the environment needs and where it comes from.
#[derive(Debug, Clone)]
pub struct Needed {
    /// The image variable that sets it, if the compose file uses one.
    pub var: Option<String>,
    /// The image reference after interpolation.
    pub image: String,
    pub services: Vec<String>,
    pub source: Source,
}

/// Images the environment needs, one entry per distinct image, in file order.
pub fn needed(env: &Environment, root: &Path) -> Result<Vec<Needed>> {
    let vars = image_env(root)?;
    let files: Vec<_> = env.files().iter().map(|f| root.join(f)).collect();
    let project = load(&files, &mut ProjectLoader::new(&vars))?;
    let mut out: Vec<Needed> = Vec::new();
    for s in service_images(&project) {
        match out.iter_mut().find(|n| n.image == s.image) {
            Some(n) => n.services.push(s.service),
            None => out.push(Needed {
                source: s
                    .variable
                    .as_ref()
                    .map_or(Source::Upstream(None), |(_, default)| source_of(default)),
                var: s.variable.map(|(var, _)| var),
                image: s.image,
                services: vec![s.service],
            }),
        }
    }
    Ok(out)
}

/// One image variable of the overlays: the services whose `image:` line is
/// `${VAR:-default}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageVar {
    pub var: String,
    pub default: String,
    pub services: Vec<String>,
    pub source: Source,
}

/// Every image variable of the repository's overlays, from the models of
/// every named environment (each file parsed once), in file order.
pub fn image_vars(root: &Path) -> Result<Vec<ImageVar>> {
    image_vars_with(root, &image_env(root)?)
}

fn image_vars_with(root: &Path, vars: &EnvSource) -> Result<Vec<ImageVar>> {
    let mut loader = ProjectLoader::new(vars);
    let mut out: Vec<ImageVar> = Vec::new();
    for env in Environment::all() {
        let files: Vec<_> = env.files().iter().map(|f| root.join(f)).collect();
        for s in service_images(&load(&files, &mut loader)?) {
            let Some((var, default)) = s.variable else {
                continue;
            };
            match out.iter_mut().find(|v| v.var == var) {
                Some(v) if v.default != default => anyhow::bail!(
                    "{var} has two defaults in the overlays: `{}` and `{default}` (service `{}`)",
                    v.default,
                    s.service
                ),
                Some(v) if !v.services.contains(&s.service) => v.services.push(s.service),
                Some(_) => {}
                None => out.push(ImageVar {
                    source: source_of(&default),
                    var,
                    default,
                    services: vec![s.service],
                }),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

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
    fn sources_follow_the_default_image() {
        assert_eq!(
            source_of("fog-compute/mixnode:0.1.0"),
            Source::Project("mixnode".into())
        );
        assert_eq!(
            source_of("prom/node-exporter:v1.8.2"),
            Source::Upstream(Some(&OFFLINE_SERVICES[3]))
        );
        assert_eq!(
            source_of("postgres:15.8-alpine"),
            Source::Upstream(Some(&OFFLINE_SERVICES[0]))
        );
        assert_eq!(source_of("grafana/loki:2.9.10"), Source::Upstream(None));
        assert_eq!(
            source_of("localhost:5000/prom/prometheus@sha256:ab"),
            Source::Upstream(Some(&OFFLINE_SERVICES[1]))
        );
    }

    /// The catalog is the overlays' `image:` lines as the compose model reads
    /// them: every service of every named environment that runs an image
    /// takes it from an image variable with one default, `.env.example`
    /// offers that default, and the defaults name every project image under
    /// `docker/` and every offline service.
    #[test]
    fn catalog_is_the_overlays_image_lines_read_by_the_model() {
        let root = crate::project_root();
        let vars = image_vars(&root).unwrap();
        let example = crate::dotenv::EnvFile::read(&root.join(".env.example")).unwrap();
        for env in Environment::all() {
            let files: Vec<_> = env.files().iter().map(|f| root.join(f)).collect();
            let project = Project::load(&files, &image_env(&root).unwrap()).unwrap();
            for s in service_images(&project) {
                let (var, default) = s.variable.unwrap_or_else(|| {
                    panic!(
                        "{env}: service `{}` has a literal image `{}`; use ${{VAR:-default}}",
                        s.service, s.image
                    )
                });
                let listed = vars.iter().find(|v| v.var == var).unwrap();
                assert_eq!(listed.default, default, "{env}: {var}");
                assert!(listed.services.contains(&s.service), "{env}: {var}");
            }
        }
        for v in &vars {
            assert_eq!(
                example.get(&v.var),
                Some(v.default.as_str()),
                ".env.example offers {} with the overlays' default",
                v.var
            );
        }
        let mut built: Vec<String> = vars
            .iter()
            .filter_map(|v| match &v.source {
                Source::Project(name) => Some(name.clone()),
                Source::Upstream(_) => None,
            })
            .collect();
        built.sort();
        assert_eq!(built, super::super::project_images().unwrap());
        for offline in OFFLINE_SERVICES {
            let users = vars
                .iter()
                .filter(|v| v.source == Source::Upstream(Some(offline)))
                .count();
            assert_eq!(users, 1, "offline service `{}`", offline.name);
        }
        let mixnode = vars.iter().find(|v| v.var == "MIXNODE_IMAGE").unwrap();
        assert_eq!(
            mixnode.services,
            ["mixnode-1", "mixnode-2", "mixnode-3", "loadgen"]
        );
        let env: Environment = "dev+betanet".parse().unwrap();
        let needed = needed(&env, &root).unwrap();
        let in_order: Vec<_> = needed.iter().filter_map(|n| n.var.as_deref()).collect();
        assert_eq!(
            in_order,
            [
                "POSTGRES_IMAGE",
                "MIGRATE_IMAGE",
                "PROMETHEUS_IMAGE",
                "GRAFANA_IMAGE",
                "LOKI_IMAGE",
                "MIXNODE_IMAGE"
            ]
        );
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
        assert_eq!(needed[0].source, Source::Upstream(None));
        assert_eq!(needed[1].image, "fog-compute/mixnode:0.1.0");
        assert_eq!(needed[1].var.as_deref(), Some("MIXNODE_IMAGE"));
        assert_eq!(needed[1].services, ["mixnode-1", "mixnode-2"]);
        assert_eq!(needed[1].source, Source::Project("mixnode".into()));
    }
}
