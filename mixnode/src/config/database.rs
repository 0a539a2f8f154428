//! The optional PostgreSQL connection, from exactly one of: `DATABASE_URL`
//! (a URL, possibly with a password in it), `DATABASE_URL_FILE` (a file
//! holding the whole URL), or `DATABASE_URL` without a password plus
//! `DATABASE_PASSWORD_FILE` (a file holding the password, which is inserted
//! into the connection settings). Files are read once at start-up, must be
//! regular files under 64 KiB, and have one trailing newline trimmed.
//! Contradictory settings (a password both in the URL and in a file, or a
//! URL both inline and in a file) are one-line errors; secrets are never
//! echoed.

use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use super::vars::{get, Lookup};
use super::ConfigError;

const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Connection settings with the password redacted from `Debug`.
#[derive(Clone)]
pub struct Database(pub tokio_postgres::Config);

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Database {{ hosts: {:?}, dbname: {:?}, user: {:?}, password: {} }}",
            self.0.get_hosts(),
            self.0.get_dbname(),
            self.0.get_user(),
            if self.0.get_password().is_some() {
                "<redacted>"
            } else {
                "none"
            }
        )
    }
}

fn bad(name: &'static str, value: &str, expected: &'static str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_string(),
        expected,
    }
}

/// Reads a secret file: regular, at most 64 KiB, one trailing newline trimmed.
fn read_secret(name: &'static str, path: &str) -> Result<String, ConfigError> {
    let fail = |why: String| ConfigError::File {
        name,
        path: path.to_string(),
        why,
    };
    let meta = std::fs::metadata(Path::new(path)).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(fail(format!("{} bytes, more than 64 KiB", meta.len())));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE).read_to_string(&mut text))
        .map_err(|e| fail(e.to_string()))?;
    let text = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if text.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    Ok(text.to_string())
}

fn parse_url(name: &'static str, url: &str) -> Result<tokio_postgres::Config, ConfigError> {
    tokio_postgres::Config::from_str(url.trim()).map_err(|_| {
        bad(
            name,
            "<redacted>",
            "a PostgreSQL URL such as postgres://user@postgres:5432/db",
        )
    })
}

/// The database settings, or `None` when none of the variables is set.
pub fn read(lookup: Lookup) -> Result<Option<Database>, ConfigError> {
    let inline = get(lookup, "DATABASE_URL");
    let url_file = get(lookup, "DATABASE_URL_FILE");
    let password_file = get(lookup, "DATABASE_PASSWORD_FILE");
    let (name, url) = match (inline, url_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Conflict(
                "DATABASE_URL and DATABASE_URL_FILE are both set: keep one \
                 (DATABASE_URL_FILE for a URL holding a password)",
            ))
        }
        (Some(url), None) => ("DATABASE_URL", url),
        (None, Some(path)) => (
            "DATABASE_URL_FILE",
            read_secret("DATABASE_URL_FILE", path.trim())?,
        ),
        (None, None) => {
            if password_file.is_some() {
                return Err(ConfigError::Conflict(
                    "DATABASE_PASSWORD_FILE is set without DATABASE_URL: \
                     set DATABASE_URL=postgres://user@host:5432/db (no password in it)",
                ));
            }
            return Ok(None);
        }
    };
    let mut config = parse_url(name, &url)?;
    if let Some(path) = password_file {
        if config.get_password().is_some() {
            return Err(ConfigError::Conflict(
                "DATABASE_PASSWORD_FILE is set but the database URL carries a \
                 password too: remove the password from the URL",
            ));
        }
        config.password(read_secret("DATABASE_PASSWORD_FILE", path.trim())?);
    }
    Ok(Some(Database(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read_with(pairs: &[(&str, &str)]) -> Result<Option<Database>, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        read(&|n| map.get(n).cloned())
    }

    #[test]
    fn password_file_is_inserted_into_a_url_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cr:et/@\n").unwrap();
        let db = read_with(&[
            ("DATABASE_URL", "postgres://fog@postgres:5432/fog"),
            ("DATABASE_PASSWORD_FILE", pw.to_str().unwrap()),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(db.0.get_password(), Some(&b"s3cr:et/@"[..]));
        assert_eq!(db.0.get_user(), Some("fog"));
        assert!(!format!("{db:?}").contains("s3cr"), "{db:?}");
    }

    #[test]
    fn url_file_holds_the_whole_url() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("url");
        std::fs::write(&f, "postgres://fog:pw@db:5432/fog\n").unwrap();
        let db = read_with(&[("DATABASE_URL_FILE", f.to_str().unwrap())])
            .unwrap()
            .unwrap();
        assert_eq!(db.0.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn contradictions_and_bad_files_are_one_line_errors() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "x").unwrap();
        let pw = pw.to_str().unwrap();
        let err = |pairs: &[(&str, &str)]| read_with(pairs).unwrap_err().to_string();
        let e = err(&[
            ("DATABASE_URL", "postgres://fog:literal@db/fog"),
            ("DATABASE_PASSWORD_FILE", pw),
        ]);
        assert!(e.contains("carries a password too"), "{e}");
        assert!(!e.contains("literal"), "{e}");
        let e = err(&[
            ("DATABASE_URL", "postgres://a@b/c"),
            ("DATABASE_URL_FILE", pw),
        ]);
        assert!(e.contains("both set"), "{e}");
        let e = err(&[("DATABASE_PASSWORD_FILE", pw)]);
        assert!(e.contains("without DATABASE_URL"), "{e}");
        let e = err(&[
            ("DATABASE_URL", "postgres://a@b/c"),
            ("DATABASE_PASSWORD_FILE", "/nonexistent/pw"),
        ]);
        assert!(
            e.starts_with("DATABASE_PASSWORD_FILE=/nonexistent/pw: "),
            "{e}"
        );
        let e = err(&[
            ("DATABASE_URL", "postgres://a@b/c"),
            ("DATABASE_PASSWORD_FILE", dir.path().to_str().unwrap()),
        ]);
        assert!(e.contains("not a regular file"), "{e}");
        assert!(read_with(&[]).unwrap().is_none());
    }
}
