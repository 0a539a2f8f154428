//! The verified backup set adopt takes of the old stack before it stops it:
//! `adopt-<project>-<unix seconds>/` holding `postgres.dump` (`pg_dump -Fc -Z1`
//! streamed out of the old container with the old model's credentials),
//! one `<volume>.tar` per copied volume (tar by a helper container that
//! mounts the volume read-only, no network) and `manifest.json` with each
//! file's sha256 and size, the per-table row counts and each volume's entry
//! count and bytes. The set is written under a `.partial-` name and renamed
//! only after every file was re-read and matched its sha256 and each tar
//! listed as many entries as its volume holds, so a crash never leaves
//! anything that looks complete.

use std::{
    collections::BTreeMap,
    fs,
    io::Read,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xshell::{cmd, Shell};

use super::inspect::Figures;
use crate::process::Runner;
use crate::process::{Cmd, Io};

/// One file of the set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub file: String,
    pub sha256: String,
    pub bytes: u64,
}

/// The database part of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DumpEntry {
    #[serde(flatten)]
    pub member: Member,
    pub user: String,
    pub database: String,
    /// `schema.table` -> rows at the time of the dump.
    pub rows: BTreeMap<String, u64>,
}

/// A volume's part of the manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VolumeEntry {
    #[serde(flatten)]
    pub member: Member,
    pub volume: String,
    pub figures: Figures,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Manifest {
    pub project: String,
    pub postgres: Option<DumpEntry>,
    pub volumes: Vec<VolumeEntry>,
}

/// A set being written (`.partial-` directory) or finished.
pub struct Set {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Set {
    /// Start a set for `project` below `parent`.
    pub fn begin(parent: &Path, project: &str) -> Result<Set> {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let dir = parent.join(format!(".partial-adopt-{project}-{secs}"));
        fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Set {
            dir,
            manifest: Manifest {
                project: project.to_string(),
                ..Manifest::default()
            },
        })
    }

    /// Stream `pg_dump -Fc` out of container `id` and count each table's rows.
    pub fn dump(
        &mut self,
        sh: &Shell,
        runner: &Runner,
        id: &str,
        user: &str,
        database: &str,
        password: Option<&str>,
    ) -> Result<()> {
        let mut cmd = Cmd::new("docker");
        cmd.args([
            "exec",
            "-e",
            "PGPASSWORD",
            id,
            "pg_dump",
            "-Fc",
            // Fast compression: the set is a same-host safety copy taken
            // while the old services are down.
            "-Z1",
            "-U",
            user,
            "-d",
            database,
        ])
        .env("PGPASSWORD", password.unwrap_or_default());
        let member = self.stream("postgres.dump", cmd, runner)?;
        let rows = row_counts(sh, runner, id, user, database, password)?;
        self.manifest.postgres = Some(DumpEntry {
            member,
            user: user.to_string(),
            database: database.to_string(),
            rows,
        });
        Ok(())
    }

    /// Tar volume `name` (read-only, by `helper`) into the set.
    pub fn volume(
        &mut self,
        runner: &Runner,
        helper: &str,
        name: &str,
        figures: Figures,
    ) -> Result<()> {
        let mut cmd = Cmd::new("docker");
        cmd.args([
            "run",
            "--rm",
            "--network",
            "none",
            "--user",
            "0",
            "--entrypoint",
            "tar",
            "-v",
        ])
        .arg(format!("{name}:/from:ro"))
        .args([helper, "-C", "/from", "-cf", "-", "."]);
        let member = self.stream(&format!("{name}.tar"), cmd, runner)?;
        self.manifest.volumes.push(VolumeEntry {
            member,
            volume: name.to_string(),
            figures,
        });
        Ok(())
    }

    fn stream(&self, file: &str, cmd: Cmd, runner: &Runner) -> Result<Member> {
        let path = self.dir.join(file);
        let (bytes, sha256) = stream_to_file(runner, cmd, &path)?;
        Ok(Member {
            file: file.to_string(),
            sha256,
            bytes,
        })
    }

    /// Re-read every member, check its sha256 and each tar's entry count,
    /// write the manifest and give the set its final name.
    pub fn finish(mut self, sh: &Shell, runner: &Runner) -> Result<Set> {
        let mut members: Vec<&Member> = self.manifest.volumes.iter().map(|v| &v.member).collect();
        members.extend(self.manifest.postgres.as_ref().map(|p| &p.member));
        for m in members {
            let path = self.dir.join(&m.file);
            let (bytes, sha256) = hash_file(&path)?;
            if bytes != m.bytes || sha256 != m.sha256 {
                bail!(
                    "backup set member {} does not read back as written",
                    path.display()
                );
            }
        }
        for v in &self.manifest.volumes {
            let path = self.dir.join(&v.member.file);
            let listed = runner.read(cmd!(sh, "tar -tf {path}"))?.lines().count() as u64;
            if listed != v.figures.entries {
                bail!(
                    "{}: the archive lists {listed} entries, the volume holds {}",
                    path.display(),
                    v.figures.entries
                );
            }
        }
        let json = serde_json::to_vec_pretty(&self.manifest)?;
        crate::atomic::write(&self.dir.join("manifest.json"), &json, 0o600)?;
        let name = self
            .dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(".partial-"))
            .context("a set in progress has a .partial- name")?
            .to_string();
        let done = self.dir.with_file_name(name);
        fs::rename(&self.dir, &done).with_context(|| {
            format!("cannot rename {} to {}", self.dir.display(), done.display())
        })?;
        self.dir = done;
        Ok(self)
    }
}

/// Exact row counts of every user table, `schema.table` -> rows.
pub fn row_counts(
    sh: &Shell,
    runner: &Runner,
    id: &str,
    user: &str,
    database: &str,
    password: Option<&str>,
) -> Result<BTreeMap<String, u64>> {
    let tables_sql = "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1";
    let psql = |sql: &str| -> Result<String> {
        runner
            .read(
                cmd!(sh, "docker exec -e PGPASSWORD {id} psql -X -At -v ON_ERROR_STOP=1 -U {user} -d {database} -c {sql}")
                    .env("PGPASSWORD", password.unwrap_or_default()),
            )
            .with_context(|| format!("counting rows in database {database}"))
    };
    let tables: Vec<String> = psql(tables_sql)?
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let mut rows = BTreeMap::new();
    for chunk in tables.chunks(200) {
        let sql = chunk
            .iter()
            .map(|t| format!("SELECT {}, count(*) FROM {t}", quote_literal(t)))
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        for line in psql(&sql)?.lines() {
            let (table, count) = line.rsplit_once('|').context("table|count")?;
            rows.insert(table.to_string(), count.parse()?);
        }
    }
    Ok(rows)
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// sha256 and size of a file.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// Run `cmd` (never under `--dry-run`: adopt stops after its plan) and write
/// its stdout to `path` through a temp file, fsynced and renamed, showing the
/// bytes as they pass ([`crate::progress`]); returns bytes and sha256. A
/// failure names the command and quotes its stderr.
fn stream_to_file(runner: &Runner, mut cmd: Cmd, path: &Path) -> Result<(u64, String)> {
    let line = cmd.line();
    if runner.dry_run {
        println!("{line} > {}", path.display());
        return Ok((0, String::new()));
    }
    let tmp = path.with_extension("tmp");
    let mut out =
        fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let mut child = runner.spawn(cmd.stdin(Io::Null).stdout(Io::Piped).stderr(Io::Piped))?;
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(1 << 20).read_to_end(&mut text);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut from = child.stdout.take().expect("piped");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut progress = crate::progress::Bytes::stderr(&format!("adopt: {name}"), None);
    let copied = (|| -> Result<()> {
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("reading the stream"),
            };
            hasher.update(&buf[..n]);
            std::io::Write::write_all(&mut out, &buf[..n]).context("writing the stream")?;
            total += n as u64;
            progress.add(n as u64);
        }
    })();
    progress.finish();
    let status = child.wait().context("waiting for docker")?;
    let err = errors.join().unwrap_or_default();
    let result = (|| -> Result<()> {
        copied?;
        if !status.success() {
            bail!("`{line}` failed ({status}): {}", err.trim());
        }
        out.sync_all()?;
        fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    Ok((total, hex::encode(hasher.finalize())))
}
