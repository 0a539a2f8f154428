//! Streams through `docker exec`: an archive out of a container's stdout into
//! a host file, or a host file into a container's stdin, hashed in the same
//! pass and counted on an indicatif bar (bytes and rate). The container's
//! stderr is collected on a thread so neither side can stall the other, and
//! a failure names the command and quotes what it printed.

use std::{
    io::{Read, Write},
    thread,
};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::process::{Cmd, Io, Runner};

/// A byte bar with rate, hidden unless `progress`.
pub fn bar(progress: bool, total: Option<u64>, message: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let template = match total {
        Some(_) => "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed}",
        None => "{spinner} {msg} {bytes} {binary_bytes_per_sec} {elapsed}",
    };
    let bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn collect(mut from: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = Vec::new();
        // Bounded: a chatty tool cannot fill memory.
        let _ = (&mut from).take(1 << 20).read_to_end(&mut text);
        let _ = std::io::copy(&mut from, &mut std::io::sink());
        String::from_utf8_lossy(&text).into_owned()
    })
}

/// Run `cmd`, writing its stdout into `to`. Returns bytes and sha256.
pub fn from_child(
    runner: &Runner,
    mut cmd: Cmd,
    to: impl Write,
    bar: &ProgressBar,
) -> Result<(u64, String)> {
    let line = cmd.line();
    let mut child = runner.spawn(cmd.stdin(Io::Null).stdout(Io::Piped).stderr(Io::Piped))?;
    let stderr = collect(child.stderr.take().expect("piped"));
    let copied = super::archive::copy_hashed(child.stdout.take().expect("piped"), to, bar);
    if copied.is_err() {
        // Our side failed (a full disk): the tool's SIGPIPE is only the echo of it.
        let _ = child.kill();
    }
    let status = child.wait().context("waiting for docker exec")?;
    let err = stderr.join().unwrap_or_default();
    let copied = copied.with_context(|| format!("copying the output of `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status}): {}", err.trim());
    }
    Ok(copied)
}

/// Run `cmd` with `from` as its stdin. Returns its stdout. With `reads_all`
/// unset (`pg_restore -l` stops after the table of contents) a tool that
/// succeeds without reading everything is fine.
/// A `mutating` command (a restore) is only printed under `--dry-run`.
pub fn into_child(
    runner: &Runner,
    mutating: bool,
    mut cmd: Cmd,
    from: impl Read,
    bar: &ProgressBar,
    reads_all: bool,
) -> Result<String> {
    let line = cmd.line();
    if mutating && runner.dry_run {
        println!("{line} < <archive>");
        return Ok(String::new());
    }
    let mut child = runner.spawn(cmd.stdin(Io::Piped).stdout(Io::Piped).stderr(Io::Piped))?;
    let stdout = collect(child.stdout.take().expect("piped"));
    let stderr = collect(child.stderr.take().expect("piped"));
    let stdin = child.stdin.take().expect("piped");
    // A tool that stops reading (it failed) breaks the pipe: its own error says why.
    let fed = super::archive::copy_hashed(from, stdin, bar);
    let status = child.wait().context("waiting for docker exec")?;
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        bail!("`{line}` failed ({status}): {}", err.trim());
    }
    match fed {
        Err(e) if !reads_all && is_broken_pipe(&e) => {}
        other => {
            other?;
        }
    }
    Ok(out)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A named pipe (mode 0666) alone in a private (0700) temp folder, to be
/// bind-mounted into a helper container: the fast way between a helper and
/// this process (a container's stdout or stdin through the engine is several
/// times slower than `docker cp`). Removed with its folder on drop.
pub struct Fifo {
    dir: std::path::PathBuf,
    pub path: std::path::PathBuf,
}

impl Fifo {
    pub fn create(runner: &Runner) -> Result<Fifo> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("fog-fifo-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let fifo = Fifo {
            path: dir.join("stream.tar"),
            dir,
        };
        let sh = xshell::Shell::new()?;
        let path = &fifo.path;
        runner.read(xshell::cmd!(sh, "mkfifo {path}"))?;
        // The helper's root may be mapped to another uid (userns-remap); the folder keeps others out.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
        Ok(fifo)
    }

    /// Unblock a side waiting in `open` for its peer (the helper never came):
    /// a read-write open never blocks on Linux and counts as both peers.
    fn release(&self) {
        let _ = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path);
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run helper `cmd`, which writes a stream into `fifo`, and copy that
/// stream into `to`, hashed. Returns bytes and sha256. A failure of our side
/// (a full disk) is reported before the helper's echo of it.
pub fn from_fifo(
    runner: &Runner,
    mut cmd: Cmd,
    fifo: &Fifo,
    to: impl Write + Send,
    bar: &ProgressBar,
) -> Result<(u64, String)> {
    let line = cmd.line();
    let mut child = runner.spawn(cmd.stdin(Io::Null).stdout(Io::Piped).stderr(Io::Piped))?;
    let _stdout = collect(child.stdout.take().expect("piped"));
    let stderr = collect(child.stderr.take().expect("piped"));
    let (copied, status) = thread::scope(|s| {
        // A pump with a deep queue keeps the helper reading while this side compresses.
        let (send, receive) = std::sync::mpsc::sync_channel::<Vec<u8>>(QUEUE);
        let pump = s.spawn(move || -> std::io::Result<()> {
            let mut pipe = std::fs::File::open(&fifo.path)?;
            deepen(&pipe);
            loop {
                let mut chunk = vec![0u8; CHUNK];
                let n = match pipe.read(&mut chunk) {
                    Ok(0) => return Ok(()),
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                chunk.truncate(n);
                if send.send(chunk).is_err() {
                    // The consumer failed (a full disk): closing the pipe stops the helper.
                    return Ok(());
                }
            }
        });
        let reader = s.spawn(move || {
            let copied = super::archive::copy_hashed(Queue::new(receive), to, bar);
            let pumped = pump.join().expect("the pump does not panic");
            let copied = copied?;
            pumped.with_context(|| format!("reading {}", fifo.path.display()))?;
            Ok::<_, anyhow::Error>(copied)
        });
        let status = child.wait();
        if !reader.is_finished() {
            fifo.release();
        }
        (reader.join().expect("the reader does not panic"), status)
    });
    let status = status.context("waiting for docker run")?;
    let err = stderr.join().unwrap_or_default();
    let copied = copied.with_context(|| format!("copying the output of `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status}): {}", err.trim());
    }
    Ok(copied)
}

/// Grow a pipe's buffer from 64 KiB to 1 MiB (the unprivileged maximum), so
/// the helper is not stopped at every scheduling delay of this side.
/// Best effort: a kernel that refuses keeps the default.
fn deepen(pipe: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor this File owns, with an integer argument.
    unsafe {
        libc::fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

/// Chunks read from the pipe at once (64 KiB: what a helper's write leaves).
const CHUNK: usize = 1 << 16;
/// Chunks queued between the pipe and the compressor (at most 64 MiB).
const QUEUE: usize = 1024;

/// A reader over the chunks of a channel.
pub struct Queue {
    receive: std::sync::mpsc::Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Queue {
    pub fn new(receive: std::sync::mpsc::Receiver<Vec<u8>>) -> Queue {
        Queue {
            receive,
            chunk: Vec::new(),
            at: 0,
        }
    }
}

impl Read for Queue {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.receive.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Run helper `cmd`, which reads a stream from `fifo`, feeding it `from`.
/// A mutating command is only printed under `--dry-run`.
pub fn into_fifo(
    runner: &Runner,
    mut cmd: Cmd,
    fifo: &Fifo,
    from: impl Read + Send,
    bar: &ProgressBar,
) -> Result<()> {
    let line = cmd.line();
    if runner.dry_run {
        println!("{line} < <archive>");
        return Ok(());
    }
    let mut child = runner.spawn(cmd.stdin(Io::Null).stdout(Io::Piped).stderr(Io::Piped))?;
    let _stdout = collect(child.stdout.take().expect("piped"));
    let stderr = collect(child.stderr.take().expect("piped"));
    let (fed, status) = thread::scope(|s| {
        let writer = s.spawn(|| {
            let pipe = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo.path)
                .with_context(|| format!("opening {}", fifo.path.display()))?;
            super::archive::copy_hashed(from, pipe, bar)
        });
        let status = child.wait();
        if !writer.is_finished() {
            fifo.release();
        }
        (writer.join().expect("the writer does not panic"), status)
    });
    let status = status.context("waiting for docker run")?;
    let err = stderr.join().unwrap_or_default();
    if !status.success() {
        bail!("`{line}` failed ({status}): {}", err.trim());
    }
    match fed {
        // tar stops at the end-of-archive blocks; padding after them may stay unread.
        Err(e) if is_broken_pipe(&e) => Ok(()),
        other => other.map(|_| ()),
    }
}
