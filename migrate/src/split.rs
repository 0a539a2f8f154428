//! Splitting a `-- no-transaction` file into statements, because a
//! multi-statement query string runs as one implicit transaction and
//! `CREATE INDEX CONCURRENTLY` refuses that. Semicolons inside quotes,
//! quoted identifiers, dollar-quoted bodies and comments do not split.
//! [`transaction_control`] finds a top-level `BEGIN`/`COMMIT`/`ROLLBACK`
//! (which would end the runner's own transaction) with its line.

/// The statements of `sql`, trimmed, empty ones (and comment-only ones) dropped.
pub fn statements(sql: &str) -> Vec<String> {
    statements_at(sql).into_iter().map(|(_, s)| s).collect()
}

/// The statements of `sql` with the 1-based line of each one's first code.
pub fn statements_at(sql: &str) -> Vec<(usize, String)> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut code = false; // anything but comments since `start`
    let mut first = 0; // where that code began
    let line = |at: usize| sql[..at].bytes().filter(|&c| c == b'\n').count() + 1;
    while i < b.len() {
        match b[i] {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = sql[i..].find('\n').map_or(b.len(), |n| i + n + 1);
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = sql[i + 2..].find("*/").map_or(b.len(), |n| i + 2 + n + 2);
                continue;
            }
            q @ (b'\'' | b'"') => {
                if !code {
                    first = i;
                }
                code = true;
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'$' => {
                if !code {
                    first = i;
                }
                code = true;
                let tag_end = sql[i + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .map(|n| i + 1 + n);
                if let Some(end) = tag_end.filter(|&e| b[e] == b'$') {
                    let tag = &sql[i..=end];
                    i = sql[end + 1..]
                        .find(tag)
                        .map_or(b.len(), |n| end + 1 + n + tag.len() - 1);
                }
            }
            b';' => {
                if code {
                    out.push((line(first), sql[first..=i].trim().to_string()));
                }
                code = false;
            }
            c if !c.is_ascii_whitespace() => {
                if !code {
                    first = i;
                }
                code = true
            }
            _ => {}
        }
        i += 1;
    }
    if code {
        out.push((line(first), sql[first..].trim().to_string()));
    }
    out
}

/// The first top-level statement of `sql` that begins or ends a transaction
/// (`BEGIN`, `START TRANSACTION`, `COMMIT`, `END`, `ROLLBACK`, `ABORT`,
/// `PREPARE TRANSACTION`): its line and its text. Bodies in quotes or
/// dollar quotes and SQL-standard `BEGIN ATOMIC ... END` function bodies
/// do not count; `ROLLBACK TO SAVEPOINT` stays inside the transaction.
pub fn transaction_control(sql: &str) -> Option<(usize, String)> {
    let mut in_atomic = false;
    for (line, statement) in statements_at(sql) {
        let words: Vec<String> = statement
            .split(|c: char| c.is_whitespace() || c == ';' || c == '(')
            .filter(|w| !w.is_empty())
            .take(3)
            .map(str::to_ascii_uppercase)
            .collect();
        let word = |n: usize| words.get(n).map_or("", String::as_str);
        if in_atomic {
            in_atomic = word(0) != "END";
            continue;
        }
        let upper = statement.to_ascii_uppercase();
        if word(0) == "CREATE"
            && upper
                .split_whitespace()
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w == ["BEGIN", "ATOMIC"])
        {
            in_atomic = true;
            continue;
        }
        let control = match word(0) {
            "BEGIN" | "COMMIT" | "END" | "ABORT" => true,
            "START" | "PREPARE" => word(1) == "TRANSACTION",
            "ROLLBACK" => word(1) != "TO" && word(1) != "PREPARED",
            _ => false,
        } || (word(0) == "COMMIT" && word(1) == "PREPARED");
        if control {
            let first = statement.lines().next().unwrap_or("").trim().to_string();
            return Some((line, first));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_comments_and_dollar_bodies() {
        let sql = "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n\
                   INSERT INTO t VALUES ('a;b', \"x;y\");\n/* c; */\n\
                   CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                   DO $$ BEGIN PERFORM 1; END $$;\n-- trailing; comment\nSELECT 2";
        let s = statements(sql);
        assert_eq!(s.len(), 5, "{s:#?}");
        assert!(s[0].ends_with("CREATE INDEX CONCURRENTLY i ON t (a);"));
        assert!(s[1].contains("'a;b'"));
        assert!(s[2].contains("$body$ SELECT 1; $body$"));
        assert!(s[3].starts_with("DO $$"));
        assert!(s[4].ends_with("SELECT 2"), "{s:#?}");
    }

    #[test]
    fn top_level_transaction_control_is_found_with_its_line() {
        for (sql, line) in [
            ("CREATE TABLE t (a int);\nCOMMIT;\nSELECT 1/0;\n", 2),
            ("-- begin here\nbegin;\nCREATE TABLE t (a int);\n", 2),
            ("CREATE TABLE t (a int);\n\n  /* x */ Rollback ;", 3),
            (
                "SELECT 1;\nSTART TRANSACTION ISOLATION LEVEL SERIALIZABLE;",
                2,
            ),
            ("SELECT 1;\nEND;", 2),
            ("SELECT 1;\nABORT;", 2),
            ("SELECT 1;\nPREPARE TRANSACTION 'x';", 2),
            ("SELECT 1;\nCOMMIT PREPARED 'x';", 2),
            ("SELECT 1; COMMIT", 1),
        ] {
            let found = transaction_control(sql);
            assert_eq!(
                found.as_ref().map(|f| f.0),
                Some(line),
                "{sql:?}: {found:?}"
            );
        }
        for sql in [
            "DO $$ BEGIN PERFORM 1; COMMIT; END $$;",
            "CREATE FUNCTION f() RETURNS void AS 'BEGIN; COMMIT;' LANGUAGE sql;",
            "-- COMMIT;\n/* ROLLBACK; */\nSELECT 'begin;';\nSELECT \"commit\" FROM t;",
            "SAVEPOINT a;\nROLLBACK TO SAVEPOINT a;\nRELEASE a;\nROLLBACK TO a;",
            "CREATE FUNCTION f() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT CASE WHEN true THEN 1 END;\nEND;\nCREATE TABLE begin_log (a int);",
            "CREATE TABLE committed (a int);\nINSERT INTO committed VALUES (1);",
        ] {
            assert_eq!(transaction_control(sql), None, "{sql:?}");
        }
        // The first statement's text is what the message quotes.
        assert_eq!(
            transaction_control("SELECT 1;\n  COMMIT;  -- done\n")
                .unwrap()
                .1,
            "COMMIT;"
        );
    }

    #[test]
    fn hostile_input_ends() {
        for sql in [
            "'unterminated",
            "$tag$ never closed",
            "/* open",
            "$",
            "$1;",
            ";;;",
        ] {
            let _ = statements(sql);
        }
        assert!(statements("-- only a comment\n;").is_empty());
    }
}
