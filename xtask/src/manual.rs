//! Shell completions (bash, zsh, fish, from `clap_complete`) and man pages
//! (`clap_mangen`) generated from a `clap::Command`: the one CLI definition,
//! `cli::Cli`, which the dispatcher hands to `completions` and `release dist`
//! (so neither imports `cli`, which imports them), so they never drift from
//! `--help`.

use anyhow::Result;
use clap::ValueEnum;

/// The program name completions and man pages are written for.
pub const BIN: &str = "xtask";

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

/// The completion script of `cli` for `shell` (`Man` gives the top-level man page).
pub fn script(cli: &clap::Command, shell: Target) -> Vec<u8> {
    use clap_complete::Shell as S;
    let generator = match shell {
        Target::Bash => S::Bash,
        Target::Zsh => S::Zsh,
        Target::Fish => S::Fish,
        Target::Man => {
            return man_pages(cli)
                .map(|mut p| p.swap_remove(0).1)
                .unwrap_or_default()
        }
    };
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut cli.clone(), BIN, &mut out);
    out
}

/// `xtask.1` and one `xtask-<command>.1` per subcommand of `cli`, as (file name, roff).
pub fn man_pages(cli: &clap::Command) -> Result<Vec<(String, Vec<u8>)>> {
    let cmd = cli.clone().name(BIN).bin_name(BIN);
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
