//! `release sign`: sign `SHA256SUMS` with minisign, writing
//! `SHA256SUMS.minisig` (the trusted comment names the version and commit).
//! The secret key comes from `--key FILE`, `FOG_MINISIGN_KEY_FILE`, or the key
//! itself in `FOG_MINISIGN_KEY` (written to a 0600 temp file outside the
//! repository for the one command), never from a file inside the repository.
//! An encrypted key's password is read from `FOG_MINISIGN_PASSWORD`.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use super::{
    common::{Release, Timer, SIG, SUMS},
    Common,
};
use crate::process::{Cmd, Io};
use crate::{process::Runner, usage_bail};

#[derive(clap::Args)]
#[command(
    disable_version_flag = true,
    after_help = "Examples:
  minisign -G -p fog.pub -s ~/keys/fog.key            # once: make a key pair
  cargo xtask release sign --key ~/keys/fog.key
  FOG_MINISIGN_KEY=\"$(cat ~/keys/fog.key)\" FOG_MINISIGN_PASSWORD=... cargo xtask release sign"
)]
pub struct Args {
    #[command(flatten)]
    common: Common,
    /// minisign secret key file (else FOG_MINISIGN_KEY_FILE or FOG_MINISIGN_KEY).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
}

/// Where the secret key comes from.
#[derive(Debug)]
pub enum Key {
    File(PathBuf),
    /// The key file's contents, from `FOG_MINISIGN_KEY`.
    Inline(String),
}

impl Key {
    pub fn describe(&self) -> String {
        match self {
            Key::File(p) => p.display().to_string(),
            Key::Inline(_) => "$FOG_MINISIGN_KEY".to_string(),
        }
    }
}

/// Find the signing key; a clear usage error when there is none or it lives
/// in the repository.
pub fn resolve_key(flag: Option<&Path>, root: &Path) -> Result<Key> {
    let from_env = std::env::var_os("FOG_MINISIGN_KEY_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    if let Some(path) = flag.map(Path::to_path_buf).or(from_env) {
        let path = crate::absolute(path);
        let Ok(real) = path.canonicalize() else {
            usage_bail!(
                "signing key {} does not exist: pass --key FILE or set FOG_MINISIGN_KEY_FILE",
                path.display()
            );
        };
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        if real.starts_with(&root) {
            usage_bail!(
                "signing key {} is inside the repository: keep secret keys outside it (e.g. ~/.minisign/)",
                path.display()
            );
        }
        return Ok(Key::File(real));
    }
    match std::env::var("FOG_MINISIGN_KEY") {
        Ok(text) if !text.trim().is_empty() => Ok(Key::Inline(text)),
        _ => usage_bail!(
            "no signing key: pass --key FILE, or set FOG_MINISIGN_KEY_FILE or FOG_MINISIGN_KEY (never a file in the repository)"
        ),
    }
}

pub fn run(sh: &Shell, runner: &Runner, args: Args) -> Result<()> {
    let _timer = Timer::start("sign");
    let release = Release::load(sh, runner, &args.common)?;
    let key = resolve_key(args.key.as_deref(), &release.root)?;
    let sums = release.out.join(SUMS);
    if !sums.is_file() && !runner.dry_run {
        usage_bail!(
            "{} does not exist: run `cargo xtask release dist` (and `release images`) first",
            sums.display()
        );
    }
    let sig = release.out.join(SIG);
    let comment = format!("fog-compute {} {}", release.version, release.revision);
    let temp = match &key {
        Key::File(_) => None,
        Key::Inline(text) => Some(TempKey::write(text)?),
    };
    let key_path = match (&key, &temp) {
        (Key::File(p), _) => p.clone(),
        (_, Some(t)) => t.0.join("key"),
        _ => unreachable!("an inline key has a temp file"),
    };
    let mut cmd = Cmd::new("minisign");
    cmd.arg("-S")
        .arg("-s")
        .arg(&key_path)
        .arg("-m")
        .arg(&sums)
        .arg("-x")
        .arg(&sig)
        .arg("-t")
        .arg(&comment);
    if runner.dry_run {
        println!(
            "minisign -S -s {} -m {} -x {} -t '{comment}'",
            key.describe(),
            sums.display(),
            sig.display()
        );
        return Ok(());
    }
    let password = std::env::var("FOG_MINISIGN_PASSWORD").unwrap_or_default();
    // The password goes in on stdin, never on the command line.
    let output = runner
        .output(cmd.input(format!("{password}\n")).stdout(Io::Null))
        .context("running minisign: is it installed? (`apt-get install minisign`)")?;
    if !output.status.success() {
        let err = String::from_utf8_lossy(&output.stderr);
        let last = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("");
        bail!(
            "minisign could not sign with {}: {last} (an encrypted key needs FOG_MINISIGN_PASSWORD)",
            key.describe()
        );
    }
    println!("signed {} -> {}", sums.display(), sig.display());
    Ok(())
}

/// A 0600 directory in the system temp dir holding an inline key; removed on drop.
struct TempKey(PathBuf);

impl TempKey {
    fn write(text: &str) -> Result<TempKey> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let dir = std::env::temp_dir().join(format!("fog-minisign-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let guard = TempKey(dir);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(guard.0.join("key"))?;
        file.write_all(text.as_bytes())?;
        if !text.ends_with('\n') {
            file.write_all(b"\n")?;
        }
        Ok(guard)
    }
}

impl Drop for TempKey {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
