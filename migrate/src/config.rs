//! The connection settings, read the way the mixnode reads them:
//! `DATABASE_URL` (or `DATABASE_URL_FILE`, a file holding the whole URL), and
//! `DATABASE_PASSWORD_FILE`, a file whose content (trailing newline trimmed)
//! becomes the password of a password-less URL. This is how prod passes the
//! Postgres secret without putting it in the environment.

use std::str::FromStr;

use tokio_postgres::Config;

use crate::Error;

/// Build the connection config from variables (`var`) and files (`read`).
pub fn from_env(
    var: impl Fn(&str) -> Option<String>,
    read: impl Fn(&str) -> std::io::Result<String>,
) -> Result<Config, Error> {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    let read_var = |name: &str, path: &str| {
        read(path)
            .map(|t| t.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| Error::Config(format!("{name}={path}: cannot read the file: {e}")))
    };
    let url =
        match (set("DATABASE_URL"), set("DATABASE_URL_FILE")) {
            (Some(_), Some(_)) => {
                return Err(Error::Config(
                    "both DATABASE_URL and DATABASE_URL_FILE are set: set only one".into(),
                ))
            }
            (Some(url), None) => url,
            (None, Some(path)) => read_var("DATABASE_URL_FILE", &path)?,
            (None, None) => return Err(Error::Config(
                "no database: set DATABASE_URL (postgres://user@host:5432/db) or DATABASE_URL_FILE"
                    .into(),
            )),
        };
    let mut config = Config::from_str(&url).map_err(|e| {
        Error::Config(format!(
            "DATABASE_URL is not a valid postgres:// URL ({e}); the form is postgres://user[:password]@host:5432/db"
        ))
    })?;
    if let Some(path) = set("DATABASE_PASSWORD_FILE") {
        if config.get_password().is_some() {
            return Err(Error::Config(
                "DATABASE_URL has a password and DATABASE_PASSWORD_FILE is set: drop the password from the URL".into(),
            ));
        }
        let password = read_var("DATABASE_PASSWORD_FILE", &path)?;
        if password.is_empty() {
            return Err(Error::Config(format!(
                "DATABASE_PASSWORD_FILE={path} is empty: write the Postgres password into it"
            )));
        }
        config.password(password);
    }
    if config.get_dbname().is_none() {
        return Err(Error::Config(
            "DATABASE_URL names no database: add /DBNAME at the end".into(),
        ));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn build(vars: &[(&str, &str)], files: &[(&str, &str)]) -> Result<Config, Error> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files: HashMap<String, String> = files
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_env(
            |k| vars.get(k).cloned(),
            |p| {
                files
                    .get(p)
                    .cloned()
                    .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
            },
        )
    }

    #[test]
    fn url_and_files() {
        let c = build(
            &[("DATABASE_URL", "postgres://fog:pw@postgres:5432/fog")],
            &[],
        )
        .unwrap();
        assert_eq!(c.get_password(), Some(&b"pw"[..]));
        let c = build(
            &[("DATABASE_URL_FILE", "/u")],
            &[("/u", "postgres://a@h/d\n")],
        )
        .unwrap();
        assert_eq!(c.get_dbname(), Some("d"));
        let c = build(
            &[
                ("DATABASE_URL", "postgres://fog@postgres:5432/fog"),
                ("DATABASE_PASSWORD_FILE", "/p"),
            ],
            &[("/p", "s3cret\n")],
        )
        .unwrap();
        assert_eq!(c.get_password(), Some(&b"s3cret"[..]));
    }

    #[test]
    fn errors_name_the_variable() {
        let err = |r: Result<Config, Error>| r.unwrap_err().to_string();
        assert!(err(build(&[], &[])).contains("DATABASE_URL"));
        assert!(err(build(
            &[("DATABASE_URL", "x"), ("DATABASE_URL_FILE", "/u")],
            &[]
        ))
        .contains("only one"));
        assert!(err(build(&[("DATABASE_URL_FILE", "/nope")], &[])).contains("/nope"));
        assert!(err(build(
            &[
                ("DATABASE_URL", "postgres://a:b@h/d"),
                ("DATABASE_PASSWORD_FILE", "/p")
            ],
            &[("/p", "x")]
        ))
        .contains("drop the password"));
        assert!(err(build(&[("DATABASE_URL", "postgres://a@h")], &[])).contains("no database"));
    }
}
