//! Named environments: the one place that says which compose overlays make up
//! `prod`, `dev`, `betanet`, `monitoring` and any `+` combination of them.
//!
//! An environment is always `base` first, then its overlays in the canonical
//! order below, whatever order the user typed them in. `dev` and `prod` are
//! exclusive: they give the same services different ports and volumes.

use std::{fmt, path::PathBuf, str::FromStr};

use crate::UsageError;

/// Directory, relative to the repository root, that holds the overlays. It is
/// also the compose project directory: relative paths in the files resolve here.
pub const COMPOSE_DIR: &str = "compose";

/// One compose file and the name users call it by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlay {
    pub name: &'static str,
    pub file: &'static str,
    pub summary: &'static str,
}

/// The base file first, then every overlay in the order they are applied.
pub const OVERLAYS: &[Overlay] = &[
    Overlay {
        name: "base",
        file: "base.yml",
        summary: "production-safe base: postgres, prometheus, grafana, loki",
    },
    Overlay {
        name: "dev",
        file: "dev.yml",
        summary: "ports on 127.0.0.1, debug logs, separate dev volumes",
    },
    Overlay {
        name: "prod",
        file: "prod.yml",
        summary: "secrets from files, resource limits, no published ports",
    },
    Overlay {
        name: "betanet",
        file: "betanet.yml",
        summary: "entry, middle and exit mixnodes on 9001-9003",
    },
    Overlay {
        name: "monitoring",
        file: "monitoring.yml",
        summary: "node-exporter, cAdvisor, Alertmanager",
    },
];

/// Environments checked by default and listed by `env list`.
pub const NAMED: &[&str] = &[
    "prod",
    "dev",
    "betanet",
    "monitoring",
    "dev+betanet",
    "dev+monitoring",
    "dev+betanet+monitoring",
    "prod+betanet",
    "prod+monitoring",
    "prod+betanet+monitoring",
];

/// A validated environment: `base` plus overlays, in canonical order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    overlays: Vec<&'static Overlay>,
}

impl Environment {
    /// All default environments, parsed.
    pub fn all() -> Vec<Environment> {
        NAMED
            .iter()
            .map(|n| n.parse().expect("NAMED entries are valid"))
            .collect()
    }

    pub fn overlays(&self) -> &[&'static Overlay] {
        &self.overlays
    }

    /// Whether the environment includes the overlay called `name`.
    pub fn has(&self, name: &str) -> bool {
        self.overlays.iter().any(|o| o.name == name)
    }

    /// Compose files relative to the repository root, base first.
    pub fn files(&self) -> Vec<PathBuf> {
        self.overlays
            .iter()
            .map(|o| PathBuf::from(COMPOSE_DIR).join(o.file))
            .collect()
    }
}

impl fmt::Display for Environment {
    /// The canonical name: overlays after `base` joined by `+` (`base` alone is `base`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.overlays.iter().skip(1).map(|o| o.name).collect();
        if names.is_empty() {
            f.write_str("base")
        } else {
            f.write_str(&names.join("+"))
        }
    }
}

impl FromStr for Environment {
    type Err = UsageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let known = || {
            OVERLAYS
                .iter()
                .map(|o| o.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut wanted = Vec::new();
        for part in s.split('+').map(str::trim) {
            let Some(overlay) = OVERLAYS.iter().find(|o| o.name == part) else {
                return Err(UsageError::new(format!(
                    "unknown environment part `{part}` in `{s}`; use overlays from: {} (e.g. dev+betanet)",
                    known()
                )));
            };
            wanted.push(overlay.name);
        }
        if wanted.contains(&"dev") && wanted.contains(&"prod") {
            return Err(UsageError::new(format!(
                "environment `{s}` combines dev and prod; pick one of them"
            )));
        }
        let overlays = OVERLAYS
            .iter()
            .filter(|o| o.name == "base" || wanted.contains(&o.name))
            .collect();
        Ok(Environment { overlays })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_comes_first_and_order_is_canonical() {
        let env: Environment = "monitoring+dev+betanet".parse().unwrap();
        let names: Vec<_> = env.overlays().iter().map(|o| o.name).collect();
        assert_eq!(names, ["base", "dev", "betanet", "monitoring"]);
        assert_eq!(env.to_string(), "dev+betanet+monitoring");
        assert_eq!(env.files()[0], PathBuf::from("compose/base.yml"));
    }

    #[test]
    fn rejects_unknown_and_exclusive_parts() {
        let err = "dev+staging".parse::<Environment>().unwrap_err();
        assert!(err.0.contains("`staging`"), "{err}");
        let err = "dev+prod".parse::<Environment>().unwrap_err();
        assert!(err.0.contains("pick one"), "{err}");
    }

    #[test]
    fn every_named_environment_parses_to_itself() {
        for name in NAMED {
            assert_eq!(name.parse::<Environment>().unwrap().to_string(), *name);
        }
    }
}
