//! The repo-root `.env`: created from `.env.example` on first use with strong
//! random secrets, read with the process environment taking precedence (as
//! Compose does), and updated line by line without losing comments or values.
//!
//! Every write is atomic (temp file in the same directory, fsync, rename, mode
//! 0600). A value that is already set is never overwritten by generation; keys
//! that `.env.example` has and `.env` lacks are reported as a warning and never
//! appended silently (copy them by hand, or delete `.env` to regenerate it).
//! Tests and second stacks point `FOG_ENV_FILE` at another file so they never
//! touch the repository's own `.env`.

use std::{
    fs,
    io::Read,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};

/// Environment variable that points the xtask at another env file.
pub const ENV_FILE_VAR: &str = "FOG_ENV_FILE";

/// Length of generated secrets: alphanumeric, about 190 bits.
const SECRET_LEN: usize = 32;

/// What a dry run shows for a secret it would generate: the env file exists
/// only in memory then, so no real secret is made or printed.
pub const DRY_RUN_SECRET: &str = "<random-32-character-secret>";

/// One line of an env file, kept verbatim unless its value is changed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Pair {
        key: String,
        value: String,
        /// An inline ` # comment` after an unquoted value, kept on rewrite.
        comment: Option<String>,
    },
    Other(String),
}

/// A parsed env file that remembers its layout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    lines: Vec<Line>,
}

impl EnvFile {
    pub fn parse(text: &str) -> EnvFile {
        let lines = text
            .lines()
            .map(|raw| match parse_line(raw) {
                Some(pair) => Line::Pair {
                    key: pair.key,
                    value: pair.value,
                    comment: pair.comment,
                },
                None => Line::Other(raw.to_string()),
            })
            .collect();
        EnvFile { lines }
    }

    pub fn read(path: &Path) -> Result<EnvFile> {
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(EnvFile::parse(&text))
    }

    /// The value of `key` in this file (the last assignment wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs()
            .filter(|(k, _)| *k == key)
            .last()
            .map(|(_, v)| v)
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|l| match l {
            Line::Pair { key, value, .. } => Some((key.as_str(), value.as_str())),
            Line::Other(_) => None,
        })
    }

    pub fn keys(&self) -> Vec<&str> {
        self.pairs().map(|(k, _)| k).collect()
    }

    /// Set `key`, replacing its line in place, or append it at the end.
    pub fn set(&mut self, key: &str, value: &str) {
        let mut found = false;
        for line in &mut self.lines {
            if let Line::Pair {
                key: k, value: v, ..
            } = line
            {
                if k == key {
                    *v = value.to_string();
                    found = true;
                }
            }
        }
        if !found {
            self.lines.push(Line::Pair {
                key: key.to_string(),
                value: value.to_string(),
                comment: None,
            });
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Pair {
                    key,
                    value,
                    comment,
                } => {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(&render_value(value));
                    out.push_str(comment.as_deref().unwrap_or(""));
                }
                Line::Other(raw) => out.push_str(raw),
            }
            out.push('\n');
        }
        out
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        write_atomic(path, self.render().as_bytes(), 0o600)
    }
}

/// `.env` syntax has one reader, the compose model's (its env layer reads
/// the same files).
pub use crate::compose::env::{parse_line, ParsedLine};

/// A value as [`parse_line`] reads it back: plain when it can be, else in
/// double quotes with newlines and quotes escaped.
fn render_value(value: &str) -> String {
    let plain =
        !value.contains(['\n', '"', '\'']) && !value.contains(" #") && value.trim() == value;
    if plain {
        value.to_string()
    } else {
        format!("\"{}\"", value.replace('"', "\\\"").replace('\n', "\\n"))
    }
}

/// Whether a variable holds a secret that must be generated and checked.
pub fn is_secret_key(key: &str) -> bool {
    let upper = key.to_ascii_uppercase();
    !upper.ends_with("_FILE")
        && ["PASSWORD", "SECRET", "TOKEN", "KEY"]
            .iter()
            .any(|w| upper.contains(w))
}

/// `len` random alphanumeric characters from the kernel's CSPRNG.
pub fn random_secret(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut urandom = fs::File::open("/dev/urandom").context("cannot open /dev/urandom")?;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 64];
    while out.len() < len {
        urandom.read_exact(&mut buf)?;
        // 248 = 4 * 62: rejecting larger bytes keeps the choice uniform.
        for b in buf.iter().filter(|b| **b < 248) {
            if out.len() < len {
                out.push(ALPHABET[(*b % 62) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// The one atomic write ([`crate::atomic::write`]) under the name
/// `report/stage.rs` calls it by.
pub use crate::atomic::write as write_atomic;

/// The compose model's variables for the repository's environments: the
/// process environment, then the env file ([`DotEnv::locate`]), or
/// `.env.example` when there is none.
pub fn env_source(root: &Path) -> Result<crate::compose::EnvSource, crate::compose::LoadError> {
    let dot_env = DotEnv::locate(root);
    let file = if dot_env.is_file() {
        Some(dot_env)
    } else {
        Some(root.join(".env.example")).filter(|p| p.is_file())
    };
    crate::compose::EnvSource::with_process_env(file.as_deref())
}

/// Where the env file and its example live, and the merged variables.
#[derive(Debug, Clone)]
pub struct DotEnv {
    pub path: PathBuf,
    pub file: EnvFile,
    pub example_file: EnvFile,
}

impl DotEnv {
    /// The env file to use: `$FOG_ENV_FILE` if set, else `<root>/.env`.
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

    /// Whether `path` is the repository's own `.env` (not a test's or a second stack's).
    pub fn is_default(&self, root: &Path) -> bool {
        self.path == root.join(".env")
    }

    /// Load the env file, creating it from `.env.example` if it does not exist.
    /// Under `dry_run` a missing file is generated in memory and not written.
    pub fn ensure(root: &Path, dry_run: bool) -> Result<DotEnv> {
        let path = Self::locate(root);
        let example = root.join(".env.example");
        let example_file = if example.exists() {
            EnvFile::read(&example)?
        } else {
            EnvFile::default()
        };
        let file = if path.exists() {
            let meta = fs::metadata(&path)?;
            if meta.permissions().mode() & 0o077 != 0 && !dry_run {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("cannot chmod 0600 {}", path.display()))?;
                eprintln!(
                    "note: {} was readable by others; set it to 0600",
                    path.display()
                );
            }
            EnvFile::read(&path)?
        } else {
            if !example.exists() {
                anyhow::bail!(
                    "neither {} nor {} exists: restore .env.example from git (`git checkout .env.example`)",
                    path.display(),
                    example.display()
                );
            }
            if dry_run {
                println!(
                    "# would create {} from .env.example with new random secrets (mode 0600)",
                    path.display()
                );
                with_placeholder_secrets(&example_file)
            } else {
                let generated = with_generated_secrets(&example_file)?;
                generated.write(&path)?;
                eprintln!(
                    "created {} from .env.example with new random secrets (mode 0600)",
                    path.display()
                );
                generated
            }
        };
        let env = DotEnv {
            path,
            file,
            example_file,
        };
        let missing = env.missing_keys();
        if !missing.is_empty() {
            eprintln!(
                "warning: {} lacks {} (present in .env.example); copy them from .env.example, or the compose defaults apply",
                env.path.display(),
                missing.join(", ")
            );
        }
        Ok(env)
    }

    /// Read the env file again after another step rewrote it.
    pub fn reload(&mut self) -> Result<()> {
        if self.path.exists() {
            self.file = EnvFile::read(&self.path)?;
        }
        Ok(())
    }

    /// Keys `.env.example` has and the env file lacks.
    pub fn missing_keys(&self) -> Vec<String> {
        let have = self.file.keys();
        self.example_file
            .keys()
            .into_iter()
            .filter(|k| !have.contains(k))
            .map(str::to_string)
            .collect()
    }

    /// A variable: the process environment first, then the env file, then `.env.example`.
    pub fn get(&self, key: &str) -> Option<String> {
        std::env::var(key)
            .ok()
            .or_else(|| self.file.get(key).map(str::to_string))
            .or_else(|| self.example_file.get(key).map(str::to_string))
    }

    /// A variable, or `default` when unset or empty (Compose's `${VAR:-default}`).
    pub fn get_or(&self, key: &str, default: &str) -> String {
        self.get(key)
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_string())
    }

    /// Set variables in the env file and rewrite it atomically (printed under dry-run).
    pub fn update(&mut self, values: &[(&str, String)], dry_run: bool) -> Result<()> {
        let before = self.file.clone();
        for (key, value) in values {
            self.file.set(key, value);
        }
        if self.file == before {
            return Ok(());
        }
        if dry_run {
            for (key, value) in values {
                println!("# would set {key}={value} in {}", self.path.display());
            }
            return Ok(());
        }
        self.file.write(&self.path)
    }

    /// Secrets that are unfit for prod: placeholders, short values, or the example's value.
    pub fn weak_secrets(&self) -> Vec<String> {
        let mut keys: Vec<&str> = self.example_file.keys();
        keys.extend(self.file.keys());
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .filter(|k| is_secret_key(k))
            .filter_map(|key| {
                if std::env::var_os(key).is_none() && self.file.get(key).is_none() {
                    return Some(format!("{key} is not set"));
                }
                let value = self.get(key).unwrap_or_default();
                if value == DRY_RUN_SECRET && !self.path.exists() {
                    return None; // a dry run's stand-in for a fresh random secret
                }
                let example = self.example_file.get(key);
                let why = weakness(&value, example)?;
                Some(format!("{key} {why}"))
            })
            .collect()
    }
}

/// Why a secret value is weak, or `None` if it is fine.
fn weakness(value: &str, example: Option<&str>) -> Option<&'static str> {
    let lower = value.to_ascii_lowercase();
    const PLACEHOLDERS: &[&str] = &[
        "change",
        "example",
        "placeholder",
        "secret",
        "password",
        "admin",
    ];
    if value.is_empty() {
        Some("is empty")
    } else if example == Some(value) {
        Some("still has the value from .env.example")
    } else if PLACEHOLDERS.iter().any(|p| lower.contains(p)) {
        Some("looks like a placeholder")
    } else if value.len() < 16 {
        Some("is shorter than 16 characters")
    } else {
        None
    }
}

/// A copy of the example with every secret replaced by a fresh random value.
fn with_generated_secrets(example: &EnvFile) -> Result<EnvFile> {
    let mut out = example.clone();
    for key in example.keys() {
        if is_secret_key(key) {
            out.set(key, &random_secret(SECRET_LEN)?);
        }
    }
    Ok(out)
}

/// A dry run's copy of the example: every secret shown as [`DRY_RUN_SECRET`].
fn with_placeholder_secrets(example: &EnvFile) -> EnvFile {
    let mut out = example.clone();
    for key in example.keys() {
        if is_secret_key(key) {
            out.set(key, DRY_RUN_SECRET);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_keeps_comments_and_order() {
        let mut f = EnvFile::parse("# top\nA=1\n\nexport B=\"two\"\n");
        assert_eq!(f.get("B"), Some("two"));
        f.set("A", "9");
        f.set("C", "3");
        assert_eq!(f.render(), "# top\nA=9\n\nB=two\nC=3\n");
    }

    #[test]
    fn values_round_trip_with_quotes_and_inline_comments() {
        let text = "A=x # note\nB=\"two words # kept\"\nC='it''s'\nD=\"line\\nbreak\"\n";
        let mut f = EnvFile::parse(text);
        assert_eq!(f.get("A"), Some("x"));
        assert_eq!(f.get("B"), Some("two words # kept"));
        assert_eq!(f.get("D"), Some("line\nbreak"));
        f.set("E", "1");
        let again = EnvFile::parse(&f.render());
        assert_eq!(
            again.pairs().collect::<Vec<_>>(),
            f.pairs().collect::<Vec<_>>()
        );
        assert!(f.render().starts_with("A=x # note\n"), "{}", f.render());
    }

    #[test]
    fn secrets_are_detected_and_generated() {
        assert!(is_secret_key("POSTGRES_PASSWORD"));
        assert!(is_secret_key("API_TOKEN") && is_secret_key("api_token"));
        assert!(!is_secret_key("POSTGRES_PASSWORD_FILE"));
        assert!(!is_secret_key("POSTGRES_USER"));
        let ex = EnvFile::parse("POSTGRES_USER=fog\nPOSTGRES_PASSWORD=change-me\n");
        let gen = with_generated_secrets(&ex).unwrap();
        let pw = gen.get("POSTGRES_PASSWORD").unwrap();
        assert_eq!(pw.len(), SECRET_LEN);
        assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(
            pw,
            with_generated_secrets(&ex)
                .unwrap()
                .get("POSTGRES_PASSWORD")
                .unwrap()
        );
        assert_eq!(gen.get("POSTGRES_USER"), Some("fog"));
    }

    #[test]
    fn dry_run_creates_no_env_file_and_shows_placeholder_secrets() {
        let root = std::env::temp_dir().join(format!("xtask-dotenv-dry-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        fs::write(
            root.join(".env.example"),
            "POSTGRES_USER=fog\nPOSTGRES_PASSWORD=change-me\n",
        )
        .unwrap();
        // FOG_ENV_FILE is not set by the unit tests, so the env file is <root>/.env.
        let env = DotEnv::ensure(&root, true).unwrap();
        let created = root.join(".env").exists();
        fs::remove_dir_all(&root).unwrap();
        assert!(!created, "a dry run wrote the env file");
        assert_eq!(env.file.get("POSTGRES_PASSWORD"), Some(DRY_RUN_SECRET));
        assert_eq!(env.file.get("POSTGRES_USER"), Some("fog"));
        assert!(env.weak_secrets().is_empty(), "{:?}", env.weak_secrets());
        // Once the file exists, the placeholder is as weak as any other.
        assert!(weakness(DRY_RUN_SECRET, None).is_some());
    }

    #[test]
    fn weak_values_are_named() {
        assert_eq!(
            weakness("change-me-please-now", None),
            Some("looks like a placeholder")
        );
        assert_eq!(
            weakness("Abc123", None),
            Some("is shorter than 16 characters")
        );
        assert_eq!(
            weakness("Zq8r7Tq0pLmN3vXy", Some("Zq8r7Tq0pLmN3vXy")),
            Some("still has the value from .env.example")
        );
        assert_eq!(weakness("Zq8r7Tq0pLmN3vXy9", Some("change-me")), None);
    }

    #[test]
    fn atomic_write_is_0600_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("fog-dotenv-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        write_atomic(&path, b"A=1\n", 0o600).unwrap();
        write_atomic(&path, b"A=2\n", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "A=2\n");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
