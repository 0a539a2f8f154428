//! What every command shares: the global flags (`--dry-run`, `-v`) and the
//! repository root that paths are resolved against. Nothing here depends on
//! any command module, so every module can import it without a cycle.

use clap::Args;

/// Flags every subcommand accepts.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// Print the exact commands a mutating step would run, and run none of them.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Print each external command as it runs.
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

/// The repository root: `FOG_ROOT` when set (run this build of the tool
/// against another checkout, e.g. a fresh clone to release from), else the
/// parent of this crate's manifest directory.
pub fn project_root() -> std::path::PathBuf {
    if let Some(root) = std::env::var_os("FOG_ROOT").filter(|r| !r.is_empty()) {
        return std::path::PathBuf::from(root);
    }
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the repository root")
        .to_path_buf()
}

/// A path from the command line made absolute against the directory the
/// command ran in (the repository root when that is gone).
pub fn absolute(path: impl AsRef<std::path::Path>) -> std::path::PathBuf {
    let path = path.as_ref();
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| project_root())
            .join(path)
    }
}
