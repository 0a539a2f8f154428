//! Migration files: the `V<version>__<name>.sql` naming scheme, the
//! `-- no-transaction` first-line marker, and the checksum (sha256 over the
//! text with CRLF and lone CR normalised to LF, so a Windows checkout is not
//! "edited"). Files come from a folder or from the set embedded at build time.

use std::{fs, path::Path};

use sha2::{Digest, Sha256};

use crate::Error;

/// The first line that makes a file run outside a transaction.
pub const NO_TRANSACTION: &str = "-- no-transaction";

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    /// The part after `__`, without `.sql`.
    pub name: String,
    /// The file name, e.g. `V0001__mixnode_topology.sql`.
    pub file: String,
    pub sql: String,
    /// Hex sha256 of the normalised text.
    pub checksum: String,
    pub no_transaction: bool,
}

impl Migration {
    /// Parse one file's name and text.
    pub fn parse(file: &str, text: &str) -> Result<Migration, Error> {
        let (version, name) = parse_name(file)?;
        let sql = normalise(text);
        let no_transaction = sql
            .lines()
            .next()
            .is_some_and(|l| l.trim().eq_ignore_ascii_case(NO_TRANSACTION));
        Ok(Migration {
            version,
            name,
            file: file.to_string(),
            checksum: checksum(&sql),
            sql,
            no_transaction,
        })
    }
}

/// `V0002__stats.sql` -> `(2, "stats")`.
pub fn parse_name(file: &str) -> Result<(i64, String), Error> {
    let bad = |why: &str| Error::BadName {
        file: file.to_string(),
        why: why.to_string(),
    };
    let stem = file
        .strip_suffix(".sql")
        .ok_or_else(|| bad("it does not end in .sql"))?;
    let rest = stem
        .strip_prefix('V')
        .ok_or_else(|| bad("it does not start with V"))?;
    let (digits, name) = rest
        .split_once("__")
        .ok_or_else(|| bad("there is no `__` between the version and the name"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("the version is not a number"));
    }
    let version: i64 = digits
        .parse()
        .map_err(|_| bad("the version is too large"))?;
    if version == 0 {
        return Err(bad("versions start at 1"));
    }
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(bad("the name must be lowercase letters, digits and `_`"));
    }
    Ok((version, name.to_string()))
}

/// CRLF and lone CR become LF.
pub fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n").replace('\r', "\n")
}

/// Hex sha256 of already normalised text.
pub fn checksum(normalised: &str) -> String {
    hex::encode(Sha256::digest(normalised.as_bytes()))
}

/// Parse a set of `(file name, text)` pairs, sorted by version; two files
/// with one version are an error naming both.
pub fn from_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<Migration>, Error> {
    let mut out: Vec<Migration> = Vec::new();
    for (file, text) in pairs {
        let m = Migration::parse(file, text)?;
        if let Some(other) = out.iter().find(|o| o.version == m.version) {
            return Err(Error::DuplicateVersion {
                version: m.version,
                first: other.file.clone(),
                second: m.file,
            });
        }
        out.push(m);
    }
    out.sort_by_key(|m| m.version);
    Ok(out)
}

/// Every `*.sql` file of `dir`; other files are ignored.
pub fn load_dir(dir: &Path) -> Result<Vec<Migration>, Error> {
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", dir.display()));
    let mut texts = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == "sql") {
            let text = fs::read_to_string(&path).map_err(io)?;
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            texts.push((name, text));
        }
    }
    from_pairs(texts.iter().map(|(n, t)| (n.as_str(), t.as_str())))
}

/// The next free version and the file name for `name` (`new NAME`).
pub fn next_file(existing: &[Migration], name: &str) -> Result<String, Error> {
    let version = existing.iter().map(|m| m.version).max().unwrap_or(0) + 1;
    let file = format!("V{version:04}__{name}.sql");
    parse_name(&file)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(parse_name("V0002__stats.sql").unwrap(), (2, "stats".into()));
        assert_eq!(parse_name("V12__a_b2.sql").unwrap(), (12, "a_b2".into()));
        for bad in [
            "0001_mixnode_topology.sql",
            "V0001_x.sql",
            "V__x.sql",
            "V0001__.sql",
            "V0001__X.sql",
            "V0000__x.sql",
            "V0001__x.txt",
            "V99999999999999999999__x.sql",
        ] {
            let err = parse_name(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
            assert!(err.contains("V<version>__<name>.sql"), "{err}");
        }
    }

    #[test]
    fn crlf_is_not_an_edit() {
        let lf = Migration::parse("V1__a.sql", "CREATE TABLE a ();\nSELECT 1;\n").unwrap();
        let crlf = Migration::parse("V1__a.sql", "CREATE TABLE a ();\r\nSELECT 1;\r\n").unwrap();
        let cr = Migration::parse("V1__a.sql", "CREATE TABLE a ();\rSELECT 1;\r").unwrap();
        assert_eq!(lf.checksum, crlf.checksum);
        assert_eq!(lf.checksum, cr.checksum);
        let edited = Migration::parse("V1__a.sql", "CREATE TABLE a ();\nSELECT 2;\n").unwrap();
        assert_ne!(lf.checksum, edited.checksum);
        assert_eq!(lf.checksum.len(), 64);
    }

    #[test]
    fn no_transaction_marker_is_the_first_line_only() {
        let m = Migration::parse(
            "V1__a.sql",
            "-- no-transaction\r\nCREATE INDEX CONCURRENTLY i ON t (a);\n",
        )
        .unwrap();
        assert!(m.no_transaction);
        let m = Migration::parse("V1__a.sql", "SELECT 1;\n-- no-transaction\n").unwrap();
        assert!(!m.no_transaction);
    }

    #[test]
    fn duplicates_and_order() {
        let set = from_pairs([("V2__b.sql", "x"), ("V1__a.sql", "y")]).unwrap();
        assert_eq!(set.iter().map(|m| m.version).collect::<Vec<_>>(), [1, 2]);
        let err = from_pairs([("V1__a.sql", "x"), ("V0001__b.sql", "y")]).unwrap_err();
        assert!(err.to_string().contains("V1__a.sql") && err.to_string().contains("V0001__b.sql"));
        assert_eq!(next_file(&set, "stats").unwrap(), "V0003__stats.sql");
        assert!(next_file(&set, "Bad Name").is_err());
    }

    #[test]
    fn the_repository_migrations_parse() {
        let set = from_pairs(crate::EMBEDDED.iter().copied()).unwrap();
        assert_eq!(set[0].file, "V0001__mixnode_topology.sql");
        assert!(set[0].sql.contains("mixnode_topology"));
    }
}
