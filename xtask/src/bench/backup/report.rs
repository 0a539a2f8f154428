//! The rows of `bench backup`: one per measured method, with its runs
//! seconds, data and archive sizes; the table, the JSON and the goals.

use super::*;

/// One measured method.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) id: &'static str,
    pub(super) group: &'static str,
    pub(super) method: String,
    pub(super) seconds: Vec<f64>,
    /// Only the stream and hashing, as the command itself reports it.
    pub(super) stream_seconds: Vec<f64>,
    pub(super) data_bytes: u64,
    pub(super) archive_bytes: u64,
    pub(super) note: Option<String>,
}

impl Row {
    pub(super) fn new(id: &'static str, group: &'static str, method: &str) -> Row {
        Row {
            id,
            group,
            method: method.to_string(),
            seconds: Vec::new(),
            stream_seconds: Vec::new(),
            data_bytes: 0,
            archive_bytes: 0,
            note: None,
        }
    }

    pub(super) fn median(&self) -> f64 {
        median(&self.seconds)
    }

    pub(super) fn mb_per_s(&self) -> f64 {
        self.data_bytes as f64 / MB / self.median().max(1e-6)
    }
}

/// Every row, in table order.
pub(super) struct Rows {
    pub(super) runs: usize,
    pub(super) pg_backup: Row,
    pub(super) pg_encrypted: Row,
    pub(super) pg_upload: Row,
    pub(super) pg_dump_exec: Row,
    pub(super) pg_dump_inside: Row,
    pub(super) pg_tar: Row,
    pub(super) pg_restore: Row,
    pub(super) pg_restore_inside: Row,
    pub(super) pg_untar: Row,
    pub(super) vol_backup: Row,
    pub(super) vol_tar: Row,
    pub(super) vol_restore: Row,
    pub(super) vol_stream: Row,
    pub(super) vol_untar: Row,
}

impl Rows {
    pub(super) fn new(runs: usize) -> Rows {
        const PB: &str = "postgres backup";
        const PR: &str = "postgres restore";
        const VB: &str = "volume backup";
        const VR: &str = "volume restore";
        Rows {
            runs,
            pg_backup: Row::new("backup_postgres", PB, "cargo xtask backup postgres"),
            pg_encrypted: Row::new(
                "backup_postgres_encrypted",
                PB,
                "cargo xtask backup postgres --encrypt-to age1... (age in the stream)",
            ),
            pg_upload: Row::new(
                "upload_postgres_s3",
                PB,
                "upload to a local SeaweedFS + read-back sha256 (MB/s over the archive)",
            ),
            pg_dump_exec: Row::new(
                "pg_dump_exec_devnull",
                PB,
                "docker exec pg_dump -Fc > /dev/null (the engine's stream alone)",
            ),
            pg_dump_inside: Row::new(
                "pg_dump_in_container",
                PB,
                "pg_dump -Fc -f FILE inside the container",
            ),
            pg_tar: Row::new(
                "tar_czf_pgdata",
                PB,
                "docker run ... tar czf of the live PGDATA (old design)",
            ),
            pg_restore: Row::new("restore_postgres", PR, "cargo xtask restore --yes"),
            pg_restore_inside: Row::new(
                "pg_restore_in_container",
                PR,
                "createdb + pg_restore FILE inside the container",
            ),
            pg_untar: Row::new(
                "tar_xzf_pgdata",
                PR,
                "docker run ... tar xzf PGDATA into a fresh volume (old design)",
            ),
            vol_backup: Row::new("backup_volume", VB, "cargo xtask backup volume"),
            vol_tar: Row::new(
                "tar_czf_volume",
                VB,
                "docker run ... tar czf of the volume (old design)",
            ),
            vol_restore: Row::new("restore_volume", VR, "cargo xtask restore --yes"),
            vol_stream: Row::new(
                "untar_volume_streamed",
                VR,
                "docker run -i ... tar -xzpf - < backup into a fresh volume (README, by hand)",
            ),
            vol_untar: Row::new(
                "tar_xzf_volume",
                VR,
                "docker run ... tar xzf into a fresh volume (old design)",
            ),
        }
    }

    pub(super) fn all(&self) -> [&Row; 14] {
        [
            &self.pg_backup,
            &self.pg_encrypted,
            &self.pg_upload,
            &self.pg_dump_exec,
            &self.pg_dump_inside,
            &self.pg_tar,
            &self.pg_restore,
            &self.pg_restore_inside,
            &self.pg_untar,
            &self.vol_backup,
            &self.vol_tar,
            &self.vol_restore,
            &self.vol_stream,
            &self.vol_untar,
        ]
    }

    /// (name, value, goal, met) of the goals.
    pub(super) fn goals(&self) -> Vec<(&'static str, f64, &'static str, bool)> {
        let pg = self.pg_backup.mb_per_s() / self.pg_tar.mb_per_s().max(1e-9);
        let vol = self.vol_backup.mb_per_s() / self.vol_tar.mb_per_s().max(1e-9);
        let stream =
            median(&self.pg_backup.stream_seconds) / self.pg_dump_inside.median().max(1e-9);
        let wall = self.pg_backup.median() / self.pg_dump_inside.median().max(1e-9);
        let engine = self.pg_dump_exec.median() / self.pg_dump_inside.median().max(1e-9);
        vec![
            (
                "backup postgres / tar czf of PGDATA, MB/s",
                pg,
                ">= 1.5x",
                pg >= 1.5,
            ),
            (
                "backup volume / tar czf of the volume, MB/s",
                vol,
                ">= 1.5x",
                vol >= 1.5,
            ),
            (
                "backup postgres stream+hash / in-container pg_dump, seconds",
                stream,
                "<= 1.10x",
                stream <= 1.10,
            ),
            (
                "backup postgres whole command / in-container pg_dump, seconds",
                wall,
                "(for reference)",
                true,
            ),
            (
                "docker exec pg_dump > /dev/null / in-container pg_dump, seconds",
                engine,
                "(for reference: the engine's part)",
                true,
            ),
        ]
    }

    pub(super) fn json(&self, data: &Data, size_mb: u64) -> Value {
        json!({
            "benchmark": "backup",
            "size_mb": size_mb,
            "runs": self.runs,
            "data": {
                "postgres_rows": data.rows,
                "postgres_table_bytes": data.table_bytes,
                "postgres_database_bytes": data.database_bytes,
                "pgdata_bytes": data.pgdata_bytes,
                "volume_bytes": data.volume_bytes,
                "volume_files": data.volume_files,
            },
            "rows": self.all().iter().map(|r| {
                let mut v = json!({
                    "id": r.id, "group": r.group, "method": r.method,
                    "seconds": r.median(), "runs_s": r.seconds,
                    "data_bytes": r.data_bytes, "mb_per_s": r.mb_per_s(),
                    "archive_bytes": r.archive_bytes,
                });
                if !r.stream_seconds.is_empty() {
                    v["stream_seconds"] = json!(median(&r.stream_seconds));
                }
                if let Some(note) = &r.note {
                    v["note"] = json!(note);
                }
                v
            }).collect::<Vec<_>>(),
            "goals": self.goals().iter().map(|(name, value, goal, met)| json!({
                "goal": name, "ratio": value, "target": goal, "met": met,
            })).collect::<Vec<_>>(),
        })
    }

    pub(super) fn table(&self, data: &Data) -> String {
        let mut out = format!(
            "Postgres: {} rows, database {:.0} MB (table+index {:.0} MB, PGDATA {:.0} MB); volume: {:.0} MB in {} files. \
             Median of {} run(s); MB = 10^6 bytes, MB/s over the raw data.\n",
            data.rows,
            data.database_bytes as f64 / MB,
            data.table_bytes as f64 / MB,
            data.pgdata_bytes as f64 / MB,
            data.volume_bytes as f64 / MB,
            data.volume_files,
            self.runs
        );
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut group = "";
        for r in self.all() {
            if r.group != group {
                group = r.group;
                rows.push(vec![group.to_string()]);
            }
            let mut method = format!("  {}", r.method);
            if !r.stream_seconds.is_empty() {
                method.push_str(&format!(" (stream {:.1}s)", median(&r.stream_seconds)));
            }
            let (min, max) = r
                .seconds
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(lo, hi), s| {
                    (lo.min(*s), hi.max(*s))
                });
            let range = if r.seconds.len() > 1 {
                format!("{min:.1}-{max:.1}")
            } else {
                "-".into()
            };
            rows.push(vec![
                method,
                format!("{:.1}", r.median()),
                range,
                format!("{:.1}", r.mb_per_s()),
                format!("{:.1}", r.archive_bytes as f64 / MB),
            ]);
            if let Some(note) = &r.note {
                rows.push(vec![format!("    note: {note}")]);
            }
        }
        use crate::table::Align::{Left, Right};
        out.push_str(&crate::table::render(
            &["METHOD", "SECONDS", "RANGE s", "MB/s", "ARCHIVE MB"],
            &[Left, Right, Right, Right, Right],
            &rows,
        ));
        for (name, value, goal, met) in self.goals() {
            let verdict = match (goal.starts_with('('), met) {
                (true, _) => format!(" {goal}"),
                (false, true) => format!(" (goal {goal}) met"),
                (false, false) => format!(" (goal {goal}) NOT met"),
            };
            out.push_str(&format!("{name}: {value:.2}x{verdict}\n"));
        }
        out
    }
}
