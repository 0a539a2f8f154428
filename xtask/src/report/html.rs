//! The HTML report: one self-contained file, inline CSS and inline SVG, no
//! scripts, fonts or anything else fetched. Bar charts of each service's
//! memory and CPU (measured means with `--live`, declared limits otherwise),
//! before against after, of the instances per image repository and of the
//! totals (each total on its own scale), then the totals table, the services
//! that were not measured, and the whole markdown report for reference.

use std::fmt::Write as _;

use super::model::{self, Report, Unit};
use super::units::{opt, percent, signed, value};

/// Escape text for HTML and SVG.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One bar: a value, or the text shown instead (`not measured`, `no limit`, `absent`).
pub type Cell = Result<f64, String>;

/// One chart row: label, before, after, and the unit of its values.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub before: Cell,
    pub after: Cell,
    pub unit: Unit,
}

const LABEL_W: f64 = 230.0;
const BAR_W: f64 = 420.0;
const ROW_H: f64 = 40.0;

/// A horizontal grouped bar chart. `own_scale` scales each row to its own
/// maximum (totals of different units); otherwise one scale for all rows.
pub fn bar_chart(id: &str, title: &str, rows: &[Row], own_scale: bool) -> String {
    let num = |c: &Cell| c.as_ref().ok().copied();
    let all_max = rows
        .iter()
        .flat_map(|r| [num(&r.before), num(&r.after)])
        .flatten()
        .fold(0.0, f64::max);
    let height = 34.0 + ROW_H * rows.len() as f64 + 24.0;
    let width = LABEL_W + BAR_W + 130.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg id="{id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{t}"><text class="title" x="0" y="18">{t}</text>"#,
        t = escape(title)
    );
    for (i, row) in rows.iter().enumerate() {
        let y = 34.0 + ROW_H * i as f64;
        let max = if own_scale {
            num(&row.before)
                .unwrap_or(0.0)
                .max(num(&row.after).unwrap_or(0.0))
        } else {
            all_max
        };
        let label = escape(&row.label);
        let _ = write!(
            svg,
            r#"<text class="label" x="{x}" y="{ty}" text-anchor="end">{label}</text>"#,
            x = LABEL_W - 8.0,
            ty = y + 17.0,
        );
        for (j, (side, cell)) in [("before", &row.before), ("after", &row.after)]
            .into_iter()
            .enumerate()
        {
            let by = y + 2.0 + 16.0 * j as f64;
            let vy = by + 11.0;
            match cell {
                Ok(v) => {
                    let w = if max > 0.0 {
                        (v / max * BAR_W).max(1.0)
                    } else {
                        1.0
                    };
                    let text = value(row.unit, *v);
                    let _ = write!(
                        svg,
                        r#"<rect class="bar {side}" data-row="{label}" data-side="{side}" x="{LABEL_W}" y="{by}" width="{w:.1}" height="14"><title>{label} {side}: {text}</title></rect><text class="value" x="{tx:.1}" y="{vy}">{text}</text>"#,
                        tx = LABEL_W + w + 4.0,
                    );
                }
                Err(why) => {
                    let _ = write!(
                        svg,
                        r#"<text class="missing" x="{LABEL_W}" y="{vy}">{side}: {w}</text>"#,
                        w = escape(why)
                    );
                }
            }
        }
    }
    let ly = height - 8.0;
    let _ = write!(
        svg,
        r#"<rect class="before" x="{LABEL_W}" y="{ry}" width="12" height="10"/><text class="legend" x="{a}" y="{ly}">before</text><rect class="after" x="{b}" y="{ry}" width="12" height="10"/><text class="legend" x="{c}" y="{ly}">after</text></svg>"#,
        ry = ly - 9.0,
        a = LABEL_W + 16.0,
        b = LABEL_W + 80.0,
        c = LABEL_W + 96.0
    );
    svg
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px;color:#1b1f24;background:#fff}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px}\
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}\
.chart{display:block;margin:10px 0}.chart .title{font-weight:600;font-size:14px}\
.chart text{font-size:12px;fill:#1b1f24}.chart .missing{fill:#8c959f;font-style:italic}\
.before{fill:#8fa8c8}.after{fill:#e07b39}pre{background:#f6f8fa;padding:12px;overflow:auto;font-size:12px}";

/// A whole report as one HTML page.
pub fn render(report: &Report, markdown: &str) -> String {
    let (b, a) = (&report.before, &report.after);
    let names: Vec<&model::ServiceDelta> = report.delta.services.iter().collect();
    let find =
        |side: &model::Side, name: &str| side.services.iter().find(|s| s.name == name).cloned();
    let missing = if report.live {
        "not measured"
    } else {
        "no limit"
    };
    let per_service = |unit: Unit, f: &dyn Fn(&model::ServiceRow) -> Option<f64>| -> Vec<Row> {
        names
            .iter()
            .map(|d| {
                let v = |side: &model::Side| match find(side, &d.name) {
                    None => Err("absent".to_string()),
                    Some(r) => f(&r).ok_or_else(|| missing.to_string()),
                };
                Row {
                    label: d.name.clone(),
                    before: v(b),
                    after: v(a),
                    unit,
                }
            })
            .collect()
    };
    let (mem_title, cpu_title, mem, cpu) = if report.live {
        (
            "Memory per service (mean of the samples)",
            "CPU per service (mean %, 100% = one core)",
            per_service(Unit::Bytes, &|r| r.memory_bytes),
            per_service(Unit::Percent, &|r| r.cpu_percent),
        )
    } else {
        (
            "Declared memory limit per service (replicas counted)",
            "Declared CPU limit per service (replicas counted)",
            per_service(Unit::Bytes, &|r| {
                r.memory_limit_bytes.map(|m| m as f64 * r.containers as f64)
            }),
            per_service(Unit::Cpus, &|r| {
                r.cpu_limit.map(|c| c * r.containers as f64)
            }),
        )
    };
    let repos: Vec<Row> = model::repositories(b, a)
        .into_iter()
        .map(|(r, x, y, dup)| Row {
            label: if dup { format!("{r} (duplicated)") } else { r },
            before: Ok(x as f64),
            after: Ok(y as f64),
            unit: Unit::Count,
        })
        .collect();
    let metrics = model::metrics(b, a);
    let totals: Vec<Row> = metrics
        .iter()
        .filter(|m| {
            [
                "containers",
                "memory",
                "cpu",
                "memory-limit",
                "images",
                "ports",
            ]
            .contains(&m.key)
        })
        .filter(|m| !m.live || report.live)
        .map(|m| Row {
            label: m.label.to_string(),
            before: m.before.ok_or_else(|| "—".to_string()),
            after: m.after.ok_or_else(|| "—".to_string()),
            unit: m.unit,
        })
        .collect();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Resource report: {t}</title><style>{STYLE}</style></head><body>\n<h1>Resource report: {t}</h1>\n",
        t = escape(&format!("{} → {}", b.label, a.label))
    );
    let how = match &report.memory_counting {
        Some(how) => format!(
            "Live, {}/{} one-second samples; memory is {how}.",
            opt(Unit::Count, b.samples.map(|n| n as f64)),
            opt(Unit::Count, a.samples.map(|n| n as f64))
        ),
        None => "Static: from the merged compose models.".into(),
    };
    let _ = writeln!(html, "<p>{}</p>", escape(&how));
    let _ = writeln!(html, "<h2>Totals</h2>");
    html.push_str(&bar_chart(
        "totals",
        "Totals (each row on its own scale)",
        &totals,
        true,
    ));
    let _ = writeln!(html, "<h2>Services</h2>");
    html.push_str(&bar_chart("memory", mem_title, &mem, false));
    html.push_str(&bar_chart("cpu", cpu_title, &cpu, false));
    let _ = writeln!(html, "<h2>Instances per image repository</h2>");
    html.push_str(&bar_chart(
        "repositories",
        "Containers per image repository",
        &repos,
        false,
    ));
    let _ = writeln!(html, "<h2>Figures</h2><table><tr><th>metric</th><th>before</th><th>after</th><th>delta</th><th>%</th></tr>");
    for m in metrics.iter().filter(|m| !m.live || report.live) {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(m.label),
            escape(&opt(m.unit, m.before)),
            escape(&opt(m.unit, m.after)),
            escape(&signed(m.unit, m.delta())),
            escape(&percent(m.percent()))
        );
    }
    html.push_str("</table>\n");
    let missing: Vec<String> = [("before", b), ("after", a)]
        .iter()
        .flat_map(|(n, s)| {
            s.not_measured.iter().map(move |x| {
                format!(
                    "<li>{n}: <code>{}</code>: {}</li>",
                    escape(&x.service),
                    escape(&x.reason)
                )
            })
        })
        .collect();
    if !missing.is_empty() {
        let _ = writeln!(html, "<h2>Not measured</h2><ul>{}</ul>", missing.join(""));
    }
    let _ = writeln!(
        html,
        "<h2>Full report</h2><pre>{}</pre>\n</body></html>",
        escape(markdown)
    );
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_one_bar_per_value_and_marks_missing() {
        let row = |label: &str, before: Cell, after: Cell| Row {
            label: label.into(),
            before,
            after,
            unit: Unit::Count,
        };
        let rows = vec![
            row("prometheus", Ok(3.0), Ok(1.0)),
            row("grafana <x>", Err("not measured".into()), Ok(2.0)),
        ];
        let svg = bar_chart("c", "Chart", &rows, false);
        assert_eq!(svg.matches("<rect class=\"bar ").count(), 3);
        assert!(svg.contains("before: not measured"));
        assert!(svg.contains("grafana &lt;x&gt;"));
        assert!(
            svg.contains(r#"width="420.0""#),
            "largest value spans the bar width: {svg}"
        );
        assert!(!svg.contains("<script"));
    }
}
