//! Compose variable interpolation: `$V`, `${V}`, `${V:-default}`,
//! `${V-default}`, `${V:?error}`, `${V?error}`, `${V:+alt}`, `${V+alt}` and
//! `$$` for a literal `$`. Defaults and alternatives may themselves contain
//! interpolations. Only string values are interpolated, never mapping keys.

use serde_yaml::Value;

use super::env::EnvSource;
use super::lines::Seg;
use super::read::{MAX_EXPANDED_BYTES, MAX_NESTING, MAX_VALUE_BYTES};

/// Why a string could not be interpolated. `variable` is empty for syntax errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InterpolationError {
    pub variable: String,
    pub message: String,
}

/// Interpolate one string (at most [`MAX_VALUE_BYTES`] out, defaults nested
/// at most [`MAX_NESTING`] deep).
pub fn interpolate(input: &str, env: &EnvSource) -> Result<String, InterpolationError> {
    let mut budget = MAX_EXPANDED_BYTES;
    interpolate_in(input, env, 0, &mut budget)
}

fn too_big(what: &str) -> InterpolationError {
    InterpolationError {
        variable: String::new(),
        message: what.to_string(),
    }
}

/// `budget` is how many bytes interpolation may still add (shared by a file).
fn interpolate_in(
    input: &str,
    env: &EnvSource,
    depth: usize,
    budget: &mut usize,
) -> Result<String, InterpolationError> {
    if depth > MAX_NESTING {
        return Err(too_big(&format!(
            "interpolation nested more than {MAX_NESTING} levels deep"
        )));
    }
    let mut out = String::with_capacity(input.len().min(MAX_VALUE_BYTES));
    let mut rest = input;
    let push = |out: &mut String, piece: &str, budget: &mut usize| {
        if out.len() + piece.len() > MAX_VALUE_BYTES.max(input.len()) {
            return Err(too_big(&format!(
                "a value grows over {} MB after interpolation",
                MAX_VALUE_BYTES / (1024 * 1024)
            )));
        }
        *budget = budget.checked_sub(piece.len()).ok_or_else(|| {
            too_big(&format!(
                "interpolation would add more than {} MB to this file",
                MAX_EXPANDED_BYTES / (1024 * 1024)
            ))
        })?;
        out.push_str(piece);
        Ok(())
    };
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body_start) = after.strip_prefix('{') {
            // v1 ends `${...}` at the first `}`: no nesting.
            let end = if env.flavour == super::Flavour::V1 {
                body_start.find('}')
            } else {
                matching_brace(body_start)
            };
            let end = end.ok_or_else(|| InterpolationError {
                variable: String::new(),
                message: format!("unclosed `${{` in `{}`", preview(input)),
            })?;
            let piece = expand(&body_start[..end], env, depth, budget)?;
            push(&mut out, &piece, budget)?;
            rest = &body_start[end + 1..];
        } else {
            let len = name_len(after);
            if len == 0 {
                // A lone `$` stays as it is (Compose does the same).
                out.push('$');
            } else {
                push(&mut out, env.get(&after[..len]).unwrap_or(""), budget)?;
            }
            rest = &after[len..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The start of a long value, for error messages.
fn preview(s: &str) -> String {
    if s.len() <= 80 {
        return s.to_string();
    }
    let mut end = 77;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Index of the `}` closing a `${`, counting nested `${ ... }`.
fn matching_brace(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

fn name_len(s: &str) -> usize {
    s.bytes()
        .enumerate()
        .take_while(|(i, b)| {
            b.is_ascii_alphabetic() || *b == b'_' || (*i > 0 && b.is_ascii_digit())
        })
        .count()
}

fn expand(
    body: &str,
    env: &EnvSource,
    depth: usize,
    budget: &mut usize,
) -> Result<String, InterpolationError> {
    let len = name_len(body);
    let name = &body[..len];
    let op = &body[len..];
    let syntax = || InterpolationError {
        variable: name.to_string(),
        message: format!("invalid interpolation `${{{}}}`", preview(body)),
    };
    if name.is_empty() {
        return Err(syntax());
    }
    let value = env.get(name);
    let set_nonempty = value.is_some_and(|v| !v.is_empty());
    let (cond, arg) = match op {
        "" => return Ok(value.unwrap_or("").to_string()),
        _ if op.starts_with(":-") => (!set_nonempty, &op[2..]),
        _ if op.starts_with(":?") => (!set_nonempty, &op[2..]),
        _ if op.starts_with(":+") => (set_nonempty, &op[2..]),
        _ if op.starts_with('-') || op.starts_with('?') || op.starts_with('+') => {
            let set = value.is_some();
            (if op.starts_with('+') { set } else { !set }, &op[1..])
        }
        _ => return Err(syntax()),
    };
    // v1 knows no `+` forms and takes a default literally.
    let v1 = env.flavour == super::Flavour::V1;
    if v1 && op.trim_start_matches(':').starts_with('+') {
        return Err(syntax());
    }
    if v1 && cond && op.trim_start_matches(':').starts_with('-') {
        return Ok(arg.to_string());
    }
    let kind = op.trim_start_matches(':').as_bytes()[0];
    match kind {
        b'-' | b'+' if cond => interpolate_in(arg, env, depth + 1, budget),
        b'+' => Ok(String::new()),
        b'?' if cond => {
            let detail = interpolate_in(arg, env, depth + 1, budget)?;
            let reason = if op.starts_with(':') {
                "is unset or empty"
            } else {
                "is unset"
            };
            Err(InterpolationError {
                variable: name.to_string(),
                message: if detail.is_empty() {
                    format!("required variable {name} {reason}")
                } else {
                    format!("required variable {name} {reason}: {detail}")
                },
            })
        }
        _ => Ok(value.unwrap_or("").to_string()),
    }
}

/// Interpolate every string scalar under `value` (mapping keys untouched),
/// sharing one [`MAX_EXPANDED_BYTES`] budget. Iterative, so no input depth
/// can exhaust the stack. On error returns the key path of the offending
/// value with the error.
pub fn interpolate_value(
    value: &mut Value,
    env: &EnvSource,
    path: &mut [Seg],
) -> Result<(), (Vec<Seg>, InterpolationError)> {
    let mut budget = MAX_EXPANDED_BYTES;
    let base = path.to_vec();
    let mut stack: Vec<(Vec<Seg>, &mut Value)> = vec![(base, value)];
    while let Some((at, v)) = stack.pop() {
        match v {
            Value::String(s) if s.contains('$') => {
                *s = interpolate_in(s, env, 0, &mut budget).map_err(|e| (at, e))?;
            }
            Value::Sequence(items) => {
                for (i, item) in items.iter_mut().enumerate().rev() {
                    let mut p = at.clone();
                    p.push(Seg::Index(i));
                    stack.push((p, item));
                }
            }
            Value::Mapping(map) => {
                let mut children: Vec<_> = map
                    .iter_mut()
                    .map(|(k, v)| {
                        let mut p = at.clone();
                        p.push(Seg::Key(super::key_str(k)));
                        (p, v)
                    })
                    .collect();
                children.reverse();
                stack.extend(children);
            }
            Value::Tagged(tagged) => stack.push((at, &mut tagged.value)),
            _ => {}
        }
    }
    Ok(())
}

/// The variable and its default when `raw` is exactly one `${VAR:-default}`
/// or `${VAR-default}` (how the overlays write a configurable `image:`).
pub fn variable_default(raw: &str) -> Option<(&str, &str)> {
    let body = raw.strip_prefix("${")?;
    if matching_brace(body)? + 1 != body.len() {
        return None;
    }
    let body = &body[..body.len() - 1];
    let len = name_len(body);
    let op = &body[len..];
    let default = op.strip_prefix(":-").or_else(|| op.strip_prefix('-'))?;
    (len > 0).then(|| (&body[..len], default))
}

/// Escape `$` as `$$` so printed output interpolates back to the same value.
pub fn escape(s: &str) -> String {
    s.replace('$', "$$")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> EnvSource {
        EnvSource::from_pairs([("SET", "value"), ("EMPTY", ""), ("PORT", "5433")])
    }

    fn ok(s: &str) -> String {
        interpolate(s, &env()).unwrap()
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(ok("$SET and ${SET}"), "value and value");
        assert_eq!(ok("${UNSET}|$UNSET|"), "||");
        assert_eq!(ok("127.0.0.1:${PORT}:5432"), "127.0.0.1:5433:5432");
        assert_eq!(ok("no vars"), "no vars");
        assert_eq!(ok("cost $ 5"), "cost $ 5");
    }

    #[test]
    fn colon_dash_defaults_on_unset_or_empty() {
        assert_eq!(ok("${UNSET:-d}"), "d");
        assert_eq!(ok("${EMPTY:-d}"), "d");
        assert_eq!(ok("${SET:-d}"), "value");
    }

    #[test]
    fn dash_defaults_only_on_unset() {
        assert_eq!(ok("${UNSET-d}"), "d");
        assert_eq!(ok("${EMPTY-d}"), "");
        assert_eq!(ok("${SET-d}"), "value");
    }

    #[test]
    fn plus_forms_give_the_alternative() {
        assert_eq!(ok("${SET:+alt}"), "alt");
        assert_eq!(ok("${EMPTY:+alt}"), "");
        assert_eq!(ok("${UNSET:+alt}"), "");
        assert_eq!(ok("${EMPTY+alt}"), "alt");
        assert_eq!(ok("${UNSET+alt}"), "");
    }

    #[test]
    fn question_forms_fail_naming_the_variable() {
        let err = interpolate("${UNSET:?set it in .env}", &env()).unwrap_err();
        assert_eq!(err.variable, "UNSET");
        assert!(err.message.contains("UNSET") && err.message.contains("set it in .env"));
        let err = interpolate("${EMPTY:?}", &env()).unwrap_err();
        assert_eq!(err.variable, "EMPTY");
        assert!(err.message.contains("unset or empty"), "{err}");
        assert_eq!(ok("${EMPTY?must exist}"), "");
        let err = interpolate("${UNSET?must exist}", &env()).unwrap_err();
        assert_eq!(err.variable, "UNSET");
        assert_eq!(ok("${SET:?x}"), "value");
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        assert_eq!(ok("$$SET"), "$SET");
        assert_eq!(
            ok("pg_isready -U $${POSTGRES_USER}"),
            "pg_isready -U ${POSTGRES_USER}"
        );
        assert_eq!(ok("$$$SET"), "$value");
        assert_eq!(escape("a$b"), "a$$b");
    }

    #[test]
    fn a_whole_value_default_names_its_variable() {
        assert_eq!(
            variable_default("${PG_IMAGE:-postgres:15.8-alpine}"),
            Some(("PG_IMAGE", "postgres:15.8-alpine"))
        );
        assert_eq!(variable_default("${TAG-v1}"), Some(("TAG", "v1")));
        assert_eq!(variable_default("${A:-${B:-x}}"), Some(("A", "${B:-x}")));
        for raw in [
            "postgres:15",
            "${TAG}",
            "x:${TAG:-1}",
            "${A:-1}${B:-2}",
            "${A:?no}",
            "${:-x}",
        ] {
            assert_eq!(variable_default(raw), None, "{raw}");
        }
    }

    #[test]
    fn nested_defaults() {
        assert_eq!(ok("${UNSET:-${SET}}"), "value");
        assert_eq!(ok("${UNSET:-${ALSO_UNSET:-deep}}"), "deep");
        assert_eq!(ok("${UNSET:-a:b/c}"), "a:b/c");
    }

    #[test]
    fn v1_reads_defaults_literally_and_has_no_plus_forms() {
        let v1 = env().with_flavour(super::super::Flavour::V1);
        assert_eq!(interpolate("${UNSET:-${SET}}", &v1).unwrap(), "${SET}");
        assert_eq!(interpolate("${UNSET:-$SET}", &v1).unwrap(), "$SET");
        assert!(interpolate("${SET:+alt}", &v1).is_err());
        assert_eq!(ok("${UNSET:-${SET}}"), "value");
    }

    #[test]
    fn syntax_errors() {
        assert!(interpolate("${SET", &env())
            .unwrap_err()
            .message
            .contains("unclosed"));
        assert!(interpolate("${}", &env()).is_err());
        assert!(interpolate("${SET*x}", &env()).is_err());
    }

    #[test]
    fn hostile_nesting_and_growth_are_refused() {
        let nested = format!("{}x{}", "${A:-".repeat(4000), "}".repeat(4000));
        let err = interpolate(&nested, &env()).unwrap_err();
        assert!(err.message.contains("nested more than"), "{err}");
        let big = "v".repeat(600 * 1024);
        let env = EnvSource::from_pairs([("BIG", big.as_str())]);
        assert_eq!(interpolate("$BIG", &env).unwrap().len(), big.len());
        let err = interpolate("$BIG$BIG", &env).unwrap_err();
        assert!(err.message.contains("over 1 MB"), "{err}");
        let mut doc: Value =
            serde_yaml::from_str(&format!("[{}]", vec!["$BIG"; 1000].join(","))).unwrap();
        let (_, err) = interpolate_value(&mut doc, &env, &mut Vec::new()).unwrap_err();
        assert!(err.message.contains("16 MB"), "{err}");
    }

    #[test]
    fn values_are_interpolated_keys_are_not() {
        let mut v: Value = serde_yaml::from_str("${SET}: ${SET}\nlist: [$PORT]").unwrap();
        interpolate_value(&mut v, &env(), &mut Vec::new()).unwrap();
        assert_eq!(v["${SET}"], Value::from("value"));
        assert_eq!(v["list"][0], Value::from("5433"));
        let mut v: Value = serde_yaml::from_str("a:\n  b: [x, '${NOPE:?}']").unwrap();
        let (path, err) = interpolate_value(&mut v, &env(), &mut Vec::new()).unwrap_err();
        assert_eq!(super::super::lines::display_path(&path), "a.b[1]");
        assert_eq!(err.variable, "NOPE");
    }
}
