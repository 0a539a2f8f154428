//! Where interpolation variables come from: the process environment first,
//! then one env file (`.env` syntax as [`parse_line`] reads it:
//! `KEY=VALUE`, `export KEY=VALUE`, `#` comments, optional single or double
//! quotes around the value). Compose gives
//! the process environment precedence over the file, and so does [`EnvSource`].
//! Values may use the variables above them (`IMAGE=${NAME:-x}`), read top
//! to bottom as both Compose versions do; single-quoted values stay literal.
//! The source also carries the [`Flavour`] of Compose whose reading of the
//! files the model follows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::LoadError;

/// Which Compose the model reads the files like: v2 (`docker compose`, the
/// default) or v1 (`docker-compose` 1.29, which rejects v2-only syntax).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Flavour {
    V1,
    #[default]
    V2,
}

/// Variables for interpolation, looked up process environment first.
#[derive(Debug, Clone, Default)]
pub struct EnvSource {
    process: HashMap<String, String>,
    file: HashMap<String, String>,
    /// The env file the variables came from, if any.
    pub file_path: Option<PathBuf>,
    /// The Compose whose rules the model follows.
    pub flavour: Flavour,
}

impl EnvSource {
    /// No variables at all (tests, or `--env-file /dev/null`-like use).
    pub fn empty() -> EnvSource {
        EnvSource::default()
    }

    /// Only the given pairs, as if they were the process environment.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> EnvSource {
        EnvSource {
            process: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            ..EnvSource::default()
        }
    }

    /// The process environment plus `env_file` when it exists.
    pub fn with_process_env(env_file: Option<&Path>) -> Result<EnvSource, LoadError> {
        let mut source = EnvSource {
            process: std::env::vars().collect(),
            ..EnvSource::default()
        };
        if let Some(path) = env_file {
            source.load_file(path)?;
        }
        Ok(source)
    }

    /// Replace the file layer with the variables of `path`, each value
    /// interpolated with the process environment and the lines above it.
    pub fn load_file(&mut self, path: &Path) -> Result<(), LoadError> {
        let text = super::read::read_env_text(path)?;
        self.file = HashMap::new();
        for (key, value) in self.read_vars(path, &text)? {
            self.file.insert(key, value);
        }
        self.file_path = Some(path.to_path_buf());
        Ok(())
    }

    /// The same source reading the files like `flavour`.
    pub fn with_flavour(mut self, flavour: Flavour) -> EnvSource {
        self.flavour = flavour;
        self
    }

    /// `KEY=VALUE` lines of an env file in order, values interpolated with
    /// this source plus the lines above (a service's `env_file` too).
    pub fn read_vars(&self, path: &Path, text: &str) -> Result<Vec<(String, String)>, LoadError> {
        let mut scope = EnvSource {
            process: self.process.clone(),
            file: self.file.clone(),
            ..EnvSource::default()
        };
        let mut out = Vec::new();
        for (i, raw) in super::read::strip_bom(text).lines().enumerate() {
            let Some(line) = parse_line(raw) else {
                continue;
            };
            let literal = raw
                .split_once('=')
                .is_some_and(|(_, v)| v.trim().starts_with('\''));
            let value = if literal || !line.value.contains('$') {
                line.value
            } else {
                super::interpolate::interpolate(&line.value, &scope).map_err(|e| LoadError {
                    kind: super::LoadErrorKind::Interpolation,
                    file: path.to_path_buf(),
                    line: Some(i + 1),
                    column: None,
                    message: format!("{}: {e}", line.key),
                })?
            };
            scope.file.insert(line.key.clone(), value.clone());
            out.push((line.key, value));
        }
        Ok(out)
    }

    /// Set a variable in the file layer (the process environment still wins).
    pub fn set_file_var(&mut self, key: &str, value: &str) {
        self.file.insert(key.to_string(), value.to_string());
    }

    /// The value of `name`: process environment, then the env file.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.process
            .get(name)
            .or_else(|| self.file.get(name))
            .map(String::as_str)
    }
}

/// One `KEY=VALUE` line of an env file, as Compose reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLine {
    pub key: String,
    pub value: String,
    /// The ` # comment` that ended an unquoted value, with its leading blanks.
    pub comment: Option<String>,
}

/// The one reader of `.env` syntax (the model's env layer, a service's
/// `env_file`, and the xtask's `.env` handling): `KEY=VALUE` or `export
/// KEY=VALUE`; a value in double quotes has `\n` and `\"` unescaped, one in
/// single quotes is literal, an unquoted one ends at ` #` (an inline
/// comment). Comments, blanks, lines without `=` and invalid keys are `None`.
pub fn parse_line(raw: &str) -> Option<ParsedLine> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let line = line.strip_prefix("export ").unwrap_or(line);
    let (key, value) = line.split_once('=')?;
    let key = key.trim();
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let value = value.trim();
    let (value, comment) = if let Some(inner) = quoted(value, '"') {
        (inner.replace("\\n", "\n").replace("\\\"", "\""), None)
    } else if let Some(inner) = quoted(value, '\'') {
        (inner.to_string(), None)
    } else {
        match value.find(" #") {
            Some(i) => {
                let kept = value[..i].trim_end();
                (kept.to_string(), Some(value[kept.len()..].to_string()))
            }
            None => (value.to_string(), None),
        }
    };
    Some(ParsedLine {
        key: key.to_string(),
        value,
        comment,
    })
}

fn quoted(value: &str, q: char) -> Option<&str> {
    (value.len() >= 2 && value.starts_with(q) && value.ends_with(q))
        .then(|| &value[1..value.len() - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_syntax() {
        let vars: HashMap<String, String> =
            "# comment\nA=1\nexport B=two\nC=\"quoted # not comment\"\nD='single'\nE=x # note\nF=\nnoequals\n"
                .lines()
                .filter_map(parse_line)
                .map(|line| (line.key, line.value))
                .collect();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two");
        assert_eq!(vars["C"], "quoted # not comment");
        assert_eq!(vars["D"], "single");
        assert_eq!(vars["E"], "x");
        assert_eq!(vars["F"], "");
        assert_eq!(vars.len(), 6);
    }

    #[test]
    fn values_use_the_lines_above_and_a_bom_loses_nothing() {
        let env = EnvSource::from_pairs([("P", "proc")]);
        let vars = env
            .read_vars(
                Path::new(".env"),
                "\u{feff}A=1\nB=${A}x\nC='${A}'\nD=${NOPE:-d}-$P\nP=file\nE=$P\n",
            )
            .unwrap();
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("1x"));
        assert_eq!(get("C"), Some("${A}"));
        assert_eq!(get("D"), Some("d-proc"));
        // The process environment still wins inside the file.
        assert_eq!(get("E"), Some("proc"));
    }

    #[test]
    fn process_environment_wins_over_file() {
        let mut env = EnvSource::from_pairs([("A", "process")]);
        env.set_file_var("A", "file");
        env.set_file_var("B", "file");
        assert_eq!(env.get("A"), Some("process"));
        assert_eq!(env.get("B"), Some("file"));
        assert_eq!(env.get("C"), None);
    }
}
