//! The mapping of an old layout onto an environment, as pure logic over the
//! two compose models: each old service goes to the new service with the same
//! image repository that mounts a volume at one of its container paths (a
//! service without volumes: the same repository and, when several match, the
//! same name; no repository match: the same name), each of its named volumes
//! to the new service's volume at the same path, Postgres's data volume by
//! dump and restore with the old model's user, database and password, every
//! other by a verified copy. Services with no counterpart are left behind
//! with their volumes. An unclear choice (two old volumes for one new volume,
//! a mount path with no match, two new services alike) is a usage error that
//! names it and the `--map OLD_VOLUME=NEW_VOLUME` that settles it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::comparison::declared::repository;
use crate::compose::{types::MountKind, Project as Model, Service};
use crate::engine::Flavor;
use crate::UsageError;

/// Where Postgres keeps its cluster; the volume there moves by dump and restore.
pub const PG_DATA: &str = "/var/lib/postgresql/data";

/// The old Postgres: its service and the credentials of the old model.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct OldPostgres {
    pub service: String,
    pub user: String,
    pub database: String,
    #[serde(skip)]
    pub password: Option<String>,
}

/// How a volume's data moves.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum How {
    /// `pg_dump` of the old database, `pg_restore --no-owner --no-privileges
    /// --role=NEW` into the new one.
    DumpRestore,
    /// A copy by a helper container, verified by entry count and bytes.
    Copy,
}

/// One old volume and where it goes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct VolumeMove {
    pub old_service: String,
    pub old_key: String,
    /// The engine's name of the old volume (`<project>_<key>` unless named).
    pub old_name: String,
    pub new_service: String,
    pub new_key: String,
    pub new_name: String,
    pub target: String,
    pub how: How,
}

/// The whole mapping.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Plan {
    /// `(old service, new service)`.
    pub services: Vec<(String, String)>,
    /// `(old service, engine names of its volumes)`.
    pub left_behind: Vec<(String, Vec<String>)>,
    pub volumes: Vec<VolumeMove>,
    pub postgres: Option<OldPostgres>,
}

/// The engine's name of a top-level volume: its `name:`, an external
/// volume's key, else `<project>_<key>`.
pub fn engine_volume_name(model: &Model, project: &str, key: &str) -> String {
    let spec = model
        .section("volumes")
        .and_then(|v| v.get(key))
        .and_then(|v| v.as_mapping());
    if let Some(name) = spec.and_then(|m| m.get("name")).and_then(|n| n.as_str()) {
        return name.to_string();
    }
    let external = spec
        .and_then(|m| m.get("external"))
        .is_some_and(|e| e.as_bool().unwrap_or(true));
    if external {
        return key.to_string();
    }
    format!("{project}_{key}")
}

/// What Compose names the project of a folder: lowercase, keeping only
/// `[a-z0-9_-]`; Compose v2 (compose-go's `NormalizeProjectName`) then drops
/// a leading `-`/`_`, which Compose v1 (`normalize_name` in
/// `compose/cli/command.py`) keeps. The old stack was started by the same
/// engine, so its flavour decides.
pub fn compose_project_name(folder: &str, flavor: Flavor) -> String {
    let kept: String = folder
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    match flavor {
        Flavor::V1 => kept,
        Flavor::V2 => kept.trim_start_matches(['-', '_']).to_string(),
    }
}

/// `OLD=NEW` of `--map`.
pub fn parse_map(text: &str) -> Result<(String, String), UsageError> {
    match text.split_once('=') {
        Some((old, new)) if !old.trim().is_empty() && !new.trim().is_empty() => {
            Ok((old.trim().to_string(), new.trim().to_string()))
        }
        _ => Err(UsageError::new(format!(
            "--map `{text}`: use OLD_VOLUME=NEW_VOLUME, e.g. --map prometheus-data=prometheus_dev_data"
        ))),
    }
}

/// `(volume key, container path)` of each named volume a service mounts.
pub fn named_mounts(service: &Service) -> Vec<(String, String)> {
    service
        .volumes
        .iter()
        .filter(|m| m.kind == MountKind::Volume)
        .filter_map(|m| Some((m.source.clone()?, m.target.clone())))
        .collect()
}

fn repo_of(service: &Service) -> String {
    service.image.as_deref().map(repository).unwrap_or_default()
}

/// Map `old` (project `old_project`) onto `new` (project `new_project`).
pub fn map(
    old: &Model,
    old_project: &str,
    new: &Model,
    new_project: &str,
    maps: &[(String, String)],
) -> Result<Plan, UsageError> {
    let old_keys: Vec<String> = old.volume_names();
    let new_keys: Vec<String> = new.volume_names();
    let old_name = |k: &str| engine_volume_name(old, old_project, k);
    let new_name = |k: &str| engine_volume_name(new, new_project, k);
    // An explicit map by key or engine name.
    let mut explicit: BTreeMap<String, String> = BTreeMap::new();
    for (o, n) in maps {
        let Some(key) = old_keys.iter().find(|k| *k == o || old_name(k) == *o) else {
            return Err(UsageError::new(format!(
                "--map {o}={n}: the old layout has no volume `{o}` (it has: {})",
                old_keys.join(", ")
            )));
        };
        let Some(new_key) = new_keys.iter().find(|k| *k == n || new_name(k) == *n) else {
            return Err(UsageError::new(format!(
                "--map {o}={n}: the environment has no volume `{n}` (it has: {})",
                new_keys.join(", ")
            )));
        };
        explicit.insert(key.clone(), new_key.clone());
    }
    let owner_of = |key: &str| -> Option<(&Service, String)> {
        new.services().iter().find_map(|s| {
            named_mounts(s)
                .into_iter()
                .find(|(k, _)| k == key)
                .map(|(_, t)| (s, t))
        })
    };

    let mut plan = Plan::default();
    // (new key) -> candidate moves
    let mut wanted: BTreeMap<String, Vec<(VolumeMove, bool)>> = BTreeMap::new();
    let mut unmatched: Vec<(String, Vec<String>)> = Vec::new();
    for svc in old.services() {
        let mounts = named_mounts(svc);
        let by_repo: Vec<&Service> = new
            .services()
            .iter()
            .filter(|n| repo_of(n) == repo_of(svc) && !repo_of(svc).is_empty())
            .collect();
        let same_name = new.service(&svc.name);
        let counterpart: Option<&Service> = if mounts.is_empty() {
            match by_repo.as_slice() {
                [one] => Some(*one),
                [] => same_name,
                several => several.iter().copied().find(|n| n.name == svc.name),
            }
        } else {
            let sharing: Vec<&Service> = by_repo
                .iter()
                .copied()
                .filter(|n| {
                    named_mounts(n)
                        .iter()
                        .any(|(_, t)| mounts.iter().any(|(_, ot)| ot == t))
                })
                .collect();
            match sharing.as_slice() {
                [one] => Some(*one),
                [] if by_repo.is_empty() => same_name,
                [] => None,
                several => match several.iter().copied().find(|n| n.name == svc.name) {
                    Some(n) => Some(n),
                    None => {
                        return Err(UsageError::new(format!(
                            "old service `{}` matches new services {} by image and mount path: add --map {}=NEW_VOLUME to pick one",
                            svc.name,
                            several.iter().map(|n| format!("`{}`", n.name)).collect::<Vec<_>>().join(" and "),
                            mounts[0].0
                        )));
                    }
                },
            }
        };
        let mut mapped_any = false;
        let mut left: Vec<String> = Vec::new();
        for (key, target) in &mounts {
            let choice: Option<(&Service, String, bool)> = match explicit.get(key) {
                Some(new_key) => owner_of(new_key).map(|(s, _)| (s, new_key.clone(), true)),
                None => counterpart.and_then(|n| {
                    named_mounts(n)
                        .into_iter()
                        .find(|(_, t)| t == target)
                        .map(|(k, _)| (n, k, false))
                }),
            };
            match choice {
                Some((n, new_key, is_explicit)) => {
                    let how = if target == PG_DATA && n.volumes.iter().any(|m| m.target == PG_DATA)
                    {
                        How::DumpRestore
                    } else {
                        How::Copy
                    };
                    let mv = VolumeMove {
                        old_service: svc.name.clone(),
                        old_key: key.clone(),
                        old_name: old_name(key),
                        new_service: n.name.clone(),
                        new_key: new_key.clone(),
                        new_name: new_name(&new_key),
                        target: target.clone(),
                        how,
                    };
                    wanted.entry(new_key).or_default().push((mv, is_explicit));
                    mapped_any = true;
                }
                None if counterpart.is_some() => {
                    let n = counterpart.expect("checked");
                    return Err(UsageError::new(format!(
                        "old volume `{key}` of service `{}` (at {target}) has no mount at {target} in new service `{}`: add --map {key}=NEW_VOLUME (one of: {})",
                        svc.name,
                        n.name,
                        new_keys.join(", ")
                    )));
                }
                None => left.push(old_name(key)),
            }
        }
        match counterpart {
            Some(n) if mapped_any || mounts.is_empty() => {
                plan.services.push((svc.name.clone(), n.name.clone()))
            }
            _ if mapped_any => {}
            _ => unmatched.push((svc.name.clone(), left.clone())),
        }
        if mapped_any && !left.is_empty() {
            unmatched.push((svc.name.clone(), left));
        }
    }
    for (new_key, mut candidates) in wanted {
        if candidates.len() > 1 {
            let chosen: Vec<usize> = candidates
                .iter()
                .enumerate()
                .filter(|(_, (_, e))| *e)
                .map(|(i, _)| i)
                .collect();
            if chosen.len() != 1 {
                let names: Vec<String> = candidates
                    .iter()
                    .map(|(m, _)| format!("`{}` (service {})", m.old_key, m.old_service))
                    .collect();
                return Err(UsageError::new(format!(
                    "new volume `{new_key}` has {} old candidates: {}: add --map {}={new_key} for the one to move (the others are left behind)",
                    candidates.len(),
                    names.join(" and "),
                    candidates[0].0.old_key
                )));
            }
            let keep = candidates.swap_remove(chosen[0]);
            for (dropped, _) in candidates {
                unmatched.push((dropped.old_service.clone(), vec![dropped.old_name.clone()]));
            }
            plan.volumes.push(keep.0);
        } else {
            plan.volumes.push(candidates.remove(0).0);
        }
    }
    // A service all of whose volumes were left behind has no counterpart.
    plan.services.retain(|(o, _)| {
        plan.volumes.iter().any(|v| &v.old_service == o)
            || old.service(o).is_some_and(|s| named_mounts(s).is_empty())
    });
    let mut left: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (svc, vols) in unmatched {
        left.entry(svc).or_default().extend(vols);
    }
    plan.left_behind = left.into_iter().collect();
    plan.volumes.sort_by(|a, b| a.old_key.cmp(&b.old_key));
    plan.services.sort();
    let pg: Vec<&VolumeMove> = plan
        .volumes
        .iter()
        .filter(|v| v.how == How::DumpRestore)
        .collect();
    if pg.len() > 1 {
        return Err(UsageError::new(format!(
            "two Postgres data volumes would move ({} and {}): add --map for the one to move",
            pg[0].old_key, pg[1].old_key
        )));
    }
    if let Some(v) = pg.first() {
        let svc = old.service(&v.old_service).expect("mapped from the model");
        let user = svc.env("POSTGRES_USER").unwrap_or("postgres").to_string();
        let database = svc.env("POSTGRES_DB").unwrap_or(&user).to_string();
        plan.postgres = Some(OldPostgres {
            service: svc.name.clone(),
            database,
            user,
            password: svc.env("POSTGRES_PASSWORD").map(str::to_string),
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::EnvSource;

    fn model(yaml: &str) -> Model {
        // A private directory per call: the tests run in parallel threads of
        // one process, and a shared name raced (one test removed the file
        // another was about to read).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("docker-compose.yml");
        std::fs::write(&file, yaml).unwrap();
        Model::load(&[file], &EnvSource::empty()).unwrap()
    }

    const NEW: &str = "services:
  postgres: {image: 'postgres:15.8-alpine', environment: {POSTGRES_USER: fog}, volumes: ['postgres_dev_data:/var/lib/postgresql/data']}
  prometheus: {image: 'prom/prometheus:v2.53.2', volumes: ['./config:/etc/prometheus:ro', 'prometheus_dev_data:/prometheus']}
  grafana: {image: 'grafana/grafana:11.2.0', volumes: ['grafana_dev_data:/var/lib/grafana']}
volumes: {postgres_dev_data: {}, prometheus_dev_data: {}, grafana_dev_data: {}}
";

    const OLD: &str = "services:
  postgres: {image: 'postgres:15-alpine', environment: {POSTGRES_USER: fog_user, POSTGRES_PASSWORD: fog_password, POSTGRES_DB: fog_compute}, volumes: ['postgres_data:/var/lib/postgresql/data']}
  prometheus: {image: 'prom/prometheus:v2.45.0', volumes: ['prometheus-data:/prometheus']}
  redis: {image: 'redis:7-alpine', volumes: ['redis-data:/data']}
volumes: {postgres_data: {}, prometheus-data: {}, redis-data: {name: legacy-redis}}
";

    #[test]
    fn maps_by_repository_and_path_and_leaves_the_rest_behind() {
        let plan = map(&model(OLD), "old", &model(NEW), "fog", &[]).unwrap();
        assert_eq!(
            plan.services,
            [
                ("postgres".to_string(), "postgres".to_string()),
                ("prometheus".to_string(), "prometheus".to_string())
            ]
        );
        assert_eq!(
            plan.left_behind,
            [("redis".to_string(), vec!["legacy-redis".to_string()])]
        );
        let pg = &plan.volumes[0];
        assert_eq!(
            (pg.old_name.as_str(), pg.new_name.as_str(), &pg.how),
            (
                "old_postgres_data",
                "fog_postgres_dev_data",
                &How::DumpRestore
            )
        );
        let prom = &plan.volumes[1];
        assert_eq!(
            (prom.old_name.as_str(), prom.new_name.as_str(), &prom.how),
            ("old_prometheus-data", "fog_prometheus_dev_data", &How::Copy)
        );
        let old = plan.postgres.unwrap();
        assert_eq!(
            (
                old.user.as_str(),
                old.database.as_str(),
                old.password.as_deref()
            ),
            ("fog_user", "fog_compute", Some("fog_password"))
        );
    }

    #[test]
    fn two_candidates_are_refused_until_a_map_settles_them() {
        let old = format!(
            "{}  prometheus-2: {{image: 'prom/prometheus:v2.45.0', volumes: ['prom2:/prometheus']}}\nvolumes: {{postgres_data: {{}}, prometheus-data: {{}}, redis-data: {{}}, prom2: {{}}}}\n",
            OLD.split("volumes: {postgres_data").next().unwrap()
        );
        let err = map(&model(&old), "old", &model(NEW), "fog", &[]).unwrap_err();
        assert!(
            err.0
                .contains("new volume `prometheus_dev_data` has 2 old candidates"),
            "{err}"
        );
        assert!(err.0.contains("--map"), "{err}");
        let maps = [parse_map("prom2=prometheus_dev_data").unwrap()];
        let plan = map(&model(&old), "old", &model(NEW), "fog", &maps).unwrap();
        assert!(plan.volumes.iter().any(|v| v.old_key == "prom2"));
        assert!(plan
            .left_behind
            .iter()
            .any(|(s, v)| s == "prometheus" && v == &["old_prometheus-data".to_string()]));
        assert!(!plan.services.iter().any(|(o, _)| o == "prometheus"));
    }

    #[test]
    fn a_mount_path_without_a_match_is_refused_and_bad_maps_name_the_flag() {
        let old = "services:\n  prometheus: {image: 'prom/prometheus:v2', volumes: ['p:/prometheus', 'rules:/etc/rules']}\nvolumes: {p: {}, rules: {}}\n";
        let err = map(&model(old), "old", &model(NEW), "fog", &[]).unwrap_err();
        assert!(err.0.contains("old volume `rules`"), "{err}");
        assert!(err.0.contains("--map rules=NEW_VOLUME"), "{err}");
        let err = map(
            &model(OLD),
            "old",
            &model(NEW),
            "fog",
            &[("nope".into(), "x".into())],
        )
        .unwrap_err();
        assert!(err.0.contains("--map nope=x"), "{err}");
        assert!(parse_map("a").is_err() && parse_map("=b").is_err());
    }

    #[test]
    fn project_names_follow_the_engines_compose_flavour() {
        for flavor in [Flavor::V1, Flavor::V2] {
            assert_eq!(
                compose_project_name("Fog-Compute.old", flavor),
                "fog-computeold"
            );
            assert_eq!(compose_project_name("Ünïcode Fog", flavor), "ncodefog");
            assert_eq!(compose_project_name("...", flavor), "");
        }
        // v2 trims leading `-`/`_`; v1 keeps them.
        assert_eq!(compose_project_name("_x Y", Flavor::V2), "xy");
        assert_eq!(compose_project_name("_x Y", Flavor::V1), "_xy");
        assert_eq!(compose_project_name("-_-Old_Fog-", Flavor::V2), "old_fog-");
        assert_eq!(
            compose_project_name("-_-Old_Fog-", Flavor::V1),
            "-_-old_fog-"
        );
        assert_eq!(compose_project_name("__", Flavor::V2), "");
        assert_eq!(compose_project_name("__", Flavor::V1), "__");
    }
}
