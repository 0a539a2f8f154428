//! What commands print: [`write_stdout`], which ends quietly on a closed
//! pipe (`| head`), and the `--format table|json` choice ([`Format`]) of
//! the data commands' listings.

use anyhow::Result;

/// Output format of the data commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Write `text` to stdout; a closed pipe (`| head`) ends output quietly.
pub fn write_stdout(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
