//! A running command: [`Child`] hands out the pipes its [`super::Cmd`] asked
//! for (stdin to write, stdout and stderr to read, as `std::process::Child`
//! does), and waits or kills through duct's thread-safe handle. A [`Guard`]
//! kills and reaps a long-running child (a server, a stats stream) when it
//! goes out of scope, so an error path leaves no process behind.

use std::{io, process::ExitStatus, sync::Arc};

/// The parent's ends of the streams a command asked to be piped.
#[derive(Default, Debug)]
pub struct Pipes {
    pub stdin: Option<os_pipe::PipeWriter>,
    pub stdout: Option<os_pipe::PipeReader>,
    pub stderr: Option<os_pipe::PipeReader>,
}

/// A started command (or pipeline).
#[derive(Debug)]
pub struct Child {
    handle: Arc<duct::Handle>,
    pub stdin: Option<os_pipe::PipeWriter>,
    pub stdout: Option<os_pipe::PipeReader>,
    pub stderr: Option<os_pipe::PipeReader>,
    line: String,
}

impl Child {
    pub(super) fn start(
        expression: duct::Expression,
        pipes: Pipes,
        line: String,
    ) -> io::Result<Child> {
        let handle = expression.start();
        // The expression held the child's ends of the pipes: dropping it
        // leaves them only in the child, so our readers see end-of-file.
        drop(expression);
        Ok(Child {
            handle: Arc::new(handle?),
            stdin: pipes.stdin,
            stdout: pipes.stdout,
            stderr: pipes.stderr,
            line,
        })
    }

    /// The command line it runs.
    pub fn line(&self) -> &str {
        &self.line
    }

    pub fn id(&self) -> u32 {
        self.handle.pids().last().copied().unwrap_or(0)
    }

    /// Wait for it to exit (closing our end of its stdin first, as std does).
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        drop(self.stdin.take());
        Ok(self.handle.wait()?.status)
    }

    /// Wait for it, reading what is left of its piped stdout and stderr (as
    /// `std::process::Child::wait_with_output` does).
    pub fn wait_with_output(mut self) -> io::Result<std::process::Output> {
        drop(self.stdin.take());
        let read = |pipe: Option<os_pipe::PipeReader>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = io::Read::read_to_end(&mut pipe, &mut bytes);
                }
                bytes
            })
        };
        let stdout = read(self.stdout.take());
        let stderr = read(self.stderr.take());
        let status = self.wait()?;
        Ok(std::process::Output {
            status,
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        })
    }

    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        Ok(self.handle.try_wait()?.map(|o| o.status))
    }

    pub fn kill(&mut self) -> io::Result<()> {
        self.handle.kill()
    }

    /// Wait at most `limit`; past it kill the command and return `None`.
    /// A waiter thread blocks on the handle while this one waits on a channel
    /// (no polling, no signal handler).
    pub fn wait_timeout(&mut self, limit: std::time::Duration) -> io::Result<Option<ExitStatus>> {
        drop(self.stdin.take());
        let handle = Arc::clone(&self.handle);
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(handle.wait().map(|o| o.status));
        });
        match receive.recv_timeout(limit) {
            Ok(status) => status.map(Some),
            Err(_) => {
                let _ = self.handle.kill();
                let _ = receive.recv();
                Ok(None)
            }
        }
    }

    /// Kill it when the returned guard is dropped.
    pub fn guard(self) -> Guard {
        Guard(self)
    }
}

/// A long-running child, killed and reaped on drop.
#[derive(Debug)]
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}
