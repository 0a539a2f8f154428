//! The one way the xtask runs Compose: `<docker compose|docker-compose>
//! --project-directory compose --env-file <.env> -p <project> -f compose/base.yml
//! -f ...`, and the merged model Compose itself prints with `config` (services,
//! images, healthchecks, published ports, profiles). Both flavours print the
//! model; v1 writes ports in short form and v2 in long form, and both are read.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_yaml::Value;
use xshell::{Cmd, Shell};

use super::Engine;
use crate::{environments::COMPOSE_DIR, process::Runner};

/// A compose project: engine, project name, env file and compose files.
#[derive(Debug, Clone)]
pub struct Compose {
    pub engine: Engine,
    pub project: String,
    /// The env file, shown relative to the repository root when inside it.
    pub env_file: PathBuf,
    /// Compose files relative to the repository root, base first.
    pub files: Vec<PathBuf>,
}

/// A host port a service publishes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Published {
    pub host_ip: String,
    pub port: u16,
    pub target: u16,
}

/// One service of the merged model.
#[derive(Debug, Clone, Default)]
pub struct Service {
    pub name: String,
    pub image: Option<String>,
    pub builds: bool,
    pub healthcheck: bool,
    pub ports: Vec<Published>,
    pub profiles: Vec<String>,
}

/// The merged compose model, as much of it as bring-up needs.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub services: Vec<Service>,
    /// Top-level file secrets: `(name, file)`, paths as Compose resolved them.
    pub secret_files: Vec<(String, PathBuf)>,
}

impl Model {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Services that start without `--profile` (what `up` starts by default).
    pub fn default_services(&self) -> Vec<&Service> {
        self.services
            .iter()
            .filter(|s| s.profiles.is_empty())
            .collect()
    }

    pub fn names(&self) -> Vec<&str> {
        self.services.iter().map(|s| s.name.as_str()).collect()
    }
}

impl Compose {
    pub fn new(
        engine: Engine,
        root: &Path,
        project: String,
        env_file: &Path,
        files: Vec<PathBuf>,
    ) -> Compose {
        let env_file = env_file
            .strip_prefix(root)
            .map(Path::to_path_buf)
            .unwrap_or_else(|_| env_file.to_path_buf());
        Compose {
            engine,
            project,
            env_file,
            files,
        }
    }

    /// A compose command with the project flags and then `args`.
    pub fn cmd<'a>(&self, sh: &'a Shell, args: &[&str]) -> Cmd<'a> {
        let (program, lead) = self.engine.compose_program();
        let mut cmd = sh
            .cmd(program)
            .args(lead)
            .arg("--project-directory")
            .arg(COMPOSE_DIR)
            .arg("--env-file")
            .arg(&self.env_file)
            .arg("-p")
            .arg(&self.project);
        for file in &self.files {
            cmd = cmd.arg("-f").arg(file);
        }
        cmd.args(args)
    }

    /// The merged model from `compose config` (a query: runs under dry-run too).
    pub fn model(&self, sh: &Shell, runner: &Runner) -> Result<Model> {
        let text = runner.read(self.cmd(sh, &["config"])).context(
            "compose rejected the environment's files; `cargo xtask check` names the defect",
        )?;
        parse_model(&text)
    }
}

/// Parse `compose config` output of either flavour.
pub fn parse_model(text: &str) -> Result<Model> {
    let doc: Value = serde_yaml::from_str(text).context("cannot parse `compose config` output")?;
    let mut services = Vec::new();
    if let Some(map) = doc.get("services").and_then(Value::as_mapping) {
        for (name, svc) in map {
            let Some(name) = name.as_str() else { continue };
            let healthcheck = match svc.get("healthcheck") {
                None => false,
                Some(h) => {
                    let disabled = h.get("disable").and_then(Value::as_bool) == Some(true);
                    let none = h
                        .get("test")
                        .and_then(Value::as_sequence)
                        .and_then(|t| t.first())
                        .and_then(Value::as_str)
                        == Some("NONE");
                    !disabled && !none
                }
            };
            let ports = svc
                .get("ports")
                .and_then(Value::as_sequence)
                .map(|seq| seq.iter().filter_map(parse_port).collect())
                .unwrap_or_default();
            let profiles = svc
                .get("profiles")
                .and_then(Value::as_sequence)
                .map(|seq| {
                    seq.iter()
                        .filter_map(|p| p.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            services.push(Service {
                name: name.to_string(),
                image: svc.get("image").and_then(Value::as_str).map(String::from),
                builds: svc.get("build").is_some(),
                healthcheck,
                ports,
                profiles,
            });
        }
    }
    services.sort_by(|a, b| a.name.cmp(&b.name));
    let secret_files = doc
        .get("secrets")
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .filter_map(|(name, s)| {
            let file = s.get("file")?.as_str()?;
            Some((name.as_str()?.to_string(), PathBuf::from(file)))
        })
        .collect();
    Ok(Model {
        services,
        secret_files,
    })
}

/// A published port in short (`127.0.0.1:5433:5432/tcp`) or long form; `None`
/// when nothing is published on the host.
fn parse_port(value: &Value) -> Option<Published> {
    if let Some(text) = value.as_str() {
        let spec = text.split('/').next()?;
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        return match parts.as_slice() {
            [target, published, ip] => Some(Published {
                host_ip: ip.trim_matches(['[', ']']).to_string(),
                port: published.parse().ok()?,
                target: target.parse().ok()?,
            }),
            [target, published] => Some(Published {
                host_ip: "0.0.0.0".into(),
                port: published.parse().ok()?,
                target: target.parse().ok()?,
            }),
            _ => None,
        };
    }
    let number = |v: &Value| -> Option<u16> {
        v.as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    Some(Published {
        host_ip: value
            .get("host_ip")
            .and_then(Value::as_str)
            .unwrap_or("0.0.0.0")
            .to_string(),
        port: number(value.get("published")?)?,
        target: number(value.get("target")?)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_short_and_v2_long_ports() {
        let v1 = "services:\n  web:\n    image: x:1\n    ports:\n    - 127.0.0.1:15099:80/tcp\n    - 9000\n    healthcheck:\n      test: [CMD, 'true']\n  lg:\n    image: x:1\n    profiles: [loadgen]\n";
        let m = parse_model(v1).unwrap();
        let web = m.service("web").unwrap();
        assert!(web.healthcheck);
        assert_eq!(
            web.ports,
            vec![Published {
                host_ip: "127.0.0.1".into(),
                port: 15099,
                target: 80
            }]
        );
        assert_eq!(m.default_services().len(), 1);
        let v2 = "services:\n  web:\n    image: x:1\n    ports:\n    - mode: ingress\n      host_ip: 127.0.0.1\n      target: 80\n      published: \"15099\"\n      protocol: tcp\n    healthcheck:\n      disable: true\n";
        let m = parse_model(v2).unwrap();
        let web = m.service("web").unwrap();
        assert!(!web.healthcheck);
        assert_eq!(web.ports[0].port, 15099);
    }
}
