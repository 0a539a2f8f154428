//! Splitting a `-- no-transaction` file into statements, because a
//! multi-statement query string runs as one implicit transaction and
//! `CREATE INDEX CONCURRENTLY` refuses that. Semicolons inside quotes,
//! quoted identifiers, dollar-quoted bodies and comments do not split.

/// The statements of `sql`, trimmed, empty ones (and comment-only ones) dropped.
pub fn statements(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut code = false; // anything but comments since `start`
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
                code = true;
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'$' => {
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
                    out.push(sql[start..=i].trim().to_string());
                }
                start = i + 1;
                code = false;
            }
            c if !c.is_ascii_whitespace() => code = true,
            _ => {}
        }
        i += 1;
    }
    if code {
        out.push(sql[start..].trim().to_string());
    }
    out
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
