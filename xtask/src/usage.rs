//! Usage errors: bad flags, unknown environments, missing input files. `main`
//! maps any error whose root is a [`UsageError`] to exit code 2, so callers
//! only need `return Err(UsageError::new("...").into())` or `usage_bail!`.

use std::fmt;

/// An error the user can fix by changing the command line. Exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl UsageError {
    pub fn new(msg: impl Into<String>) -> Self {
        UsageError(msg.into())
    }
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `usage_bail!("unknown environment `{name}`; try `cargo xtask env list`")`
#[macro_export]
macro_rules! usage_bail {
    ($($arg:tt)*) => {
        return Err($crate::UsageError::new(format!($($arg)*)).into())
    };
}
