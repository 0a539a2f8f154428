//! What `--before` and `--after` name: an environment (`betanet`,
//! `dev+monitoring`), `REV:ENV` (that environment's files at a git revision,
//! read with `git show REV:path` into a temporary directory, no checkout), or
//! a comma-separated list of compose files (a legacy layout). Every spec loads
//! into the one compose model ([`crate::compose::Project`]) through
//! [`crate::selection::Selection`], with the repository's variables.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;
use xshell::{cmd, Shell};

use crate::compose::{EnvSource, Project};
use crate::environments::{Environment, COMPOSE_DIR};
use crate::process::Runner;
use crate::selection::Selection;
use crate::{usage_bail, UsageError};

/// A parsed spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spec {
    Env(String),
    Rev { rev: String, env: String },
    Files(Vec<PathBuf>),
}

impl Spec {
    /// `a.yml,b.yml` (or one path ending in `.yml`/`.yaml`, or an existing
    /// file) is a file list; `REV:ENV` a revision; anything else an environment.
    pub fn parse(flag: &str, text: &str) -> Result<Spec, UsageError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(UsageError::new(format!(
                "{flag} is empty; give an environment (betanet), REV:ENV (main:dev) or files (a.yml,b.yml)"
            )));
        }
        let looks_like_file =
            |p: &str| p.ends_with(".yml") || p.ends_with(".yaml") || Path::new(p).is_file();
        if text.contains(',') || looks_like_file(text) {
            let files: Vec<PathBuf> = text
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect();
            return Ok(Spec::Files(files));
        }
        if let Some((rev, env)) = text.rsplit_once(':') {
            if rev.is_empty() || env.is_empty() {
                return Err(UsageError::new(format!(
                    "{flag} `{text}`: REV:ENV needs both parts, e.g. main:betanet"
                )));
            }
            env.parse::<Environment>()
                .map_err(|e| UsageError::new(format!("{flag} `{text}`: {e}")))?;
            return Ok(Spec::Rev {
                rev: rev.to_string(),
                env: env.to_string(),
            });
        }
        text.parse::<Environment>()
            .map_err(|e| UsageError::new(format!("{flag} `{text}`: {e}")))?;
        Ok(Spec::Env(text.to_string()))
    }
}

/// A spec loaded into the compose model.
pub struct Loaded {
    pub spec: String,
    pub label: String,
    pub selection: Selection,
    /// The files as a reader knows them (`compose/base.yml@main` for a revision).
    pub files: Vec<String>,
    pub project: Project,
    /// Holds files read from git; removed on drop.
    _checkout: Option<TempDir>,
}

impl Loaded {
    /// The named `environment` loaded with the variables of `env` (e.g. the
    /// stack's own env file rather than the repository's `.env`).
    pub fn environment(environment: &Environment, env: &EnvSource) -> Result<Loaded> {
        let selection = Selection::named(environment.clone(), env);
        let project = selection
            .load()
            .with_context(|| format!("environment {environment}: cannot load the compose files"))?;
        let files = selection
            .files
            .iter()
            .map(|f| super::declared::short_path(f))
            .collect();
        Ok(Loaded {
            spec: environment.to_string(),
            label: selection.label.clone(),
            files,
            selection,
            project,
            _checkout: None,
        })
    }
}

/// A private directory under the system's temp dir (`fogrep-TAG-...`, mode
/// 0755 so containers' users can read what is staged in it), removed on drop.
pub fn temp_dir(tag: &str) -> Result<TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("fogrep-{tag}-"))
        .tempdir()
        .context("cannot create a temporary directory")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot open up {}", dir.path().display()))?;
    Ok(dir)
}

/// Load `text` (the value of `flag`) with the repository's variables;
/// `REV:ENV` reads the git repository `repo`.
pub fn load(sh: &Shell, runner: &Runner, flag: &str, text: &str, repo: &Path) -> Result<Loaded> {
    let spec = Spec::parse(flag, text)?;
    let root = crate::project_root();
    let env = crate::dotenv::env_source(&root)?;
    let (selection, checkout) = match &spec {
        Spec::Env(name) => (Selection::named(name.parse()?, &env), None),
        Spec::Files(files) => {
            let files: Vec<PathBuf> = files.iter().cloned().map(crate::absolute).collect();
            for f in &files {
                if !f.is_file() {
                    usage_bail!(
                        "{flag}: compose file `{}` does not exist; list existing files separated by commas",
                        f.display()
                    );
                }
            }
            let mut selection = Selection::files(&files, None)?;
            selection.label = files_label(&files);
            (selection, None)
        }
        Spec::Rev { rev, env: name } => {
            let environment: Environment = name.parse()?;
            let dir = temp_dir("rev")?;
            read_at_revision(sh, runner, repo, rev, dir.path())
                .with_context(|| format!("{flag} `{text}`"))?;
            let mut selection = Selection::named(environment.clone(), &env);
            selection.files = environment
                .files()
                .iter()
                .map(|f| dir.path().join(f))
                .collect();
            for (file, rel) in selection.files.iter().zip(environment.files()) {
                if !file.is_file() {
                    usage_bail!(
                        "{flag} `{text}`: `{}` does not exist at revision {rev}; pick a revision that has the {name} environment",
                        rel.display()
                    );
                }
            }
            selection.label = format!("{name} at {rev}");
            (selection, Some(dir))
        }
    };
    let project = selection
        .load()
        .with_context(|| format!("{flag} `{text}`: cannot load the compose files"))?;
    let files = match &spec {
        Spec::Rev { rev, env } => env
            .parse::<Environment>()?
            .files()
            .iter()
            .map(|f| format!("{}@{rev}", f.display()))
            .collect(),
        _ => selection
            .files
            .iter()
            .map(|f| super::declared::short_path(f))
            .collect(),
    };
    Ok(Loaded {
        spec: text.to_string(),
        files,
        label: selection.label.clone(),
        selection,
        project,
        _checkout: checkout,
    })
}

/// `a.yml + b.yml (in dir)` when the files share a directory, else the paths.
fn files_label(files: &[PathBuf]) -> String {
    let parent = files[0].parent();
    if files.iter().all(|f| f.parent() == parent) {
        let names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        let dir = parent.map(super::declared::short_path).unwrap_or_default();
        return format!("{} (in {dir})", names.join(" + "));
    }
    let short: Vec<String> = files
        .iter()
        .map(|f| super::declared::short_path(f))
        .collect();
    short.join(" + ")
}

/// Write every file below `compose/` at `rev` into `dest/compose/`, each read
/// with `git show REV:path` (the working tree is not touched).
fn read_at_revision(
    sh: &Shell,
    runner: &Runner,
    root: &Path,
    rev: &str,
    dest: &Path,
) -> Result<()> {
    let _dir = sh.push_dir(root);
    let commit = format!("{rev}^{{commit}}");
    if runner
        .probe(cmd!(sh, "git rev-parse --verify --quiet {commit}"))
        .is_none()
    {
        usage_bail!(
            "`{rev}` is not a git revision of {} (try `git log --oneline`, or --repo DIR)",
            root.display()
        );
    }
    let listing = runner.read(cmd!(
        sh,
        "git ls-tree -r --name-only {rev} -- {COMPOSE_DIR}"
    ))?;
    for rel in listing.lines().filter(|l| !l.is_empty()) {
        let object = format!("{rev}:{rel}");
        let shown = runner
            .output(cmd!(sh, "git show {object}"))
            .with_context(|| format!("git show {object}"))?;
        if !shown.status.success() {
            bail!(
                "git show {object}: {}",
                String::from_utf8_lossy(&shown.stderr).trim()
            );
        }
        let bytes = shown.stdout;
        let path = dest.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, bytes).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            Spec::parse("--after", "dev+monitoring").unwrap(),
            Spec::Env("dev+monitoring".into())
        );
        assert_eq!(
            Spec::parse("--before", "main:betanet").unwrap(),
            Spec::Rev {
                rev: "main".into(),
                env: "betanet".into()
            }
        );
        assert_eq!(
            Spec::parse("--before", "HEAD~2:betanet").unwrap(),
            Spec::Rev {
                rev: "HEAD~2".into(),
                env: "betanet".into()
            }
        );
        assert_eq!(
            Spec::parse("--before", "a.yml, b.yml").unwrap(),
            Spec::Files(vec!["a.yml".into(), "b.yml".into()])
        );
        assert_eq!(
            Spec::parse("--before", "old/docker-compose.yml").unwrap(),
            Spec::Files(vec!["old/docker-compose.yml".into()])
        );
    }

    #[test]
    fn bad_specs_name_the_flag() {
        let err = Spec::parse("--before", "staging").unwrap_err();
        assert!(err.0.contains("--before `staging`"), "{err}");
        let err = Spec::parse("--after", "main:").unwrap_err();
        assert!(err.0.contains("REV:ENV"), "{err}");
        let err = Spec::parse("--after", "main:nope").unwrap_err();
        assert!(err.0.contains("`nope`"), "{err}");
        assert!(Spec::parse("--after", " ").is_err());
    }
}
