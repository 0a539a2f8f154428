//! Variables for resolving the overlays' `image:` values, read the way
//! Compose and bring-up read them: the process environment first, then the
//! env file (`$FOG_ENV_FILE` or the repo-root `.env`), then `.env.example`.
//! Read-only: listing images never creates or rewrites the env file (writes
//! go through `crate::dotenv::DotEnv`). Interpolation is the compose model's.

use std::path::Path;

use anyhow::Result;

use crate::compose::EnvSource;
use crate::dotenv::{DotEnv, EnvFile};

/// The variables compose would interpolate the `image:` values with, as the
/// compose model's [`EnvSource`]: the process environment, then the env file
/// layered over `.env.example`.
pub fn image_env(root: &Path) -> Result<EnvSource> {
    let mut env = EnvSource::with_process_env(None).map_err(|e| anyhow::anyhow!("{e}"))?;
    for path in [root.join(".env.example"), DotEnv::locate(root)] {
        if path.is_file() {
            for (key, value) in EnvFile::read(&path)?.pairs() {
                env.set_file_var(key, value);
            }
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_overrides_example_and_process_env_overrides_both() {
        let root = std::env::temp_dir().join(format!("xtask-vars-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(
            root.join(".env.example"),
            "A=example\nB=example\nPATH=from-example\n",
        )
        .unwrap();
        // FOG_ENV_FILE is not set by the unit tests, so the env file is <root>/.env.
        // PATH is set in both files and in the process environment (every
        // test process has it, so no test has to mutate its environment).
        std::fs::write(root.join(".env"), "B=file\nPATH=from-file\n").unwrap();
        let vars = image_env(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(vars.get("A"), Some("example"));
        assert_eq!(vars.get("B"), Some("file"));
        let process_path = std::env::var("PATH").expect("the test process has a PATH");
        assert!(!process_path.starts_with("from-"));
        assert_eq!(vars.get("PATH"), Some(process_path.as_str()));
        assert_eq!(vars.get("XTASK_SURELY_UNSET_VARIABLE"), None);
    }
}
