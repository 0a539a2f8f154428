//! Small queries against the Docker engine shared by the image commands:
//! whether an image exists, its labels, its size; and a `producer | consumer`
//! pipeline (e.g. `tar -c | docker import -`) with a byte progress bar.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
};

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use xshell::Shell;

use crate::process::Runner;
use crate::process::{Cmd, Io};

/// Whether `image` is in the local engine.
pub fn image_exists(_sh: &Shell, runner: &Runner, image: &str) -> bool {
    crate::docker::image_exists(runner, image)
}

/// The id (`sha256:...`) of a local image.
pub fn image_id(_sh: &Shell, runner: &Runner, image: &str) -> Option<String> {
    crate::docker::image_id(runner, image)
}

/// The labels of a local image; `None` when the image is not there.
pub fn image_labels(_sh: &Shell, runner: &Runner, image: &str) -> Option<BTreeMap<String, String>> {
    let json = crate::docker::inspect_image(runner, image, "{{json .Config.Labels}}")?;
    serde_json::from_str::<Option<BTreeMap<String, String>>>(&json).ok()?
}

/// The size of a local image in bytes.
pub fn image_size(_sh: &Shell, runner: &Runner, image: &str) -> Option<u64> {
    crate::docker::image_size(runner, image)
}

/// A spinner or byte bar that is hidden unless `progress` is set.
pub fn bar(progress: bool, total: Option<u64>, message: String) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {elapsed}")
                .expect("valid template")
                .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"),
        ),
    };
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// The exact command line, as `--dry-run` prints it.
pub fn render(cmd: &Cmd) -> String {
    cmd.line()
}

/// Run `producer | consumer`, counting bytes on `bar`. Under `--dry-run` print
/// the pipeline instead. Fails naming the side that failed.
pub fn pipe(
    runner: &Runner,
    mut producer: Cmd,
    mut consumer: Cmd,
    bar: &ProgressBar,
) -> Result<String> {
    let line = format!("{} | {}", render(&producer), render(&consumer));
    if runner.dry_run {
        println!("{line}");
        return Ok(String::new());
    }
    let mut source = runner.spawn(producer.stdout(Io::Piped))?;
    let mut sink = runner.spawn(consumer.stdin(Io::Piped).stdout(Io::Piped))?;
    let mut input = source.stdout.take().expect("piped");
    let mut output = sink.stdin.take().expect("piped");
    let mut stdout = sink.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let mut buf = vec![0u8; 1 << 20];
    let copied: std::io::Result<()> = (|| loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        output.write_all(&buf[..n])?;
        bar.inc(n as u64);
    })();
    drop(output);
    let source_status = source.wait()?;
    let sink_status = sink.wait()?;
    let text = reader.join().expect("reader thread").unwrap_or_default();
    if !source_status.success() {
        bail!("`{}` failed ({source_status})", render(&producer));
    }
    if !sink_status.success() {
        bail!("`{}` failed ({sink_status})", render(&consumer));
    }
    copied.with_context(|| format!("piping into `{}`", render(&consumer)))?;
    Ok(text.trim().to_string())
}

/// Run `docker <args>` (a build) with its output captured: under `--dry-run`
/// print the exact command; on failure show the last lines of its output.
/// Returns stdout (the image id for `docker build --quiet`).
pub fn run_quiet(runner: &Runner, args: &[String]) -> Result<String> {
    let mut command = Cmd::new("docker");
    command.args(args);
    let line = render(&command);
    if runner.dry_run {
        println!("{line}");
        return Ok(String::new());
    }
    let output = runner
        .output(&mut command)
        .with_context(|| format!("starting `{line}`"))?;
    if !output.status.success() {
        let text = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !is_builder_notice(l))
            .collect();
        let tail = last[last.len().saturating_sub(12)..].join("\n");
        bail!("`{line}` failed ({}):\n{tail}", output.status);
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The legacy builder's deprecation banner, which says nothing about the build.
fn is_builder_notice(line: &str) -> bool {
    [
        "DEPRECATED: The legacy builder",
        "Install the buildx component",
        "https://docs.docker.com/go/buildx/",
        "BuildKit:",
    ]
    .iter()
    .any(|n| line.contains(n))
}
