//! The one way the xtask runs Compose: `<docker compose|docker-compose>
//! --project-directory compose --env-file <.env> -p <project> -f compose/base.yml
//! -f ...`. Compose is only asked to act: what the files mean comes from the
//! native model ([`crate::compose::Project`], the one `config` prints), read
//! with the variables Compose would see (the process environment, then the
//! env file), plus the few questions bring-up asks of it ([`ModelExt`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use xshell::{Cmd, Shell};

use super::Engine;
use crate::{
    compose::{EnvSource, Port, Project as Model, Service},
    dotenv::DotEnv,
    environments::COMPOSE_DIR,
};

/// A compose project: engine, project name, env file and compose files.
#[derive(Debug, Clone)]
pub struct Compose {
    pub engine: Engine,
    pub project: String,
    /// The env file, shown relative to the repository root when inside it.
    pub env_file: PathBuf,
    /// Compose files relative to the repository root, base first.
    pub files: Vec<PathBuf>,
    /// The repository root the files are relative to.
    pub root: PathBuf,
}

/// What bring-up asks of the merged model beyond [`Model`]'s own API.
pub trait ModelExt {
    /// Services that start without `--profile` (what `up` starts by default).
    fn default_services(&self) -> Vec<&Service>;
    /// Top-level file secrets: `(name, file)`, relative paths resolved
    /// against the project directory as Compose does.
    fn secret_files(&self) -> Vec<(String, PathBuf)>;
}

impl ModelExt for Model {
    fn default_services(&self) -> Vec<&Service> {
        self.services()
            .iter()
            .filter(|s| s.profiles.is_empty())
            .collect()
    }

    fn secret_files(&self) -> Vec<(String, PathBuf)> {
        self.section("secrets")
            .into_iter()
            .flatten()
            .filter_map(|(name, s)| {
                let file = s.get("file")?.as_str()?;
                Some((name.as_str()?.to_string(), lexical(&self.dir.join(file))))
            })
            .collect()
    }
}

/// `a/compose/../secrets/x` as `a/secrets/x` (no symlinks are followed).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether the service has a `build:` section (its image may be built).
pub fn builds(service: &Service) -> bool {
    service.raw.get("build").is_some_and(|b| !b.is_null())
}

/// Each host port a service publishes: `(host ip, host port, container port)`,
/// ranges expanded, `0.0.0.0` when no address is given.
pub fn published(service: &Service) -> Vec<(String, u16, u16)> {
    service
        .ports
        .iter()
        .flat_map(|p: &Port| {
            let ip = p.host_ip.clone().unwrap_or_else(|| "0.0.0.0".into());
            p.published
                .iter()
                .flat_map(move |range| {
                    let ip = ip.clone();
                    (range.start..=range.end).map(move |port| {
                        let target = p.target.start + (port - range.start);
                        (ip.clone(), port, target)
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
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
            root: root.to_path_buf(),
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

    /// The merged model, read natively with the variables Compose would use:
    /// the process environment, then `env` (as held in memory, so a dry run
    /// before the env file exists reads the same values).
    pub fn model(&self, env: &DotEnv) -> Result<Model> {
        let mut vars = EnvSource::with_process_env(None)?;
        for (key, value) in env.file.pairs() {
            vars.set_file_var(key, value);
        }
        vars.file_path = Some(env.path.clone());
        let files: Vec<PathBuf> = self.files.iter().map(|f| self.root.join(f)).collect();
        Model::load(&files, &vars)
            .map_err(anyhow::Error::from)
            .context(
                "the environment's compose files do not load; `cargo xtask check` names the defect",
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(yaml: &str) -> Service {
        // A private directory per call: the tests run in parallel threads.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.yml");
        std::fs::write(&file, yaml).unwrap();
        let model = Model::load(&[file], &EnvSource::empty()).unwrap();
        model.services()[0].clone()
    }

    #[test]
    fn published_ports_expand_ranges_and_default_the_address() {
        let web = service(
            "services:\n  web:\n    image: x:1\n    build: .\n    ports:\n    - 127.0.0.1:15099:80/tcp\n    - 9000\n    - 16000-16001:70-71\n",
        );
        assert!(builds(&web));
        assert_eq!(
            published(&web),
            [
                ("127.0.0.1".to_string(), 15099, 80),
                ("0.0.0.0".to_string(), 16000, 70),
                ("0.0.0.0".to_string(), 16001, 71),
            ]
        );
        assert_eq!(
            lexical(Path::new("/r/compose/../secrets/./p")),
            Path::new("/r/secrets/p")
        );
        let lg = service("services:\n  lg:\n    image: x:1\n    profiles: [loadgen]\n");
        assert!(!builds(&lg));
        assert!(published(&lg).is_empty());
    }
}
