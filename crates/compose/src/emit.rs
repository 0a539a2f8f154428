//! A small block-style YAML writer for `config` output. serde_yaml writes
//! YAML 1.2, where `yes`, `on` or `0755` are plain strings; Compose v1 reads
//! YAML 1.1 and would turn them into booleans or octal numbers. This writer
//! quotes every string that is not unmistakably a string in both versions.

use serde_yaml::Value;

/// Render `v` as a block YAML document.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    block(v, 0, &mut out);
    out
}

fn block(v: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, val) in m {
                out.push_str(&pad);
                out.push_str(&scalar(k));
                out.push(':');
                child(val, indent + 2, out);
            }
        }
        Value::Sequence(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                child(item, indent + 2, out);
            }
        }
        Value::Tagged(t) => block(&t.value, indent, out),
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// The value after `key:` or `-`: inline for scalars and empty collections.
fn child(v: &Value, indent: usize, out: &mut String) {
    let v = match v {
        Value::Tagged(t) => &t.value,
        v => v,
    };
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            out.push('\n');
            block(v, indent, out);
        }
        Value::Sequence(s) if !s.is_empty() => {
            out.push('\n');
            block(v, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Mapping(_) => "{}".into(),
        Value::Sequence(_) => "[]".into(),
        Value::Tagged(t) => scalar(&t.value),
    }
}

/// Plain when safe in YAML 1.1 and 1.2, else a double-quoted string in
/// which every character YAML does not allow raw (C0 and C1 controls, DEL,
/// line and paragraph separators, a BOM) is escaped, so output reads back.
fn string(s: &str) -> String {
    if is_plain_safe(s) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_plain_safe(s: &str) -> bool {
    const SPECIAL: &[&str] = &[
        "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
    ];
    let Some(first) = s.chars().next() else {
        return false;
    };
    let looks_numeric = s
        .chars()
        .all(|c| c.is_ascii_digit() || "._:+-eE".contains(c))
        && s.chars().any(|c| c.is_ascii_digit());
    (first.is_ascii_alphanumeric() || "/_.".contains(first))
        && !SPECIAL.contains(&s.to_ascii_lowercase().as_str())
        && !looks_numeric
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || " _./:@,=+-%".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_what_yaml_1_1_would_misread() {
        for s in [
            "yes", "On", "0755", "5432", "1.5", "", " x", "a: b", "-x", "$$HOME", "12:30",
        ] {
            assert!(string(s).starts_with('"'), "{s:?} must be quoted");
        }
        for s in [
            "postgres:15.8-alpine",
            "127.0.0.1:5432:5432/tcp",
            "/data",
            "info",
        ] {
            assert_eq!(string(s), s);
        }
    }

    #[test]
    fn control_characters_are_escaped_and_read_back() {
        let s = "a\u{7f}b\u{85}c\u{1b}d\"e\\f\ng\u{2028}";
        let quoted = string(s);
        assert!(
            !quoted.contains('\u{7f}') && !quoted.contains('\u{2028}'),
            "{quoted}"
        );
        let back: String = serde_yaml::from_str(&quoted).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn round_trips_through_serde_yaml() {
        let doc: Value = serde_yaml::from_str(
            "services:\n  a:\n    environment: {X: 'yes', Y: '0755'}\n    ports: ['80/tcp']\n    networks: {n: null}\nvolumes: {v: {}}\n",
        )
        .unwrap();
        let text = to_yaml(&doc);
        assert_eq!(serde_yaml::from_str::<Value>(&text).unwrap(), doc);
        assert!(text.contains("X: \"yes\""), "{text}");
    }
}
