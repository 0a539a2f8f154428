//! The plan as text or JSON: services mapped and left behind, each volume
//! with its size and how it moves, the Postgres credentials used (never the
//! password itself), port conflicts, refusals, and the static before/after
//! report of the two layouts in the report's own markdown.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::json;

use super::{check::Findings, plan::How, Context};
use crate::comparison::{markdown, model::Report};

/// `1.5 MiB`.
pub fn size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

pub fn plan(ctx: &Context, findings: &Findings, report: &Report) -> String {
    let mut out = String::new();
    let p = &ctx.plan;
    let _ = writeln!(
        out,
        "Adopt plan: project {} ({}) -> environment {} (project {})\n",
        ctx.old_project, ctx.old.label, ctx.environment, ctx.project.name
    );
    let _ = writeln!(out, "Services:");
    for (old, new) in &p.services {
        let _ = writeln!(out, "  {old} -> {new}");
    }
    for (old, volumes) in &p.left_behind {
        let vols = if volumes.is_empty() {
            "no volumes".to_string()
        } else {
            format!("volumes {}", volumes.join(", "))
        };
        let _ = writeln!(out, "  {old}: left behind (no counterpart), {vols}");
    }
    let _ = writeln!(out, "\nVolumes:");
    for v in &p.volumes {
        let figures = ctx
            .figures
            .get(&v.old_name)
            .map(|f| format!("{}, {} entries", size(f.bytes), f.entries))
            .unwrap_or_else(|| "missing".into());
        let how = match (&v.how, &p.postgres) {
            (How::DumpRestore, Some(pg)) => format!(
                "pg_dump as {} on {} (password {} the old model) -> pg_restore --no-owner --no-privileges --role={} into database {}",
                pg.user,
                pg.database,
                if pg.password.is_some() { "from" } else { "not set in" },
                ctx.new_user,
                ctx.new_database
            ),
            _ => "verified copy (entries and bytes)".into(),
        };
        let _ = writeln!(
            out,
            "  {} ({}: {}, {figures}) -> {} ({}): {how}",
            v.old_name, v.old_service, v.target, v.new_name, v.new_service
        );
    }
    if let Some((old, new)) = findings.versions {
        let _ = writeln!(out, "\nPostgreSQL: old {old}, new {new}");
    }
    let _ = writeln!(out, "\nPort conflicts:");
    if findings.ports.is_empty() {
        let _ = writeln!(out, "  none");
    }
    for line in &findings.ports {
        let _ = writeln!(out, "  {line}");
    }
    for name in &findings.replace {
        let _ = writeln!(
            out,
            "\n--replace: {name} holds data; it is backed up into the set and replaced"
        );
    }
    if !findings.refusals.is_empty() {
        let _ = writeln!(out, "\nRefused:");
        for r in &findings.refusals {
            let _ = writeln!(out, "  {r}");
        }
    }
    out.push_str(&steps(ctx, findings));
    let _ = writeln!(out, "\nBefore/after (static):\n");
    out.push_str(&markdown::render(report));
    out
}

/// The move's commands, in order, as adopt will run them.
fn steps(ctx: &Context, findings: &Findings) -> String {
    let mut out = String::new();
    let p = &ctx.plan;
    let pg = findings.old_postgres.as_deref();
    let others: Vec<&str> = ctx
        .old_containers
        .iter()
        .filter(|c| c.is_running() && Some(c.id.as_str()) != pg)
        .map(|c| c.name.as_str())
        .collect();
    let set = ctx
        .dir
        .join(format!("adopt-{}-<time>", ctx.old_project))
        .display()
        .to_string();
    let helper = &ctx.helper;
    let _ = writeln!(
        out,
        "\nThe move (each step journalled first in {}):",
        super::journal::Journal::path(&ctx.dir, &ctx.old_project).display()
    );
    if !others.is_empty() {
        let _ = writeln!(out, "  docker stop {}", others.join(" "));
    }
    if let (Some(old), Some(id)) = (&p.postgres, pg) {
        let _ = writeln!(
            out,
            "  docker exec -e PGPASSWORD {} pg_dump -Fc -Z1 -U {} -d {} > {set}/postgres.dump",
            short(id),
            old.user,
            old.database
        );
    }
    for v in p.volumes.iter().filter(|v| v.how == How::Copy) {
        let _ = writeln!(
            out,
            "  docker run --rm --network none --user 0 --entrypoint tar -v {}:/from:ro {helper} -C /from -cf - . > {set}/{}.tar",
            v.old_name, v.old_name
        );
    }
    let _ = writeln!(
        out,
        "  (every member read back against its sha256; manifest.json)"
    );
    if let Some(id) = pg {
        let _ = writeln!(out, "  docker stop {}", short(id));
    }
    let _ = writeln!(
        out,
        "  networks and missing volumes of {} created (labelled for project {})",
        ctx.environment, ctx.project.name
    );
    if p.postgres.is_some() {
        let _ = writeln!(out, "  compose up -d --renew-anon-volumes postgres");
        let _ = writeln!(
            out,
            "  docker exec NEW_POSTGRES pg_restore --no-owner --no-privileges --role={0} -U {0} -d {1} --exit-on-error --single-transaction /tmp/adopt.dump",
            ctx.new_user, ctx.new_database
        );
    }
    for v in p.volumes.iter().filter(|v| v.how == How::Copy) {
        let _ = writeln!(
            out,
            "  docker run --rm --network none --user 0 --entrypoint cp -v {}:/from:ro -v {}:/to {helper} -a /from/. /to/",
            v.old_name, v.new_name
        );
    }
    let _ = writeln!(
        out,
        "  cargo xtask up --env {} (wait until healthy), then row counts against the manifest",
        ctx.environment
    );
    out
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

pub fn plan_json(ctx: &Context, findings: &Findings, report: &Report) -> Result<String> {
    Ok(serde_json::to_string(&json!({
        "old_project": ctx.old_project,
        "environment": ctx.environment.to_string(),
        "project": ctx.project.name,
        "plan": ctx.plan,
        "figures": ctx.figures,
        "findings": findings,
        "report": report,
    }))?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_are_binary() {
        assert_eq!(super::size(512), "512 B");
        assert_eq!(super::size(1536), "1.5 KiB");
        assert_eq!(super::size(1 << 30), "1.0 GiB");
    }
}
