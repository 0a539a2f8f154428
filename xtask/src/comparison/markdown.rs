//! The markdown report (the default): GitHub tables that read in a terminal
//! too. Totals (every [`super::model::metrics`] row with before, after, delta
//! and percentage), instances per image repository, per-service rows, the
//! services that were not measured, check findings per rule, and the claims
//! and budgets when asked for.

use std::fmt::Write as _;

use super::model::{self, Report, Unit};
use super::units::{self, opt, percent, signed, value};

/// A whole report as markdown.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let (b, a) = (&report.before, &report.after);
    let _ = writeln!(out, "# Resource report: {} → {}\n", b.label, a.label);
    for (name, side) in [("before", b), ("after", a)] {
        let _ = write!(out, "- {name}: `{}`", side.spec);
        if side.files.join(",") != side.spec {
            let _ = write!(out, " ({})", side.files.join(", "));
        }
        out.push('\n');
    }
    match &report.memory_counting {
        Some(how) => {
            let _ = writeln!(
                out,
                "- live: {} / {} sample(s) of one second; memory is {how}",
                opt(Unit::Count, b.samples.map(|n| n as f64)),
                opt(Unit::Count, a.samples.map(|n| n as f64)),
            );
        }
        None => {
            let _ = writeln!(
                out,
                "- static: from the merged compose models (add `--live` to measure)"
            );
        }
    }
    out.push('\n');
    totals(&mut out, report);
    repositories(&mut out, report);
    services(&mut out, report);
    not_measured(&mut out, report);
    findings(&mut out, report);
    claims(&mut out, report);
    budgets(&mut out, report);
    out
}

fn table(out: &mut String, head: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", head.join(" | "));
    let align: Vec<&str> = head
        .iter()
        .enumerate()
        .map(|(i, _)| if i == 0 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(out, "| {} |", align.join(" | "));
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out.push('\n');
}

fn totals(out: &mut String, report: &Report) {
    let rows: Vec<Vec<String>> = model::metrics(&report.before, &report.after)
        .into_iter()
        .filter(|m| !m.live || report.live)
        .map(|m| {
            let mut row = vec![
                m.label.to_string(),
                opt(m.unit, m.before),
                opt(m.unit, m.after),
                signed(m.unit, m.delta()),
                percent(m.percent()),
            ];
            if m.key == "memory" && report.live {
                for (i, side) in [&report.before, &report.after].iter().enumerate() {
                    if let Some(sd) = side.memory_stddev_bytes {
                        row[i + 1].push_str(&format!(" (±{})", units::bytes(sd)));
                    }
                }
            }
            row
        })
        .collect();
    let _ = writeln!(out, "## Totals\n");
    table(out, &["metric", "before", "after", "delta", "%"], &rows);
}

fn repositories(out: &mut String, report: &Report) {
    let rows: Vec<Vec<String>> = model::repositories(&report.before, &report.after)
        .into_iter()
        .map(|(repo, b, a, duplicated)| {
            let mark = if duplicated { " ⚠ duplicated" } else { "" };
            let pct = (b > 0).then(|| (a as f64 - b as f64) / b as f64 * 100.0);
            vec![
                format!("`{repo}`{mark}"),
                b.to_string(),
                a.to_string(),
                signed(Unit::Count, Some(a as f64 - b as f64)),
                percent(pct),
            ]
        })
        .collect();
    let _ = writeln!(out, "## Instances per image repository\n");
    table(out, &["repository", "before", "after", "delta", "%"], &rows);
}

fn services(out: &mut String, report: &Report) {
    let live = report.live;
    let rows: Vec<Vec<String>> = report
        .delta
        .services
        .iter()
        .map(|d| {
            let find =
                |side: &model::Side| side.services.iter().find(|s| s.name == d.name).cloned();
            let (b, a) = (find(&report.before), find(&report.after));
            let mem = |r: &Option<model::ServiceRow>| match r {
                None => "—".to_string(),
                Some(r) if live => match r.memory_bytes {
                    Some(m) => value(Unit::Bytes, m),
                    None => "not measured".into(),
                },
                Some(r) => opt(
                    Unit::Bytes,
                    r.memory_limit_bytes.map(|x| x as f64 * r.containers as f64),
                ),
            };
            let cpu = |r: &Option<model::ServiceRow>| match r {
                None => "—".to_string(),
                Some(r) if live => r
                    .cpu_percent
                    .map_or("not measured".into(), |c| value(Unit::Percent, c)),
                Some(r) => opt(Unit::Cpus, r.cpu_limit.map(|x| x * r.containers as f64)),
            };
            let mut row = vec![
                format!("`{}`", d.name),
                d.containers_before.to_string(),
                d.containers_after.to_string(),
                mem(&b),
                mem(&a),
                cpu(&b),
                cpu(&a),
            ];
            if live {
                let t = |r: &Option<model::ServiceRow>| {
                    opt(Unit::Seconds, r.as_ref().and_then(|r| r.time_to_healthy_s))
                };
                row.push(t(&b));
                row.push(t(&a));
            }
            row
        })
        .collect();
    let _ = writeln!(out, "## Services\n");
    if live {
        let _ = writeln!(
            out,
            "Memory and CPU are the means over the samples, all replicas of a service together.\n"
        );
        table(
            out,
            &[
                "service",
                "containers before",
                "after",
                "memory before",
                "after",
                "CPU before",
                "after",
                "healthy after (s) before",
                "after",
            ],
            &rows,
        );
    } else {
        let _ = writeln!(
            out,
            "Memory and CPU are the declared limits, replicas counted (— = no limit).\n"
        );
        table(
            out,
            &[
                "service",
                "containers before",
                "after",
                "memory limit before",
                "after",
                "CPU limit before",
                "after",
            ],
            &rows,
        );
    }
}

fn not_measured(out: &mut String, report: &Report) {
    if !report.live {
        return;
    }
    let mut lines = Vec::new();
    for (name, side) in [("before", &report.before), ("after", &report.after)] {
        for n in &side.not_measured {
            lines.push(format!("- {name}: `{}`: {}", n.service, n.reason));
        }
    }
    if lines.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "## Not measured (left out of the measured totals)\n\n{}\n",
        lines.join("\n")
    );
}

fn findings(out: &mut String, report: &Report) {
    let (b, a) = (&report.before.findings, &report.after.findings);
    let mut rules: Vec<&String> = b.by_rule.keys().chain(a.by_rule.keys()).collect();
    rules.sort();
    rules.dedup();
    let rows: Vec<Vec<String>> = rules
        .into_iter()
        .map(|rule| {
            let x = *b.by_rule.get(rule).unwrap_or(&0) as f64;
            let y = *a.by_rule.get(rule).unwrap_or(&0) as f64;
            let pct = (x > 0.0).then(|| (y - x) / x * 100.0);
            vec![
                format!("`{rule}`"),
                value(Unit::Count, x),
                value(Unit::Count, y),
                signed(Unit::Count, Some(y - x)),
                percent(pct),
            ]
        })
        .collect();
    let _ = writeln!(out, "## `cargo xtask check` findings per rule\n");
    if rows.is_empty() {
        let _ = writeln!(out, "No findings on either side.\n");
        return;
    }
    table(out, &["rule", "before", "after", "delta", "%"], &rows);
    let list = |v: &[String]| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let _ = writeln!(
        out,
        "Fixed (gone after): {}. Introduced (new after): {}.\n",
        list(&report.delta.findings_fixed),
        list(&report.delta.findings_introduced)
    );
}

fn claims(out: &mut String, report: &Report) {
    if report.claims.is_empty() {
        return;
    }
    let mb = |b: f64| format!("{:.1} MB", b / 1e6);
    let rows: Vec<Vec<String>> = report
        .claims
        .iter()
        .map(|c| {
            vec![
                c.claim.clone(),
                format!("{:.0} MB", c.claimed_bytes / 1e6),
                c.measured_bytes.map_or("—".into(), mb),
                c.verdict.clone(),
                c.basis.clone(),
            ]
        })
        .collect();
    let _ = writeln!(out, "## The design's claims, checked\n");
    table(
        out,
        &["claim", "claimed", "measured", "verdict", "basis"],
        &rows,
    );
}

fn budgets(out: &mut String, report: &Report) {
    if report.budgets.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = report
        .budgets
        .iter()
        .map(|b| {
            let result = if b.exceeded { "**exceeded**" } else { "ok" };
            vec![
                format!("`{}`", b.budget),
                b.detail.clone(),
                result.to_string(),
            ]
        })
        .collect();
    let _ = writeln!(out, "## Budgets\n");
    table(out, &["budget", "figure", "result"], &rows);
}
