//! Ctrl-C and SIGTERM for the commands that must put things back before they
//! exit (restore, adopt, the live report): one process-wide handler sets a
//! flag and says once what the command is doing about it; the command checks
//! [`interrupted`] between its steps, finishes the current one and undoes.
//! A second signal only repeats that it is still working. The ctrlc crate
//! allows one handler per process, so this is the only place that installs it.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Mutex, Once,
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
