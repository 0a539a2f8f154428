//! `backup postgres`: `pg_dump -Fc` of the environment's database, streamed
//! out of the running container with `docker exec` (no host port, so it works
//! in prod), hashed in the same pass into
//! `backups/<project>-postgres-<UTC stamp>.dump`, with the per-table row
//! counts and server version in its manifest. The counts and the dump come
//! from one snapshot ([`Snapshot`]: a REPEATABLE READ transaction exports
//! it, counts in it and stays open while `pg_dump --snapshot` reads it), so a
//! backup of a database under writes still matches its manifest. Also the
//! row-count query that verification drills and restores compare against.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{bail, Context, Result};

use super::{archive, stream};
use crate::process::{Child, Io, PipeReader as ChildStdout, PipeWriter as ChildStdin};
use crate::{database::Database, process::Runner};

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

/// `pg_dump` arguments for the environment's database, reading `snapshot`.
fn dump_args(db: &Database, snapshot: &str) -> Vec<String> {
    let snapshot = format!("--snapshot={snapshot}");
    ["pg_dump", "-Fc", &snapshot, "-U", &db.user, "-d", &db.name]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
/// A `psql` session (through `docker exec -i`) holding a REPEATABLE READ,
/// READ ONLY transaction open: its exported snapshot is the one `pg_dump
/// --snapshot` reads, so every fact of the manifest (row counts, server
/// version) describes exactly the rows in the dump, however busy the
/// database. Dropping it ends the transaction (stdin closed, psql exits).
pub struct Snapshot {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// What `pg_export_snapshot()` returned.
    pub id: String,
}

/// The snapshot session's psql: quiet, unaligned, stopping at the first error.
fn session_args(db: &Database) -> Vec<String> {
    [
        "psql",
        "-X",
        "-q",
        "-At",
        "-v",
        "ON_ERROR_STOP=1",
        "-U",
        &db.user,
        "-d",
        &db.name,
    ]
    .map(String::from)
    .to_vec()
}

/// Marks the end of one answer in the session's output.
const DONE: &str = "--fog-snapshot-done--";

impl Snapshot {
    /// Open the transaction and export its snapshot.
    pub fn open(db: &Database, runner: &Runner) -> Result<Snapshot> {
        let mut cmd = db.exec("-i", &session_args(db));
        let mut child = runner.spawn(cmd.stdin(Io::Piped).stdout(Io::Piped).stderr(Io::Piped))?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut err = child.stderr.take().expect("piped");
        let stderr = Some(std::thread::spawn(move || {
            let mut text = String::new();
            let _ = (&mut err).take(1 << 20).read_to_string(&mut text);
            text
        }));
        let mut session = Snapshot {
            child,
            stdin,
            stdout,
            stderr,
            id: String::new(),
        };
        let id = session.query(
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT pg_export_snapshot();",
        )?;
        session.id = id.trim().to_string();
        if session.id.is_empty() || session.id.contains(char::is_whitespace) {
            bail!("pg_export_snapshot() returned `{id}`");
        }
        Ok(session)
    }

    /// Run `sql` in the transaction; its output lines.
    pub fn query(&mut self, sql: &str) -> Result<String> {
        let stdin = self
            .stdin
            .as_mut()
            .context("the snapshot session is closed")?;
        let script = format!("{sql}\n\\echo {DONE}\n");
        let sent = stdin
            .write_all(script.as_bytes())
            .and_then(|()| stdin.flush());
        let mut out = String::new();
        loop {
            let mut line = String::new();
            let n = if sent.is_ok() {
                self.stdout.read_line(&mut line).unwrap_or(0)
            } else {
                0
            };
            if n == 0 {
                return Err(self.failed());
            }
            if line.trim_end() == DONE {
                return Ok(out);
            }
            out.push_str(&line);
        }
    }

    /// psql ended early: why, in its own words.
    fn failed(&mut self) -> anyhow::Error {
        self.stdin.take();
        let status = self.child.wait();
        let said = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        anyhow::anyhow!(
            "the snapshot session (psql in the Postgres container) ended ({}): {}",
            status.map_or_else(|e| e.to_string(), |s| s.to_string()),
            said.trim()
        )
    }

    /// End the transaction (read-only: nothing to commit) and wait for psql.
    pub fn close(mut self) -> Result<()> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"COMMIT;\n\\q\n");
        }
        let status = self.child.wait().context("waiting for psql")?;
        if !status.success() {
            let said = self
                .stderr
                .take()
                .and_then(|h| h.join().ok())
                .unwrap_or_default();
            bail!("the snapshot session failed ({status}): {}", said.trim());
        }
        Ok(())
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        // Closing stdin ends psql and with it the transaction.
        self.stdin.take();
        let _ = self.child.wait();
    }
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
    let created_at = crate::clock::rfc3339_now();
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
    if runner.dry_run {
        let dump = db.exec("", &dump_args(db, "<ID>"));
        println!(
            "{} <<< 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SELECT pg_export_snapshot(); <row counts>'",
            db.exec("-i", &session_args(db)).line()
        );
        println!("{} > {}", dump.line(), path.display());
        return Ok(None);
    }
    archive::create_dir(dir)?;
    let started = Instant::now();
    let mut snapshot = Snapshot::open(db, runner)?;
    let server_version = snapshot.query("SHOW server_version;")?.trim().to_string();
    // Counted in the snapshot the dump reads: equal to the dump's rows.
    let tables = parse_counts(&snapshot.query(&format!("{COUNT_SQL};"))?)?;
    let dump = db.exec("", &dump_args(db, &snapshot.id));
    let mut out = archive::Atomic::create(&path).map_err(|e| archive::no_space(e, dir))?;
    let bar = stream::bar(progress, None, &format!("pg_dump {}", db.name));
    // Through age when --encrypt-to is given: size and sha256 are of the file's bytes.
    let mut sink = super::encrypt::Sink::new(out.file())?;
    let result = stream::from_child(runner, dump, &mut sink, &bar);
    bar.finish_and_clear();
    result.map_err(|e| archive::no_space(e, dir))?;
    let (size, sha256) = sink.finish().map_err(|e| archive::no_space(e, dir))?;
    snapshot.close()?;
    if size == 0 {
        bail!("pg_dump of {} wrote nothing", db.name);
    }
    let manifest = archive::Manifest {
        kind: "postgres".into(),
        format: super::encrypt::archive_name("pg_dump -Fc".into()).replace(".age", " | age"),
        file: file.clone(),
        project: db.namespace.clone(),
        environment: db.environment.to_string(),
        service: crate::database::SERVICE.into(),
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
    archive::commit_backup(out, &manifest, &path).map_err(|e| archive::no_space(e, dir))?;
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
