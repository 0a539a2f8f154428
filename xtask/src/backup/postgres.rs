//! `backup postgres`: `pg_dump -Fc` of the environment's database, streamed
//! out of the running container with `docker exec` (no host port, so it works
//! in prod), hashed in the same pass into
//! `backups/<project>-postgres-<UTC stamp>.dump`, with the per-table row
//! counts and server version in its manifest. Also the row-count query that
//! verification drills and restores compare against.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use super::{archive, stream};
use crate::{process::Runner, psql::Database};

/// `schema.table|rows` for every user table, in name order.
pub const COUNT_SQL: &str = "SELECT format('%s.%s', table_schema, table_name), \
    (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', table_schema, table_name), false, true, '')))[1]::text \
    FROM information_schema.tables WHERE table_type = 'BASE TABLE' \
    AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1";

/// A finished backup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Written {
    pub path: PathBuf,
    pub size: u64,
    pub sha256: String,
    pub seconds: f64,
    pub manifest: archive::Manifest,
}

/// Parse [`COUNT_SQL`] output.
pub fn parse_counts(text: &str) -> Result<BTreeMap<String, i64>> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (table, count) = line
            .rsplit_once('|')
            .with_context(|| format!("unexpected row-count line `{line}`"))?;
        let count = count
            .parse()
            .with_context(|| format!("unexpected row count in `{line}`"))?;
        out.insert(table.to_string(), count);
    }
    Ok(out)
}

/// `pg_dump` arguments for the environment's database.
fn dump_args(db: &Database) -> Vec<String> {
    ["pg_dump", "-Fc", "-U", &db.user, "-d", &db.name]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Back up the database into `dir`; `suffix` (e.g. `-pre-restore`) ends the
/// name. `None` under `--dry-run`, which prints the commands instead.
pub fn backup(
    db: &Database,
    runner: &Runner,
    dir: &Path,
    suffix: &str,
    progress: bool,
) -> Result<Option<Written>> {
    let created_at = crate::images::build::rfc3339_now();
    let ext = super::encrypt::archive_name(".dump".into());
    let mut file = format!(
        "{}-postgres-{}{suffix}{ext}",
        db.namespace,
        archive::stamp(&created_at)
    );
    let mut n = 2;
    while dir.join(&file).exists() {
        file = format!(
            "{}-postgres-{}{suffix}-{n}{ext}",
            db.namespace,
            archive::stamp(&created_at)
        );
        n += 1;
    }
    let path = dir.join(&file);
    let dump = db.exec("", &dump_args(db));
    if runner.dry_run {
        println!("{} > {}", crate::psql::render(&dump), path.display());
        return Ok(None);
    }
    archive::create_dir(dir)?;
    let server_version = db.sql(runner, &db.name, "SHOW server_version", false)?;
    // Counted just before the dump: with writers running, a drill may see more rows.
    let tables = parse_counts(&db.sql(runner, &db.name, COUNT_SQL, false)?)?;
    let started = Instant::now();
    let mut out = archive::Atomic::create(&path)?;
    let bar = stream::bar(progress, None, &format!("pg_dump {}", db.name));
    // Through age when --encrypt-to is given: size and sha256 are of the file's bytes.
    let mut sink = super::encrypt::Sink::new(out.file())?;
    let result = stream::from_child(dump, &mut sink, &bar);
    bar.finish_and_clear();
    result?;
    let (size, sha256) = sink.finish()?;
    if size == 0 {
        bail!("pg_dump of {} wrote nothing", db.name);
    }
    let manifest = archive::Manifest {
        kind: "postgres".into(),
        format: super::encrypt::archive_name("pg_dump -Fc".into()).replace(".age", " | age"),
        file: file.clone(),
        project: db.namespace.clone(),
        environment: db.environment.to_string(),
        service: crate::psql::SERVICE.into(),
        image: db.image.clone(),
        server_version,
        database: db.name.clone(),
        size,
        sha256: sha256.clone(),
        tables,
        created_at,
        entries: None,
        tool: archive::tool(),
    };
    archive::commit_backup(out, &manifest, &path)?;
    Ok(Some(Written {
        path,
        size,
        sha256,
        seconds: started.elapsed().as_secs_f64(),
        manifest,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_parse() {
        let c = parse_counts("public.items|3\npublic.a|b|0\n").unwrap();
        assert_eq!(c["public.items"], 3);
        assert_eq!(c["public.a|b"], 0);
        assert!(parse_counts("garbage").is_err());
    }
}
