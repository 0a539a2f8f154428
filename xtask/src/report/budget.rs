//! `--fail-on` budgets: a small grammar over the report's metrics.
//!
//! ```text
//! BUDGET := METRIC ('>' | '>=') LIMIT        several: comma-separated or repeated flags
//! LIMIT  := '+' NUMBER '%'                    after grew by more than NUMBER % of before
//!         | '+' NUMBER [UNIT]                 after grew by more than NUMBER
//!         | NUMBER [UNIT]                     after is above NUMBER
//! UNIT   := B | KB | MB | GB | KiB | MiB | GiB (bytes metrics)
//! ```
//!
//! Metrics are the keys of [`super::model::metrics`] (`memory`, `cpu`,
//! `containers`, `images`, `ports`, `memory-limit`, `errors`, ...). A bad
//! expression is a usage error (exit 2); a live metric in a static report too.

use super::model::{BudgetResult, Metric, Unit};
use super::units;
use crate::UsageError;

/// How a limit compares.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// Growth by more than this percentage of before.
    GrowthPercent(f64),
    /// Growth by more than this amount.
    Growth(f64),
    /// An after value above this.
    Ceiling(f64),
}

/// One parsed budget.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub text: String,
    pub metric: &'static str,
    pub inclusive: bool,
    pub limit: Limit,
}

fn usage(text: &str, why: &str) -> UsageError {
    let keys: Vec<&str> = super::model::metrics(&Default::default(), &Default::default())
        .iter()
        .map(|m| m.key)
        .collect();
    UsageError::new(format!(
        "--fail-on `{text}`: {why}; write METRIC>LIMIT, e.g. 'memory>+10%', 'containers>+0', 'images>2GB' (metrics: {})",
        keys.join(", ")
    ))
}

/// Parse the values of every `--fail-on` flag.
pub fn parse_all(flags: &[String]) -> Result<Vec<Budget>, UsageError> {
    flags
        .iter()
        .flat_map(|f| f.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse)
        .collect()
}

/// Parse one budget expression.
pub fn parse(text: &str) -> Result<Budget, UsageError> {
    let Some(op) = text.find('>') else {
        return Err(usage(text, "no `>`"));
    };
    let name = text[..op].trim();
    let (inclusive, rest) = match text[op + 1..].strip_prefix('=') {
        Some(rest) => (true, rest),
        None => (false, &text[op + 1..]),
    };
    let probe = super::model::metrics(&Default::default(), &Default::default());
    let Some(metric) = probe.iter().find(|m| m.key == name) else {
        return Err(usage(text, &format!("unknown metric `{name}`")));
    };
    let rest = rest.trim();
    let (growth, number) = match rest.strip_prefix('+') {
        Some(n) => (true, n.trim()),
        None => (false, rest),
    };
    let (value, unit) = units::split_number(number)
        .filter(|(v, _)| v.is_finite())
        .ok_or_else(|| usage(text, &format!("`{rest}` is not a number")))?;
    let limit = match (growth, unit) {
        (true, "%") => Limit::GrowthPercent(value),
        (false, "%") if metric.unit != Unit::Percent => {
            return Err(usage(
                text,
                "a percentage limit needs `+` (growth), e.g. memory>+10%",
            ))
        }
        (_, u) => {
            let factor = scale(metric.unit, u)
                .ok_or_else(|| usage(text, &format!("unit `{u}` does not fit metric `{name}`")))?;
            if growth {
                Limit::Growth(value * factor)
            } else {
                Limit::Ceiling(value * factor)
            }
        }
    };
    Ok(Budget {
        text: text.to_string(),
        metric: metric.key,
        inclusive,
        limit,
    })
}

/// The factor of a unit suffix for a metric of `unit`.
fn scale(unit: Unit, suffix: &str) -> Option<f64> {
    match (unit, suffix) {
        (_, "") => Some(1.0),
        (Unit::Percent, "%") => Some(1.0),
        (Unit::Seconds, "s") => Some(1.0),
        (Unit::Bytes, s) => units::parse_docker_size(&format!("1{s}")),
        _ => None,
    }
}

/// Check every budget against `metrics`. A live metric without figures is a
/// usage error naming `--live`.
pub fn evaluate(budgets: &[Budget], metrics: &[Metric]) -> Result<Vec<BudgetResult>, UsageError> {
    budgets
        .iter()
        .map(|b| {
            let m = metrics
                .iter()
                .find(|m| m.key == b.metric)
                .expect("parse only accepts known metrics");
            let (Some(before), Some(after)) = (m.before, m.after) else {
                let why = if m.live {
                    format!("`{}` is measured only with --live", m.key)
                } else {
                    format!("`{}` has no figure on one side (no local images?)", m.key)
                };
                return Err(UsageError::new(format!("--fail-on `{}`: {why}", b.text)));
            };
            let over = |x: f64, limit: f64| if b.inclusive { x >= limit } else { x > limit };
            let (exceeded, detail) = match b.limit {
                Limit::GrowthPercent(p) => {
                    let grew = if before == 0.0 {
                        if after > 0.0 {
                            f64::INFINITY
                        } else {
                            0.0
                        }
                    } else {
                        (after - before) / before * 100.0
                    };
                    (
                        over(grew, p),
                        format!("{} changed {}", m.key, units::percent(Some(grew))),
                    )
                }
                Limit::Growth(d) => (
                    over(after - before, d),
                    format!(
                        "{} changed {}",
                        m.key,
                        units::signed(m.unit, Some(after - before))
                    ),
                ),
                Limit::Ceiling(c) => (
                    over(after, c),
                    format!("{} is {} after", m.key, units::value(m.unit, after)),
                ),
            };
            Ok(BudgetResult {
                budget: b.text.clone(),
                metric: b.metric,
                before: Some(before),
                after: Some(after),
                exceeded,
                detail,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(key: &'static str, unit: Unit, before: f64, after: f64) -> Metric {
        Metric {
            key,
            label: key,
            unit,
            before: Some(before),
            after: Some(after),
            live: false,
        }
    }

    #[test]
    fn grammar() {
        let b = parse("memory>+10%").unwrap();
        assert_eq!(
            (b.metric, b.limit, b.inclusive),
            ("memory", Limit::GrowthPercent(10.0), false)
        );
        assert_eq!(parse("containers >= +0").unwrap().limit, Limit::Growth(0.0));
        assert!(parse("containers>=+0").unwrap().inclusive);
        assert_eq!(parse("images>2GB").unwrap().limit, Limit::Ceiling(2e9));
        assert_eq!(
            parse("memory>+64MiB").unwrap().limit,
            Limit::Growth(64.0 * 1048576.0)
        );
        assert_eq!(parse("cpu>150%").unwrap().limit, Limit::Ceiling(150.0));
        let all = parse_all(&["memory>+10%, ports>+0".into(), "errors>0".into()]).unwrap();
        assert_eq!(all.len(), 3);
    }

    #[test]
    fn bad_expressions_say_what_to_write() {
        for bad in [
            "memory",
            "memroy>+10%",
            "memory>+ten%",
            "memory>10%",
            "ports>+3MB",
            "memory>+1e999",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.0.contains(&format!("`{bad}`")) && err.0.contains("METRIC>LIMIT"),
                "{bad}: {err}"
            );
        }
        assert!(parse("memroy>+10%")
            .unwrap_err()
            .0
            .contains("unknown metric `memroy`"));
        let long = format!("memory>+{}%", "9".repeat(5000));
        for odd in [
            ">",
            ">=",
            "memory>+",
            "memory>+.%",
            "memory>+..1%",
            "∞>+1%",
            "memory>+1€",
            "memory>+-5%",
            long.as_str(),
        ] {
            let _ = parse(odd); // no panic, whatever the input
        }
        assert!(parse("memory>+1€").is_err() && parse("memory>+.%").is_err());
    }

    #[test]
    fn evaluates_growth_and_ceilings() {
        let ms = vec![
            metric("memory", Unit::Bytes, 100.0, 115.0),
            metric("containers", Unit::Count, 4.0, 4.0),
            metric("ports", Unit::Count, 0.0, 2.0),
        ];
        let run = |s: &str| evaluate(&parse_all(&[s.into()]).unwrap(), &ms).unwrap()[0].clone();
        assert!(run("memory>+10%").exceeded);
        assert!(!run("memory>+20%").exceeded);
        assert!(!run("containers>+0").exceeded);
        assert!(run("containers>=+0").exceeded);
        assert!(run("ports>+0%").exceeded, "growth from zero is infinite");
        assert!(run("memory>110").exceeded);
        assert_eq!(run("memory>+10%").detail, "memory changed +15.0%");
        let live = Metric {
            before: None,
            after: None,
            live: true,
            ..metric("cpu", Unit::Percent, 0.0, 0.0)
        };
        let err = evaluate(&parse_all(&["cpu>+5%".into()]).unwrap(), &[live]).unwrap_err();
        assert!(err.0.contains("--live"), "{err}");
    }
}
