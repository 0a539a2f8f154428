//! Files against history, without a database: the status of every version
//! (applied, pending, edited, missing, failed) and the list of files `up`
//! would apply, or the first defect that stops it, in the order that matters
//! most: a dirty database, an edited file, a missing file, then a file added
//! out of order.

use crate::{Error, Migration};

/// One row of the history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i64,
    pub name: String,
    pub checksum: String,
    /// RFC 3339, UTC.
    pub applied_at: String,
    pub execution_ms: i64,
    pub success: bool,
}

/// The state of one version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Applied,
    Pending,
    Edited,
    Missing,
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Applied => "applied",
            State::Pending => "pending",
            State::Edited => "edited",
            State::Missing => "missing",
            State::Failed => "failed",
        }
    }
}

/// One line of `status`.
#[derive(Debug, Clone)]
pub struct Row {
    pub version: i64,
    pub name: String,
    pub file: Option<String>,
    pub applied_at: Option<String>,
    pub execution_ms: Option<i64>,
    pub checksum: String,
    pub state: State,
}

/// Every version in files or history, sorted.
pub fn status(files: &[Migration], history: &[Applied]) -> Vec<Row> {
    let mut rows: Vec<Row> = files
        .iter()
        .map(|m| {
            let applied = history.iter().find(|a| a.version == m.version);
            let state = match applied {
                None => State::Pending,
                Some(a) if !a.success => State::Failed,
                Some(a) if a.checksum != m.checksum => State::Edited,
                Some(_) => State::Applied,
            };
            Row {
                version: m.version,
                name: m.name.clone(),
                file: Some(m.file.clone()),
                applied_at: applied.map(|a| a.applied_at.clone()),
                execution_ms: applied.map(|a| a.execution_ms),
                checksum: m.checksum.clone(),
                state,
            }
        })
        .collect();
    for a in history {
        if !files.iter().any(|m| m.version == a.version) {
            rows.push(Row {
                version: a.version,
                name: a.name.clone(),
                file: None,
                applied_at: Some(a.applied_at.clone()),
                execution_ms: Some(a.execution_ms),
                checksum: a.checksum.clone(),
                state: if a.success {
                    State::Missing
                } else {
                    State::Failed
                },
            });
        }
    }
    rows.sort_by_key(|r| r.version);
    rows
}

/// The files `up` applies, in order, or the first defect.
pub fn pending<'a>(
    files: &'a [Migration],
    history: &[Applied],
) -> Result<Vec<&'a Migration>, Error> {
    let file_of = |version: i64, name: &str| {
        files
            .iter()
            .find(|m| m.version == version)
            .map_or_else(|| format!("V{version:04}__{name}.sql"), |m| m.file.clone())
    };
    if let Some(a) = history.iter().find(|a| !a.success) {
        return Err(Error::Dirty {
            file: file_of(a.version, &a.name),
            version: a.version,
            at: a.applied_at.clone(),
        });
    }
    for a in history {
        match files.iter().find(|m| m.version == a.version) {
            Some(m) if m.checksum != a.checksum => {
                return Err(Error::Edited {
                    file: m.file.clone(),
                    applied: a.checksum.clone(),
                    now: m.checksum.clone(),
                })
            }
            Some(_) => {}
            None => {
                return Err(Error::Missing {
                    version: a.version,
                    name: a.name.clone(),
                })
            }
        }
    }
    let latest = history.iter().map(|a| a.version).max().unwrap_or(0);
    let todo: Vec<&Migration> = files
        .iter()
        .filter(|m| !history.iter().any(|a| a.version == m.version))
        .collect();
    if let Some(m) = todo.iter().find(|m| m.version < latest) {
        let next = files
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0)
            .max(latest)
            + 1;
        return Err(Error::OutOfOrder {
            file: m.file.clone(),
            version: m.version,
            latest,
            next,
        });
    }
    // Refused before anything runs: a COMMIT inside would make "rolled back" a lie.
    for m in todo.iter().filter(|m| !m.no_transaction) {
        if let Some((line, statement)) = crate::split::transaction_control(&m.sql) {
            return Err(Error::TransactionControl {
                file: m.file.clone(),
                line,
                statement,
            });
        }
    }
    Ok(todo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<Migration> {
        crate::files::from_pairs(list.iter().copied()).unwrap()
    }

    fn applied(m: &Migration, success: bool) -> Applied {
        Applied {
            version: m.version,
            name: m.name.clone(),
            checksum: m.checksum.clone(),
            applied_at: "2026-12-01T08:00:00Z".into(),
            execution_ms: 3,
            success,
        }
    }

    #[test]
    fn pending_after_applied() {
        let set = files(&[("V1__a.sql", "A"), ("V2__b.sql", "B")]);
        let todo = pending(&set, &[applied(&set[0], true)]).unwrap();
        assert_eq!(todo.len(), 1);
        assert_eq!(todo[0].file, "V2__b.sql");
        let rows = status(&set, &[applied(&set[0], true)]);
        assert_eq!(rows[0].state, State::Applied);
        assert_eq!(rows[1].state, State::Pending);
    }

    #[test]
    fn a_transactional_file_with_commit_is_refused_with_its_line() {
        let set = files(&[
            ("V1__a.sql", "CREATE TABLE a (x int);\n"),
            (
                "V2__b.sql",
                "CREATE TABLE b (x int);\nCOMMIT;\nSELECT 1/0;\n",
            ),
        ]);
        let err = pending(&set, &[]).unwrap_err().to_string();
        assert!(err.starts_with("V2__b.sql:2: `COMMIT;`"), "{err}");
        assert!(err.contains("-- no-transaction"), "{err}");
        // Already applied: not re-judged. Marked no-transaction: its own business.
        assert!(pending(&set, &[applied(&set[0], true), applied(&set[1], true)]).is_ok());
        let free = files(&[(
            "V1__a.sql",
            "-- no-transaction\nCREATE TABLE b (x int);\nCOMMIT;\n",
        )]);
        assert_eq!(pending(&free, &[]).unwrap().len(), 1);
    }

    #[test]
    fn every_defect_names_the_file() {
        let set = files(&[("V1__a.sql", "A"), ("V2__b.sql", "B")]);
        // Edited.
        let mut h = applied(&set[0], true);
        h.checksum = "0".repeat(64);
        let err = pending(&set, &[h.clone()]).unwrap_err().to_string();
        assert!(err.contains("V1__a.sql was edited"), "{err}");
        assert_eq!(status(&set, &[h])[0].state, State::Edited);
        // Missing.
        let gone = files(&[("V2__b.sql", "B")]);
        let err = pending(&gone, &[applied(&set[0], true)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("V0001__a.sql is missing"), "{err}");
        assert_eq!(
            status(&gone, &[applied(&set[0], true)])[0].state,
            State::Missing
        );
        // Dirty.
        let err = pending(&set, &[applied(&set[0], false)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("V1__a.sql failed") && err.contains("dirty"),
            "{err}"
        );
        assert!(err.contains("version = 1"), "{err}");
        // Out of order: V1 added after V2 was applied.
        let err = pending(&set, &[applied(&set[1], true)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("V1__a.sql (version 1) is older than the latest applied version 2"),
            "{err}"
        );
        assert!(err.contains("V0003__"), "{err}");
    }

    #[test]
    fn crlf_checkout_still_matches() {
        let lf = files(&[("V1__a.sql", "SELECT 1;\nSELECT 2;\n")]);
        let crlf = files(&[("V1__a.sql", "SELECT 1;\r\nSELECT 2;\r\n")]);
        assert!(pending(&crlf, &[applied(&lf[0], true)]).unwrap().is_empty());
    }
}
