//! `cargo xtask completions SHELL`: shell completions (bash, zsh, fish, from
//! `clap_complete`) and man pages (`clap_mangen`) generated from the one CLI
//! definition, [`crate::cli::Cli`], so they never drift from `--help`. The
//! release archive ships the same output (see `release dist`): [`script`] and
//! [`man_pages`] are what both call.

use anyhow::Result;
use clap::{CommandFactory, ValueEnum};
use xshell::Shell;

use crate::{cli::Cli, Global};

/// The program name completions and man pages are written for.
pub const BIN: &str = "xtask";

/// Print a completion script or the man page to stdout.
///
/// Examples:
///   cargo xtask completions bash > ~/.local/share/bash-completion/completions/xtask
///   cargo xtask completions zsh  > ~/.zfunc/_xtask
///   cargo xtask completions fish > ~/.config/fish/completions/xtask.fish
///   cargo xtask completions man | man -l -
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Cmd {
    /// What to generate.
    shell: Target,
}

/// A completion script's shell, or `man` for the top-level man page.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Target {
    Bash,
    Zsh,
    Fish,
    Man,
}

impl Target {
    /// The shells the release archive ships scripts for, with their file names.
    pub const SHELLS: [(Target, &'static str); 3] = [
        (Target::Bash, "xtask.bash"),
        (Target::Zsh, "_xtask"),
        (Target::Fish, "xtask.fish"),
    ];
}

impl Cmd {
    pub fn run(self, _sh: &Shell, _global: &Global) -> Result<()> {
        use std::io::Write;
        std::io::stdout().write_all(&script(self.shell))?;
        Ok(())
    }
}

/// The completion script for `shell` (`Man` gives the top-level man page).
pub fn script(shell: Target) -> Vec<u8> {
    use clap_complete::Shell as S;
    let generator = match shell {
        Target::Bash => S::Bash,
        Target::Zsh => S::Zsh,
        Target::Fish => S::Fish,
        Target::Man => {
            return man_pages()
                .map(|mut p| p.swap_remove(0).1)
                .unwrap_or_default()
        }
    };
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut Cli::command(), BIN, &mut out);
    out
}

/// `xtask.1` and one `xtask-<command>.1` per subcommand, as (file name, roff).
pub fn man_pages() -> Result<Vec<(String, Vec<u8>)>> {
    let cmd = Cli::command().name(BIN).bin_name(BIN);
    let mut pages = Vec::new();
    let mut top = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut top)?;
    pages.push((format!("{BIN}.1"), top));
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are `&'static str` without its `string` feature; a few
        // short page names leaked once per run cost nothing.
        let name: &'static str = Box::leak(format!("{BIN}-{}", sub.get_name()).into_boxed_str());
        let mut page = Vec::new();
        clap_mangen::Man::new(sub.clone().name(name)).render(&mut page)?;
        pages.push((format!("{name}.1"), page));
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_completes_the_subcommands() {
        for (shell, _) in Target::SHELLS {
            let text = String::from_utf8(script(shell)).unwrap();
            for sub in ["images", "release", "completions"] {
                assert!(text.contains(sub), "{shell:?} script lacks `{sub}`");
            }
        }
    }

    #[test]
    fn man_pages_cover_each_subcommand() {
        let pages = man_pages().unwrap();
        assert_eq!(pages[0].0, "xtask.1");
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"xtask-release.1"), "{names:?}");
        let top = String::from_utf8_lossy(&pages[0].1);
        assert!(top.contains(".TH xtask"), "{top}");
    }
}
