//! The PITR bench's table: each figure beside the command that reproduces
//! it and the load average.

use super::*;

impl Cmd {
    pub(super) fn table(&self, f: &Figures) -> String {
        let bench = format!(
            "cargo xtask bench pitr --size-mb {} --runs {} --pgbench-seconds {} --rpo-seconds {}",
            self.size_mb, self.runs, self.pgbench_seconds, self.rpo_seconds
        );
        let list = |v: &[f64]| {
            v.iter()
                .map(|t| format!("{t:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!(
            "bench pitr: {} rows, database {:.0} MiB (with pgbench scale 10), archive_timeout {}; load average {} before, {} after\n\
             every figure: `{bench}`\n\n",
            f.rows, f.database_mb, f.archive_timeout, f.load_before, f.load_after
        );
        let row = |figure: &str, command: &str, value: String| {
            format!("{figure}\n  command: {command}\n  value:   {value}\n")
        };
        out += &row(
            "archiving overhead (pgbench -c 4 -j 2, alternated off/on)",
            &format!("docker exec <postgres> pgbench -c 4 -j 2 -T {} -U fog fog, POSTGRES_WAL_ARCHIVE=off then on", self.pgbench_seconds),
            format!(
                "off {} tps, on {} tps (medians {:.0} / {:.0}); {:.0} MiB archived during the runs",
                list(&f.tps_off),
                list(&f.tps_on),
                crate::bench::median(&f.tps_off),
                crate::bench::median(&f.tps_on),
                f.archived_mb_during_pgbench
            ),
        );
        out += &row(
            "base backup",
            "cargo xtask backup base",
            format!(
                "{:.1} s, {:.0} MiB archive of a {:.0} MiB database",
                f.base_seconds, f.base_mb, f.database_mb
            ),
        );
        out += &row(
            &format!("RPO: an INSERT about every 0.1 s for {} s, kill -9 of Postgres at {}", self.rpo_seconds, f.rpo_kill_at),
            "docker kill -s KILL <postgres>; base backup + archive in a throwaway Postgres / docker start",
            format!(
                "data volume lost (base backup + WAL archive only): {} rows, newest {:.1} s before the kill, replay and promote {:.1} s; data volume kept (crash recovery): {} rows, newest {:.2} s before the kill",
                f.rpo_archive_rows, f.rpo_archive_seconds, f.rpo_archive_replay_seconds, f.rpo_crash_rows, f.rpo_crash_seconds
            ),
        );
        out += &row(
            &format!("restore --to-time, {:.0} MiB database + {:.0} MiB of WAL ({} segments)", f.database_mb, f.wal_mb, f.wal_segments),
            "cargo xtask restore --to-time T --yes",
            format!(
                "{:.1} s: switch WAL and checks {:.1} s, extract + replay + verify {:.1} s, swap + start {:.1} s; {:.0} MiB restored",
                f.restore_seconds, f.restore_prepare_seconds, f.restore_replay_seconds, f.restore_swap_seconds, f.restored_mb
            ),
        );
        out
    }
}
