//! The one yes/no question of the commands that change data without
//! `--yes` (restore, adopt, backup cleanup): asked on the terminal, `[y/N]`,
//! anything but yes is no; without a terminal it is a usage error (exit 2)
//! that names `--yes` and says what was left alone.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::Result;

/// Ask `question`; whether the answer was yes. No terminal: exit 2 with
/// `question`, the way to confirm and `untouched` (e.g. "nothing was touched").
pub fn ask(question: &str, untouched: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        crate::usage_bail!("{question} Pass --yes to confirm (no terminal to ask on); {untouched}");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(is_yes(&answer))
}

/// [`ask`], and anything but yes ends `command` with exit 2: "COMMAND
/// cancelled: nothing was touched".
pub fn or_cancel(command: &str, question: &str) -> Result<()> {
    if !ask(question, "nothing was touched")? {
        crate::usage_bail!("{command} cancelled: nothing was touched");
    }
    Ok(())
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim(), "y" | "Y" | "yes")
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_yes_is_yes() {
        for yes in ["y\n", "Y", " yes \n"] {
            assert!(super::is_yes(yes), "{yes:?}");
        }
        for no in ["", "\n", "n", "no", "YES", "yes please", "ja"] {
            assert!(!super::is_yes(no), "{no:?}");
        }
    }
}
