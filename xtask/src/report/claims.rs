//! `--claims`: the design documents' "Resource Savings Analysis" figures
//! (Prometheus 200 MB per instance, Grafana 100 MB, Postgres 50 MB, 900 MB
//! before and 350 MB after) beside what was measured for the same services.
//! A service is matched by the last part of its image repository
//! (`prom/prometheus`, `fog-offline/prometheus` -> `prometheus`). A claim
//! holds when the measurement is within 25% of it.

use super::model::{Claim, Side};

const MB: f64 = 1_000_000.0;

/// The seed table: (what, per-instance image name or total, claimed bytes).
const PER_INSTANCE: &[(&str, &str, f64)] = &[
    ("Prometheus, per instance", "prometheus", 200.0 * MB),
    ("Grafana, per instance", "grafana", 100.0 * MB),
    ("Postgres, per instance", "postgres", 50.0 * MB),
];
const TOTAL_BEFORE: f64 = 900.0 * MB;
const TOTAL_AFTER: f64 = 350.0 * MB;
const TOLERANCE: f64 = 0.25;

fn kind(repository: &str) -> &str {
    repository.rsplit('/').next().unwrap_or(repository)
}

fn verdict(claimed: f64, measured: Option<f64>) -> String {
    match measured {
        None => "not measured".into(),
        Some(m) if m <= 0.0 => "does not hold (measured no saving)".into(),
        Some(m) if (m - claimed).abs() <= claimed * TOLERANCE => "holds".into(),
        Some(m) if m < claimed => {
            format!("overstated ({:.1}× the measurement)", claimed / m.max(1.0))
        }
        Some(m) => format!("understated (measured {:.1}× the claim)", m / claimed),
    }
}

/// Mean memory per measured instance of `name` over both sides.
fn per_instance(sides: [&Side; 2], name: &str) -> (Option<f64>, String) {
    let mut total = 0.0;
    let mut instances = 0;
    let mut missing = 0;
    for side in sides {
        for row in side
            .services
            .iter()
            .filter(|r| r.repository.as_deref().map(kind) == Some(name))
        {
            match row.memory_bytes {
                Some(m) if row.containers > 0 => {
                    total += m;
                    instances += row.containers;
                }
                _ => missing += row.containers,
            }
        }
    }
    if instances == 0 {
        let why = if missing > 0 {
            format!("{missing} instance(s) declared, none measured (see not measured)")
        } else {
            "no such service on either side".into()
        };
        return (None, why);
    }
    (
        Some(total / instances as f64),
        format!("mean of {instances} measured instance(s), both sides"),
    )
}

/// The claims table for a report of `before` and `after`.
pub fn check(before: &Side, after: &Side, live: bool) -> Vec<Claim> {
    let mut out = Vec::new();
    for (what, name, claimed) in PER_INSTANCE {
        let (measured, basis) = if live {
            per_instance([before, after], name)
        } else {
            (None, "static report: add --live to measure".into())
        };
        out.push(Claim {
            claim: what.to_string(),
            claimed_bytes: *claimed,
            verdict: verdict(*claimed, measured),
            measured_bytes: measured,
            basis,
        });
    }
    for (what, claimed, side, name) in [
        ("total before", TOTAL_BEFORE, before, "before"),
        ("total after", TOTAL_AFTER, after, "after"),
    ] {
        let basis = match (live, side.not_measured.len()) {
            (false, _) => "static report: add --live to measure".to_string(),
            (true, 0) => format!("{name}: every service measured"),
            (true, n) => format!("{name}: measured services only, {n} not measured"),
        };
        out.push(Claim {
            claim: what.to_string(),
            claimed_bytes: claimed,
            verdict: verdict(claimed, side.memory_bytes),
            measured_bytes: side.memory_bytes,
            basis,
        });
    }
    let saving = match (before.memory_bytes, after.memory_bytes) {
        (Some(b), Some(a)) => Some(b - a),
        _ => None,
    };
    out.push(Claim {
        claim: "saving (before - after)".into(),
        claimed_bytes: TOTAL_BEFORE - TOTAL_AFTER,
        verdict: verdict(TOTAL_BEFORE - TOTAL_AFTER, saving),
        measured_bytes: saving,
        basis: saving.map_or("needs both totals".into(), |s| {
            format!(
                "{:.1} MB of the claimed {:.0} MB ({:.1}% of before)",
                s / MB,
                (TOTAL_BEFORE - TOTAL_AFTER) / MB,
                before.memory_bytes.map_or(0.0, |b| s / b * 100.0)
            )
        }),
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::ServiceRow;

    fn row(repo: &str, containers: usize, memory: Option<f64>) -> ServiceRow {
        ServiceRow {
            name: repo.into(),
            repository: Some(repo.into()),
            containers,
            memory_bytes: memory,
            ..ServiceRow::default()
        }
    }

    #[test]
    fn matches_by_repository_and_judges() {
        let before = Side {
            services: vec![
                row("prom/prometheus", 1, Some(40.0 * MB)),
                row("grafana/grafana", 1, None),
            ],
            memory_bytes: Some(100.0 * MB),
            ..Side::default()
        };
        let after = Side {
            services: vec![
                row("fog-offline/prometheus", 1, Some(60.0 * MB)),
                row("fog-offline/postgres", 1, Some(55.0 * MB)),
            ],
            memory_bytes: Some(115.0 * MB),
            ..Side::default()
        };
        let claims = check(&before, &after, true);
        assert_eq!(claims[0].measured_bytes, Some(50.0 * MB));
        assert!(
            claims[0].verdict.starts_with("overstated (4.0×"),
            "{}",
            claims[0].verdict
        );
        assert_eq!(claims[1].verdict, "not measured");
        assert!(claims[1].basis.contains("none measured"));
        assert_eq!(claims[2].verdict, "holds");
        assert_eq!(claims[5].measured_bytes, Some(-15.0 * MB));
        let static_claims = check(&before, &after, false);
        assert!(static_claims
            .iter()
            .take(3)
            .all(|c| c.verdict == "not measured"));
    }
}
