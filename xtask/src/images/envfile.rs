//! Reading variables for image resolution and pointing `.env`'s image
//! variables at other images. Values come from the process environment first,
//! then the env file (`$FOG_ENV_FILE` or the repo-root `.env`), then
//! `.env.example`, the same precedence Compose and the engine use. Updates
//! rewrite the env file atomically (temp file, fsync, rename), keep its other
//! lines and comments, and keep mode 0600. This is a stop-gap until the engine's
//! `dotenv` module is on `main`; then the two should be unified.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

/// The variable that points tests and second stacks at another env file.
pub const ENV_FILE_VAR: &str = "FOG_ENV_FILE";

/// The env file in use: `$FOG_ENV_FILE` if set, else `<root>/.env`.
pub fn locate(root: &Path) -> PathBuf {
    match std::env::var_os(ENV_FILE_VAR) {
        Some(p) if !p.is_empty() => {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().unwrap_or_default().join(p)
            }
        }
        _ => root.join(".env"),
    }
}

/// Parse `KEY=VALUE` lines; comments, blank lines and `export ` prefixes are
/// ignored and one pair of surrounding quotes is removed.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = [('"', '"'), ('\'', '\'')]
                .iter()
                .find_map(|(a, b)| value.strip_prefix(*a)?.strip_suffix(*b))
                .unwrap_or(value);
            Some((key.trim().to_string(), value.to_string()))
        })
        .collect()
}

/// Variables for interpolating the compose files: `.env.example`, overridden by
/// the env file, overridden by the process environment.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    file: BTreeMap<String, String>,
}

impl Vars {
    pub fn load(root: &Path) -> Result<Vars> {
        let mut file = BTreeMap::new();
        for path in [root.join(".env.example"), locate(root)] {
            match fs::read_to_string(&path) {
                Ok(text) => file.extend(parse(&text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
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

/// Set `KEY=VALUE` pairs in the env file at `path`: replace existing lines in
/// place, append missing keys, keep everything else. When the file does not
/// exist yet it is created (0600) from `.env.example`'s text with every
/// PASSWORD/SECRET value replaced by a fresh random secret, as bring-up does,
/// so no placeholder password ever lands in a real `.env`.
pub fn set_vars(path: &Path, example: &Path, values: &[(String, String)]) -> Result<()> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            with_fresh_secrets(&fs::read_to_string(example).unwrap_or_default())?
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let updated = apply(&text, values);
    write_atomic(path, updated.as_bytes(), 0o600)
}

/// `.env.example` text with each value whose key contains PASSWORD or SECRET
/// replaced by 32 random bytes, hex-encoded.
fn with_fresh_secrets(example: &str) -> Result<String> {
    let secret_keys: Vec<(String, String)> = parse(example)
        .into_keys()
        .filter(|k| k.contains("PASSWORD") || k.contains("SECRET"))
        .map(|k| random_hex(32).map(|v| (k, v)))
        .collect::<Result<_>>()?;
    Ok(apply(example, &secret_keys))
}

fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// The text with each `(key, value)` set: an existing `KEY=` line is replaced,
/// a missing key is appended at the end.
pub fn apply(text: &str, values: &[(String, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    for (key, value) in values {
        let new_line = format!("{key}={value}");
        let existing = lines.iter_mut().find(|line| {
            let l = line.trim_start();
            let l = l.strip_prefix("export ").unwrap_or(l);
            l.split_once('=').is_some_and(|(k, _)| k.trim() == key)
        });
        match existing {
            Some(line) => *line = new_line,
            None => lines.push(new_line),
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    out
}

/// Write `bytes` to `path` atomically: a temp file in the same directory,
/// fsync, chmod `mode`, rename over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().context("env file path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_replaces_in_place_and_appends_missing() {
        let text = "# images\nPOSTGRES_IMAGE=postgres:15.8-alpine\nPOSTGRES_USER=fog\n";
        let out = apply(
            text,
            &[
                (
                    "POSTGRES_IMAGE".into(),
                    "fog-offline/postgres:15-bookworm".into(),
                ),
                (
                    "ALERTMANAGER_IMAGE".into(),
                    "fog-offline/alertmanager:0.25-bookworm".into(),
                ),
            ],
        );
        assert_eq!(
            out,
            "# images\nPOSTGRES_IMAGE=fog-offline/postgres:15-bookworm\nPOSTGRES_USER=fog\nALERTMANAGER_IMAGE=fog-offline/alertmanager:0.25-bookworm\n"
        );
    }

    #[test]
    fn parse_skips_comments_and_strips_quotes() {
        let vars = parse("# c\nA=1\nexport B=\"two words\"\nC='x'\nnot a pair\n");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "x");
        assert_eq!(vars.len(), 3);
    }

    #[test]
    fn a_new_env_file_gets_fresh_secrets_not_placeholders() {
        let dir = std::env::temp_dir().join(format!("xtask-envfile-new-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let example = dir.join(".env.example");
        fs::write(&example, "# c\nPOSTGRES_PASSWORD=change-me\nPOSTGRES_USER=fog\nPOSTGRES_IMAGE=postgres:15.8-alpine\n").unwrap();
        let path = dir.join(".env");
        set_vars(
            &path,
            &example,
            &[(
                "POSTGRES_IMAGE".into(),
                "fog-offline/postgres:15-bookworm".into(),
            )],
        )
        .unwrap();
        let vars = parse(&fs::read_to_string(&path).unwrap());
        assert_eq!(vars["POSTGRES_USER"], "fog");
        assert_eq!(vars["POSTGRES_IMAGE"], "fog-offline/postgres:15-bookworm");
        let password = &vars["POSTGRES_PASSWORD"];
        assert_eq!(password.len(), 64, "{password}");
        assert_ne!(password, "change-me");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn set_vars_keeps_mode_0600() {
        let dir = std::env::temp_dir().join(format!("xtask-envfile-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        fs::write(&path, "A=1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        set_vars(&path, &dir.join("missing"), &[("B".into(), "2".into())]).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=1\nB=2\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }
}
