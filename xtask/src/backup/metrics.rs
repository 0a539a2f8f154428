//! Backups you can watch: after each successful backup and restore drill,
//! node-exporter textfile metrics in `compose/backup-metrics/` (the folder the
//! monitoring overlay mounts into node-exporter; or `$FOG_BACKUP_METRICS_DIR`,
//! which the overlay reads too), one `fog_backup_<project>_<kind>[_<target>].prom`
//! per project, kind and target, written atomically (temp file, fsync,
//! rename) so the textfile collector never reads half a file:
//! `fog_backup_last_success_timestamp_seconds`, `fog_backup_last_size_bytes`
//! and `fog_backup_last_duration_seconds`, labelled `project`, `kind`
//! (`postgres`, `volume`, `all`, `base`, `drill`) and `target` (database or volume).
//! The monitoring overlay mounts the folder into node-exporter, and the
//! `FogBackupTooOld` alert fires when the newest one is too old.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::archive;

/// One successful run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run<'a> {
    pub project: &'a str,
    pub kind: &'a str,
    pub target: &'a str,
    /// Unix seconds at success.
    pub at: f64,
    pub size: u64,
    pub seconds: f64,
}

/// The metrics folder: `$FOG_BACKUP_METRICS_DIR`, else `compose/backup-metrics`
/// (one folder for every backup folder: node-exporter sees them all).
pub fn dir() -> PathBuf {
    match std::env::var_os("FOG_BACKUP_METRICS_DIR").filter(|v| !v.is_empty()) {
        Some(d) => crate::absolute(Path::new(&d)),
        None => crate::project_root().join("compose").join("backup-metrics"),
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn file_part(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The textfile for `run` (exposition format 0.0.4).
pub fn render(run: &Run) -> String {
    let labels = format!(
        "project=\"{}\",kind=\"{}\",target=\"{}\"",
        escape(run.project),
        escape(run.kind),
        escape(run.target)
    );
    let mut out = String::new();
    for (name, help, value) in [
        (
            "fog_backup_last_success_timestamp_seconds",
            "Unix time of the last successful backup or restore drill.",
            format!("{:.3}", run.at),
        ),
        (
            "fog_backup_last_size_bytes",
            "Size of the last successful backup in bytes.",
            run.size.to_string(),
        ),
        (
            "fog_backup_last_duration_seconds",
            "Wall time of the last successful backup or restore drill.",
            format!("{:.3}", run.seconds),
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{{labels}}} {value}\n"
        ));
    }
    out
}

/// The file name for `run`.
pub fn file_name(run: &Run) -> String {
    let mut name = format!(
        "fog_backup_{}_{}",
        file_part(run.project),
        file_part(run.kind)
    );
    if !run.target.is_empty() {
        name.push('_');
        name.push_str(&file_part(run.target));
    }
    name.push_str(".prom");
    name
}

/// Write `run`'s textfile into `dir` atomically; its path.
pub fn write(dir: &Path, run: &Run) -> Result<PathBuf> {
    if !dir.is_dir() {
        archive::create_dir(dir)?;
        // node-exporter runs as another user: this folder (not the backups) is readable.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    let path = dir.join(file_name(run));
    archive::write_atomic(&path, render(run).as_bytes())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    Ok(path)
}

/// Write a rendered textfile `name` into the metrics folder (atomically);
/// a failure only warns.
pub fn write_text(name: &str, text: &str) {
    let dir = dir();
    let result = (|| -> Result<()> {
        if !dir.is_dir() {
            archive::create_dir(&dir)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        }
        let path = dir.join(name);
        archive::write_atomic(&path, text.as_bytes())?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!(
            "warning: the metrics {name} could not be written to {}: {e:#}",
            dir.display()
        );
    }
}

/// Now in Unix seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Record `run`; a failure to write metrics only warns (the backup itself
/// succeeded).
pub fn record(run: &Run) {
    let dir = dir();
    if let Err(e) = write(&dir, run) {
        eprintln!(
            "warning: the backup succeeded but its metrics could not be written to {}: {e:#}",
            dir.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textfile_renders_and_writes_atomically() {
        let run = Run {
            project: "fog",
            kind: "volume",
            target: "grafana_data",
            at: 1_764_000_000.5,
            size: 1234,
            seconds: 2.25,
        };
        let text = render(&run);
        assert!(text.contains(
            "fog_backup_last_success_timestamp_seconds{project=\"fog\",kind=\"volume\",target=\"grafana_data\"} 1764000000.500\n"
        ));
        assert!(text.contains("# TYPE fog_backup_last_size_bytes gauge\n"));
        assert!(text.contains("} 1234\n"));
        assert!(text.contains("fog_backup_last_duration_seconds{"));
        assert_eq!(file_name(&run), "fog_backup_fog_volume_grafana_data.prom");
        let odd = Run {
            project: "a\"b",
            target: "",
            ..run.clone()
        };
        assert!(render(&odd).contains("project=\"a\\\"b\""));
        assert_eq!(file_name(&odd), "fog_backup_a_b_volume.prom");

        let dir = std::env::temp_dir().join(format!("fog-metrics-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = write(&dir, &run).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        // Nothing but the finished file: no temporary left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
