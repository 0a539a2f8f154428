//! The one place the xtask starts a process, on `duct`, under the global
//! `--dry-run` and `-v` flags. Other modules say what to run as a [`Cmd`]
//! (or an xshell `cmd!`, converted without running) and hand it to the
//! [`Runner`]: [`Runner::run`] and [`Runner::run_capture`] change state and
//! are only printed under `--dry-run`; [`Runner::read`], [`Runner::probe`],
//! [`Runner::output`] and [`Runner::status`] only read state and run even
//! then, because later steps depend on their answers; [`Runner::spawn`] starts
//! a child whose pipes the caller drives (streams, `a | b` with a byte bar,
//! long-running servers under a [`Guard`]). `clippy.toml` forbids spawning
//! anywhere else.

mod child;
mod cmd;

use std::{process::ExitStatus, time::Duration};

use anyhow::{Context, Result};

pub use child::{Child, Guard};
pub use cmd::{Cmd, Io};
pub use os_pipe::{PipeReader, PipeWriter};
pub use std::process::Output;

use crate::Global;

/// Executes or prints external commands according to the global flags.
#[derive(Debug, Clone, Copy, Default)]
pub struct Runner {
    pub dry_run: bool,
    pub verbose: bool,
}

/// The command did not finish in time and was killed.
#[derive(Debug)]
pub struct TimedOut;

impl Runner {
    pub fn new(global: &Global) -> Self {
        Runner {
            dry_run: global.dry_run,
            verbose: global.verbose,
        }
    }

    /// Run a state-changing command, inheriting stdout and stderr.
    /// In dry-run mode print it (`+ docker ...`) and succeed without running it.
    pub fn run(&self, cmd: impl Into<Cmd>) -> Result<()> {
        let mut cmd = cmd.into();
        if self.dry_run {
            println!("{cmd}");
            return Ok(());
        }
        self.trace(&cmd);
        let line = cmd.line();
        let status = self
            .exec(&mut cmd, Io::Null, false)
            .map_err(|e| not_started(&cmd, e))
            .with_context(|| format!("`{line}` failed"))?
            .status;
        check(&line, status).with_context(|| format!("`{line}` failed"))
    }

    /// Run a state-changing command and capture its stdout. In dry-run mode
    /// print it and return an empty string.
    pub fn run_capture(&self, cmd: impl Into<Cmd>) -> Result<String> {
        let cmd = cmd.into();
        if self.dry_run {
            println!("{cmd}");
            return Ok(String::new());
        }
        self.read(cmd)
    }

    /// Run a read-only query and return its stdout without the final newline
    /// (stderr passes through). Runs in dry-run mode too.
    pub fn read(&self, cmd: impl Into<Cmd>) -> Result<String> {
        let mut cmd = cmd.into();
        self.trace(&cmd);
        let line = cmd.line();
        let output = self
            .exec(&mut cmd, Io::Null, true)
            .map_err(|e| not_started(&cmd, e))
            .with_context(|| format!("`{line}` failed"))?;
        check(&line, output.status).with_context(|| format!("`{line}` failed"))?;
        let mut text = String::from_utf8(output.stdout)
            .map_err(|e| anyhow::anyhow!("`{line}` printed invalid UTF-8: {e}"))?;
        if text.ends_with('\n') {
            text.pop();
        }
        if text.ends_with('\r') {
            text.pop();
        }
        Ok(text)
    }

    /// Like [`Runner::read`] but a non-zero exit is `None`, not an error, and
    /// stderr is swallowed: for probes such as "does this image exist?".
    pub fn probe(&self, cmd: impl Into<Cmd>) -> Option<String> {
        let mut cmd = cmd.into();
        if cmd.stderr.is_none() {
            cmd.stderr(Io::Null);
        }
        self.trace(&cmd);
        let output = self.exec(&mut cmd, Io::Null, true).ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    }

    /// Run a command to the end with stdout and stderr captured (stdin null
    /// unless set), whatever its exit code: the caller reads the status.
    /// Runs in dry-run mode too: callers of a mutating command check
    /// `dry_run` and print it themselves, or use [`Runner::run_output`].
    pub fn output(&self, cmd: impl Into<Cmd>) -> Result<Output> {
        let mut cmd = cmd.into();
        self.trace(&cmd);
        if cmd.stderr.is_none() && !cmd.stderr_to_stdout {
            cmd.stderr(Io::Piped);
        }
        self.exec(&mut cmd, Io::Null, true)
            .map_err(|e| not_started(&cmd, e))
    }

    /// Run a read-only command with inherited streams (logs, CI steps); a
    /// non-zero exit is an error. Runs in dry-run mode too.
    pub fn stream(&self, cmd: impl Into<Cmd>) -> Result<()> {
        let mut cmd = cmd.into();
        self.trace(&cmd);
        let line = cmd.line();
        let status = self
            .exec(&mut cmd, Io::Null, false)
            .map_err(|e| not_started(&cmd, e))
            .with_context(|| format!("`{line}` failed"))?
            .status;
        check(&line, status).with_context(|| format!("`{line}` failed"))
    }

    /// [`Runner::output`] of a state-changing command: under `--dry-run` it
    /// is printed and `None` returned.
    pub fn run_output(&self, cmd: impl Into<Cmd>) -> Result<Option<Output>> {
        let cmd = cmd.into();
        if self.dry_run {
            println!("{cmd}");
            return Ok(None);
        }
        self.output(cmd).map(Some)
    }

    /// Run a command with inherited streams (unless set) and return its exit
    /// status, whatever it is. Runs in dry-run mode too (see [`Runner::output`]).
    pub fn status(&self, cmd: impl Into<Cmd>) -> Result<ExitStatus> {
        let mut cmd = cmd.into();
        self.trace(&cmd);
        Ok(self
            .exec(&mut cmd, Io::Inherit, false)
            .map_err(|e| not_started(&cmd, e))?
            .status)
    }

    /// [`Runner::output`] with a deadline: past it the command is killed.
    /// An error to start it is reported as a failed run (`cannot run ...`).
    pub fn output_timeout(
        &self,
        cmd: impl Into<Cmd>,
        limit: Duration,
    ) -> std::result::Result<Output, TimedOut> {
        let mut cmd = cmd.into();
        self.trace(&cmd);
        cmd.stdout(Io::Piped).stderr(Io::Piped);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let failed = || Output {
            status: exit_status(1),
            stdout: Vec::new(),
            stderr: format!("cannot run {program}").into_bytes(),
        };
        let Ok(mut child) = self.start(cmd, Io::Null) else {
            return Ok(failed());
        };
        let out = collect(child.stdout.take());
        let err = collect(child.stderr.take());
        match child.wait_timeout(limit) {
            Ok(Some(status)) => Ok(Output {
                status,
                stdout: out.join().unwrap_or_default(),
                stderr: err.join().unwrap_or_default(),
            }),
            Ok(None) => Err(TimedOut),
            Err(_) => Ok(failed()),
        }
    }

    /// Start a command whose streams the caller drives: `Io::Piped` streams
    /// are on the returned [`Child`]; stdin is inherited unless set. Runs in
    /// dry-run mode too: a caller that mutates checks `dry_run` first and
    /// prints [`Cmd::line`].
    pub fn spawn(&self, cmd: impl Into<Cmd>) -> Result<Child> {
        let cmd = cmd.into();
        self.trace(&cmd);
        let line = cmd.line();
        self.start(cmd, Io::Inherit)
            .with_context(|| format!("starting `{line}`"))
    }

    fn start(&self, mut cmd: Cmd, stdin: Io) -> std::io::Result<Child> {
        let line = cmd.line();
        let (expression, pipes) = cmd.expression(stdin)?;
        Child::start(expression, pipes, line)
    }

    /// Run to the end; stdout captured if `capture` (else as the command says).
    fn exec(&self, cmd: &mut Cmd, stdin: Io, capture: bool) -> std::io::Result<Output> {
        // Run to the end: nobody would read a pipe handed out here.
        let capture_err = matches!(cmd.stderr, Some(Io::Piped));
        if capture_err {
            cmd.stderr = None;
        }
        if matches!(cmd.stdout, Some(Io::Piped)) {
            cmd.stdout = None;
        }
        if matches!(cmd.stdin, Some(Io::Piped)) {
            cmd.stdin = Some(Io::Null);
        }
        let (mut e, _) = cmd.expression(stdin)?;
        if capture {
            e = e.stdout_capture();
        }
        if capture_err {
            e = e.stderr_capture();
        }
        e.run()
    }

    fn trace(&self, cmd: &Cmd) {
        if self.verbose {
            eprintln!("+ {cmd}");
        }
    }
}

/// The error of a command that did not start, worded as xshell did.
fn not_started(cmd: &Cmd, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!(
            "command not found: `{}`",
            cmd.get_program().to_string_lossy()
        )
    } else {
        anyhow::anyhow!("io error when running command `{cmd}`: {e}")
    }
}

/// A non-zero exit as an error, worded as xshell did.
fn check(line: &str, status: ExitStatus) -> Result<()> {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => anyhow::bail!("command exited with non-zero code `{line}`: {code}"),
        (None, Some(sig)) => anyhow::bail!("command was terminated by a signal `{line}`: {sig}"),
        _ => anyhow::bail!("command failed `{line}`: {status}"),
    }
}

fn exit_status(code: i32) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    ExitStatus::from_raw(code << 8)
}

/// Read a pipe to its end on a thread.
fn collect(from: Option<os_pipe::PipeReader>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut from) = from {
            let _ = std::io::Read::read_to_end(&mut from, &mut bytes);
        }
        bytes
    })
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn runner() -> Runner {
        Runner::default()
    }

    #[test]
    fn output_keeps_the_exit_code_and_both_streams() {
        let mut c = Cmd::new("sh");
        c.args(["-c", "echo out; echo err >&2; exit 3"]);
        let o = runner().output(&mut c).unwrap();
        assert_eq!(o.status.code(), Some(3));
        assert_eq!(o.stdout, b"out\n");
        assert_eq!(o.stderr, b"err\n");
    }

    #[test]
    fn read_fails_naming_the_command_and_probe_says_none() {
        let mut c = Cmd::new("sh");
        c.args(["-c", "exit 4"]);
        let e = runner().read(&mut c).unwrap_err();
        assert!(
            format!("{e:#}").contains("non-zero code `sh -c 'exit 4'`: 4"),
            "{e:#}"
        );
        let mut c = Cmd::new("sh");
        c.args(["-c", "echo yes; exit 1"]);
        assert_eq!(runner().probe(&mut c), None);
        let mut c = Cmd::new("echo");
        c.arg("yes");
        assert_eq!(runner().probe(&mut c).as_deref(), Some("yes"));
        assert!(format!(
            "{:#}",
            runner().read(Cmd::new("fog-no-such-program")).unwrap_err()
        )
        .contains("command not found"));
    }

    #[test]
    fn input_bytes_and_a_combined_transcript() {
        let mut c = Cmd::new("sh");
        c.args(["-c", "cat; echo err >&2"])
            .input("in\n")
            .stderr_to_stdout();
        let o = runner().output(&mut c).unwrap();
        assert_eq!(String::from_utf8_lossy(&o.stdout), "in\nerr\n");
    }

    #[test]
    fn a_dry_run_does_not_run_a_mutating_command() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        let dry = Runner {
            dry_run: true,
            verbose: false,
        };
        let mut c = Cmd::new("touch");
        c.arg(&marker);
        dry.run(&mut c).unwrap();
        assert_eq!(
            dry.run_output(Cmd::new("true")).unwrap().map(|o| o.status),
            None
        );
        assert!(!marker.exists());
        let mut c = Cmd::new("touch");
        c.arg(&marker);
        runner().run(&mut c).unwrap();
        assert!(marker.exists());
    }

    #[test]
    fn spawned_pipes_stream_both_ways() {
        let mut c = Cmd::new("tr");
        c.args(["a-z", "A-Z"]).stdin(Io::Piped).stdout(Io::Piped);
        let mut child = runner().spawn(&mut c).unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        stdin.write_all(b"hello").unwrap();
        drop(stdin);
        let mut text = String::new();
        stdout.read_to_string(&mut text).unwrap();
        assert_eq!(text, "HELLO");
        assert!(child.wait().unwrap().success());
    }

    #[test]
    fn a_timeout_kills_and_a_quick_command_answers() {
        let mut slow = Cmd::new("sleep");
        slow.arg("30");
        let started = std::time::Instant::now();
        assert!(runner()
            .output_timeout(&mut slow, Duration::from_millis(200))
            .is_err());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
        let mut quick = Cmd::new("echo");
        quick.arg("hi");
        let o = runner()
            .output_timeout(&mut quick, Duration::from_secs(30))
            .unwrap();
        assert!(o.status.success());
        assert_eq!(o.stdout, b"hi\n");
        let o = runner()
            .output_timeout(Cmd::new("fog-no-such-program"), Duration::from_secs(30))
            .unwrap();
        assert!(!o.status.success());
    }

    #[test]
    fn a_guard_kills_its_child() {
        let mut c = Cmd::new("sleep");
        c.arg("30");
        let child = runner().spawn(&mut c).unwrap();
        let pid = child.id();
        drop(child.guard());
        // Reaped: no process (not even a zombie) has that pid any more.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
