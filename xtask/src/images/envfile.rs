//! Variables for resolving the overlays' `image:` values, read the way
//! Compose and bring-up read them: the process environment first, then the
//! env file (`$FOG_ENV_FILE` or the repo-root `.env`), then `.env.example`.
//! Read-only: listing images never creates or rewrites the env file (writes
//! go through `crate::dotenv::DotEnv`).

use std::{collections::BTreeMap, path::Path};

use anyhow::Result;

use crate::dotenv::{DotEnv, EnvFile};

/// A read-only view of the variables compose would interpolate with.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    file: BTreeMap<String, String>,
}

impl Vars {
    pub fn load(root: &Path) -> Result<Vars> {
        let mut file = BTreeMap::new();
        for path in [root.join(".env.example"), DotEnv::locate(root)] {
            if path.is_file() {
                let env = EnvFile::read(&path)?;
                file.extend(env.pairs().map(|(k, v)| (k.to_string(), v.to_string())));
            }
        }
        Ok(Vars { file })
    }

    pub fn get(&self, key: &str) -> Option<String> {
        std::env::var(key)
            .ok()
            .or_else(|| self.file.get(key).cloned())
    }
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
            "A=example\nB=example\nC=example\n",
        )
        .unwrap();
        // FOG_ENV_FILE is not set by the unit tests, so the env file is <root>/.env.
        std::fs::write(root.join(".env"), "B=file\nC=file\n").unwrap();
        let vars = Vars::load(&root).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(vars.get("A").as_deref(), Some("example"));
        assert_eq!(vars.get("B").as_deref(), Some("file"));
        assert_eq!(vars.get("PATH"), std::env::var("PATH").ok());
        assert_eq!(vars.get("XTASK_SURELY_UNSET_VARIABLE"), None);
    }
}
