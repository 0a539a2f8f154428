//! [`Cmd`]: what to run — program, arguments, environment, working folder and
//! where its standard streams go — as plain data, built anywhere in the xtask
//! and executed only by [`super::Runner`]. It prints as the exact command
//! line (`--dry-run`, `-v`, error messages) and becomes a `duct` expression
//! only inside this module.

use std::{
    ffi::{OsStr, OsString},
    fmt,
    fs::File,
    path::PathBuf,
};

/// Where one standard stream of a [`Cmd`] goes.
#[derive(Debug)]
pub enum Io {
    /// This process's own stream.
    Inherit,
    /// `/dev/null`.
    Null,
    /// A pipe to this process, handed out on [`super::Child`].
    Piped,
    /// An open file (or pipe end).
    File(File),
}

impl From<File> for Io {
    fn from(file: File) -> Io {
        Io::File(file)
    }
}

/// A command to run: built with `arg`/`args`/`env`/..., run by the runner.
#[derive(Debug)]
pub struct Cmd {
    pub(super) program: OsString,
    pub(super) args: Vec<OsString>,
    pub(super) env: Vec<(OsString, Option<OsString>)>,
    pub(super) dir: Option<PathBuf>,
    /// The line to print, when the command came from xshell (its own quoting).
    pub(super) line: Option<String>,
    pub(super) stdin: Option<Io>,
    pub(super) stdout: Option<Io>,
    pub(super) stderr: Option<Io>,
    pub(super) input: Option<Vec<u8>>,
    pub(super) stderr_to_stdout: bool,
}

impl Cmd {
    pub fn new(program: impl AsRef<OsStr>) -> Cmd {
        Cmd {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env: Vec::new(),
            dir: None,
            line: None,
            stdin: None,
            stdout: None,
            stderr: None,
            input: None,
            stderr_to_stdout: false,
        }
    }

    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Cmd {
        self.args.push(arg.as_ref().to_owned());
        self.line = None;
        self
    }

    pub fn args<I, S>(&mut self, args: I) -> &mut Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self.arg(a);
        }
        self
    }

    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Cmd {
        self.env
            .push((key.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Cmd {
        self.env.push((key.as_ref().to_owned(), None));
        self
    }

    pub fn current_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Cmd {
        self.dir = Some(dir.into());
        self
    }

    pub fn stdin(&mut self, io: impl Into<Io>) -> &mut Cmd {
        self.stdin = Some(io.into());
        self
    }

    pub fn stdout(&mut self, io: impl Into<Io>) -> &mut Cmd {
        self.stdout = Some(io.into());
        self
    }

    pub fn stderr(&mut self, io: impl Into<Io>) -> &mut Cmd {
        self.stderr = Some(io.into());
        self
    }

    /// Feed these bytes to the command's stdin (a key password, a SQL script).
    pub fn input(&mut self, bytes: impl Into<Vec<u8>>) -> &mut Cmd {
        self.input = Some(bytes.into());
        self
    }

    /// Merge stderr into stdout (`2>&1`), for one captured transcript.
    pub fn stderr_to_stdout(&mut self) -> &mut Cmd {
        self.stderr_to_stdout = true;
        self
    }

    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    pub fn get_args(&self) -> impl Iterator<Item = &OsStr> {
        self.args.iter().map(OsString::as_os_str)
    }

    pub fn get_envs(&self) -> impl Iterator<Item = (&OsStr, Option<&OsStr>)> {
        self.env.iter().map(|(k, v)| (k.as_os_str(), v.as_deref()))
    }

    /// The command line, quoted for a POSIX shell where an argument needs it.
    pub fn line(&self) -> String {
        if let Some(line) = &self.line {
            return line.clone();
        }
        let mut parts = vec![self.program.to_string_lossy().into_owned()];
        parts.extend(self.args.iter().map(|a| {
            let a = a.to_string_lossy();
            if a.contains([' ', '[', '"', '\'']) {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                a.into_owned()
            }
        }));
        parts.join(" ")
    }

    /// The duct expression, with stdin defaulting to `default_stdin` and the
    /// exit status left to the caller (the runner names the command itself).
    /// Returns the parent's ends of the `Piped` streams (stdin, stdout, stderr).
    pub(super) fn expression(
        &mut self,
        default_stdin: Io,
    ) -> std::io::Result<(duct::Expression, super::child::Pipes)> {
        #[allow(clippy::disallowed_methods)] // the one place a duct command is built
        let mut e = duct::cmd(&self.program, &self.args).unchecked();
        if let Some(dir) = &self.dir {
            e = e.dir(dir);
        }
        for (k, v) in &self.env {
            e = match v {
                Some(v) => e.env(k, v),
                None => e.env_remove(k),
            };
        }
        let mut pipes = super::child::Pipes::default();
        if let Some(bytes) = self.input.take() {
            e = e.stdin_bytes(bytes);
        } else {
            match self.stdin.take().unwrap_or(default_stdin) {
                Io::Inherit => {}
                Io::Null => e = e.stdin_null(),
                Io::File(f) => e = e.stdin_file(f),
                Io::Piped => {
                    let (read, write) = os_pipe::pipe()?;
                    e = e.stdin_file(read);
                    pipes.stdin = Some(write);
                }
            }
        }
        if self.stderr_to_stdout {
            e = e.stderr_to_stdout();
        }
        for (which, io) in [(1, self.stdout.take()), (2, self.stderr.take())] {
            let Some(io) = io else { continue };
            e = match (which, io) {
                (_, Io::Inherit) => e,
                (1, Io::Null) => e.stdout_null(),
                (_, Io::Null) => e.stderr_null(),
                (1, Io::File(f)) => e.stdout_file(f),
                (_, Io::File(f)) => e.stderr_file(f),
                (n, Io::Piped) => {
                    let (read, write) = os_pipe::pipe()?;
                    if n == 1 {
                        pipes.stdout = Some(read);
                        e.stdout_file(write)
                    } else {
                        pipes.stderr = Some(read);
                        e.stderr_file(write)
                    }
                }
            };
        }
        Ok((e, pipes))
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

impl From<xshell::Cmd<'_>> for Cmd {
    /// Program, arguments, working folder and environment of an xshell
    /// command (a plain conversion: nothing runs). Its stdin is null, as
    /// xshell's own runner did, and it prints with xshell's quoting.
    fn from(cmd: xshell::Cmd<'_>) -> Cmd {
        let line = cmd.to_string();
        let std: std::process::Command = cmd.into();
        let mut out = Cmd::new(std.get_program());
        out.args(std.get_args());
        if let Some(dir) = std.get_current_dir() {
            out.current_dir(dir);
        }
        for (k, v) in std.get_envs() {
            match v {
                Some(v) => out.env(k, v),
                None => out.env_remove(k),
            };
        }
        out.stdin(Io::Null);
        out.line = Some(line);
        out
    }
}

impl From<&mut Cmd> for Cmd {
    /// Run a command built in place (`let mut c = Cmd::new(..); c.arg(..)`):
    /// the streams and input move (they are used once), the rest is copied,
    /// so `c` still prints the same line afterwards.
    fn from(cmd: &mut Cmd) -> Cmd {
        Cmd {
            program: cmd.program.clone(),
            args: cmd.args.clone(),
            env: cmd.env.clone(),
            dir: cmd.dir.clone(),
            line: cmd.line.clone(),
            stdin: cmd.stdin.take(),
            stdout: cmd.stdout.take(),
            stderr: cmd.stderr.take(),
            input: cmd.input.take(),
            stderr_to_stdout: cmd.stderr_to_stdout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_prints_quoted_for_a_shell() {
        let mut c = Cmd::new("docker");
        c.args(["run", "--name", "it's", "a b", "x[1]"]);
        assert_eq!(c.line(), r"docker run --name 'it'\''s' 'a b' 'x[1]'");
    }

    #[test]
    fn an_xshell_command_keeps_its_own_line_and_environment() {
        let sh = xshell::Shell::new().unwrap();
        let who = "a b";
        let c: Cmd = xshell::cmd!(sh, "echo {who}").env("K", "v").into();
        assert_eq!(c.line(), "echo \"a b\"");
        assert_eq!(c.args, vec![OsString::from("a b")]);
        assert!(c
            .env
            .iter()
            .any(|(k, v)| k == "K" && v.as_deref() == Some(OsStr::new("v"))));
    }
}
