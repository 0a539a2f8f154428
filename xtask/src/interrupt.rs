//! Ctrl-C and SIGTERM for the commands that must put things back before they
//! exit (restore, adopt, the live report): one process-wide handler sets a
//! flag and says once what the command is doing about it; the command checks
//! [`interrupted`] between its steps, finishes the current one and undoes.
//! A second signal only repeats that it is still working. The ctrlc crate
//! allows one handler per process, so this is the only place that installs it.
//! Also the one test hook that holds a command at a named step,
//! [`pause_point`] (`FOG_TEST_PAUSE_AT`), so tests signal or kill it there
//! instead of racing it with sleeps.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex, Once,
    },
    time::Duration,
};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static DOING: Mutex<&str> = Mutex::new("stopping");
static INSTALL: Once = Once::new();

/// Catch Ctrl-C and SIGTERM from now on; `doing` completes "interrupted: …"
/// (for example "finishing the current step, then putting things back").
/// A later call only changes the message.
pub fn catch(doing: &'static str) {
    *DOING.lock().unwrap_or_else(|e| e.into_inner()) = doing;
    INSTALL.call_once(|| {
        // The one place (xtask/clippy.toml disallows it elsewhere).
        #[allow(clippy::disallowed_methods)]
        let _ = ctrlc::set_handler(|| {
            let doing = *DOING.lock().unwrap_or_else(|e| e.into_inner());
            if INTERRUPTED.swap(true, Ordering::SeqCst) {
                eprintln!("interrupted again: still {doing}, please wait");
            } else {
                eprintln!("interrupted: {doing}");
            }
        });
    });
}

/// Whether Ctrl-C or SIGTERM arrived since [`catch`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The test hook: with `FOG_TEST_PAUSE_AT=<phase>`, reaching `phase` writes
/// the phase into the file named by `FOG_TEST_PAUSE_MARKER` (when set), says
/// `paused at <phase> (FOG_TEST_PAUSE_AT)` on stderr and waits until the
/// marker is removed (the test lets the command go on), Ctrl-C or SIGTERM
/// arrives (with [`catch`] installed; without it the signal ends the
/// process), or the process is killed. Any other phase, or no variable:
/// returns at once. It never fails; callers that undo on a signal check
/// [`interrupted`] after it.
pub fn pause_point(phase: &str) {
    if std::env::var("FOG_TEST_PAUSE_AT").as_deref() != Ok(phase) {
        return;
    }
    let marker = std::env::var_os("FOG_TEST_PAUSE_MARKER").map(PathBuf::from);
    if let Some(marker) = &marker {
        if let Err(err) = crate::dotenv::write_atomic(marker, phase.as_bytes(), 0o600) {
            eprintln!("FOG_TEST_PAUSE_MARKER {}: {err:#}", marker.display());
        }
    }
    eprintln!("paused at {phase} (FOG_TEST_PAUSE_AT)");
    while !interrupted() && marker.as_ref().is_none_or(|m| m.exists()) {
        std::thread::sleep(Duration::from_millis(50));
    }
}
