//! Docker inspection shared by the commands: the one place that writes
//! `docker image inspect` (whether an image is in the engine, its id,
//! labels, size or registry digests), run as a probe through
//! [`crate::process::Runner`] so it answers under `--dry-run` too and is
//! traced under `-v`.

use crate::process::{Cmd, Runner};

/// `docker image inspect --format FORMAT IMAGE`; `None` when the image is
/// not in the engine (or the engine cannot answer).
pub fn inspect_image(runner: &Runner, image: &str, format: &str) -> Option<String> {
    let mut cmd = Cmd::new("docker");
    cmd.args(["image", "inspect", "--format", format, image]);
    runner.probe(&mut cmd)
}

/// The id (`sha256:...`) of a local image.
pub fn image_id(runner: &Runner, image: &str) -> Option<String> {
    inspect_image(runner, image, "{{.Id}}")
}

/// Whether `image` is in the local engine.
pub fn image_exists(runner: &Runner, image: &str) -> bool {
    image_id(runner, image).is_some()
}

/// The size of a local image in bytes.
pub fn image_size(runner: &Runner, image: &str) -> Option<u64> {
    inspect_image(runner, image, "{{.Size}}")?.parse().ok()
}
