//! E2E: `cargo xtask images build mixnode` against the real engine: the image
//! carries the OCI labels (the revision label equal to `git rev-parse HEAD`), both tags, user 10001, the healthcheck and the
//! entrypoint; /data is owned by 10001; a build untags this checkout's stale
//! sha tags and keeps another checkout's; a second build is skipped because the
//! inputs hash matches; and glibc name resolution (getaddrinfo through
//! /etc/nsswitch.conf and Docker's DNS) works inside the `FROM scratch` image
//! on a user-defined network in 10.232.3.0/24. `fog-compute/mixnode` is meant
//! to persist as a cache, so it is not removed.

mod common;

use std::{process::Command, sync::OnceLock};

use common::*;

const IMAGE: &str = "fog-compute/mixnode:0.1.0";

fn inspect(format: &str) -> String {
    docker(&["image", "inspect", "--format", format, IMAGE])
}

/// Build the image, then build again and require the second run to be
/// skipped by the inputs hash. Once per test binary (the tests share it).
fn build_twice() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = temp_dir("imgs-build");
        let env_file = dir.join(".env");
        // Two stale sha tags: one of this checkout (its label says so), which
        // the build untags, and one of another checkout (a clone releasing at
        // the same time), which it must keep.
        let root = crate_dir().parent().unwrap().display().to_string();
        let stale = |tag: &str, checkout: &str| {
            let image = format!("fog-compute/mixnode:{tag}");
            let mut child = Command::new("docker")
                .args(["build", "-q", "-t", &image, "--label"])
                .arg(format!("dev.fog-compute.checkout={checkout}"))
                .arg("-")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            use std::io::Write;
            let dockerfile = format!("FROM scratch\nLABEL dev.fog-compute.test=stale-{tag}\n");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(dockerfile.as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success(), "docker build {image}");
            image
        };
        let ours = stale("f0f0f0a", &root);
        let theirs = stale("f0f0f0b", "/elsewhere/another-clone");
        // `--force`: the revision label records the commit the image was
        // built at, and an up-to-date image keeps the label of its first build.
        let first = xtask_env(
            &["images", "build", "mixnode", "--quiet", "--force"],
            &env_file,
        );
        assert!(first.status.success(), "{}", text(&first));
        let kept = docker_ok(&["image", "inspect", &theirs]);
        let untagged = !docker_ok(&["image", "inspect", &ours]);
        docker_output(&["rmi", &ours]);
        docker_output(&["rmi", &theirs]);
        assert!(
            untagged,
            "{ours}, a stale sha tag of this checkout, is still there"
        );
        assert!(kept, "{theirs}, another checkout's sha tag, was untagged");
        let second = xtask_env(&["images", "build", "mixnode", "--quiet"], &env_file);
        assert!(second.status.success(), "{}", text(&second));
        let stdout = String::from_utf8_lossy(&second.stdout);
        assert!(
            stdout.contains(&format!("up to date: {IMAGE}")),
            "second build was not skipped:\n{}",
            text(&second)
        );
        eprintln!(
            "first: {}second: {}",
            String::from_utf8_lossy(&first.stdout),
            stdout
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

#[test]
fn mixnode_image_build_labels_user_healthcheck_and_cache() {
    let Some(mut guard) = engine_guard("mixnode_image_build_labels_user_healthcheck_and_cache")
    else {
        return;
    };
    build_twice();

    assert_eq!(inspect("{{.Config.User}}"), "10001:10001");
    assert_eq!(
        inspect("{{json .Config.Entrypoint}}"),
        r#"["/usr/local/bin/mixnode"]"#
    );
    assert_eq!(
        inspect("{{json .Config.Healthcheck.Test}}"),
        r#"["CMD","/usr/local/bin/mixnode","healthcheck"]"#
    );
    let label = |name: &str| inspect(&format!("{{{{index .Config.Labels \"{name}\"}}}}"));
    assert_eq!(label("org.opencontainers.image.version"), "0.1.0");
    let head = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let revision = label("org.opencontainers.image.revision");
    assert_eq!(
        revision,
        head.trim(),
        "the revision label is this checkout's HEAD"
    );
    assert!(label("org.opencontainers.image.source").starts_with("https://"));
    assert!(label("org.opencontainers.image.created").starts_with("20"));
    let inputs = label("dev.fog-compute.inputs-sha256");
    assert!(
        inputs.len() == 64 && inputs.chars().all(|c| c.is_ascii_hexdigit()),
        "{inputs}"
    );
    // The image built or confirmed from this checkout is also tagged with its short sha.
    let sha_tag = format!("fog-compute/mixnode:{}", &head.trim()[..7]);
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Id}}", &sha_tag]),
        inspect("{{.Id}}"),
        "{sha_tag} is not the same image"
    );

    // /data and /config belong to 10001; the binaries and libraries are there.
    let container = guard.container("imgs-mix-fs");
    docker(&["create", "--name", &container, IMAGE]);
    for (path, owner) in [("/data", "10001/10001"), ("/config", "10001/10001")] {
        let listing = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "docker cp {container}:{path} - | tar -tvf - --numeric-owner | head -1"
            ))
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains(owner), "{path} owner: {listing}");
    }
    let files = Command::new("sh")
        .arg("-c")
        .arg(format!("docker export {container} | tar -tf -"))
        .output()
        .unwrap();
    let files = String::from_utf8_lossy(&files.stdout);
    for needed in [
        "usr/local/bin/mixnode",
        "usr/local/bin/loadgen",
        "lib64/ld-linux-x86-64.so.2",
        "etc/nsswitch.conf",
        "etc/passwd",
    ] {
        assert!(
            files.lines().any(|l| l == needed),
            "{needed} missing from the image:\n{files}"
        );
    }
    assert!(
        files.lines().any(|l| l.ends_with("/libc.so.6")),
        "libc missing:\n{files}"
    );
}

#[test]
fn mixnode_image_resolves_container_names() {
    let Some(mut guard) = engine_guard("mixnode_image_resolves_container_names") else {
        return;
    };
    build_twice();
    let network = guard.network("imgs-dns-net", "10.232.3.0/24");
    // Host getent needs only libc, which the image ships: it exercises the
    // image's loader, libc, nsswitch.conf and Docker's embedded DNS.
    let alias = unique("fogpeer");
    let container = guard.container("imgs-dns");
    let out = docker(&[
        "run",
        "--name",
        &container,
        "--network",
        &network,
        "--network-alias",
        &alias,
        "-v",
        "/usr/bin/getent:/usr/local/bin/getent:ro",
        "--entrypoint",
        "/usr/local/bin/getent",
        IMAGE,
        "ahosts",
        &alias,
    ]);
    assert!(
        out.lines().any(|l| l.starts_with("10.232.3.")),
        "getent ahosts {alias}: {out}"
    );
    let user = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "/usr/bin/getent:/usr/local/bin/getent:ro",
        "--entrypoint",
        "/usr/local/bin/getent",
        IMAGE,
        "passwd",
        "10001",
    ]);
    assert!(user.starts_with("fog:x:10001:10001"), "{user}");
}

/// The image's own HEALTHCHECK (`mixnode healthcheck`) turns healthy: the
/// binary starts as 10001 with its libraries, writes its key under /data and
/// serves /health.
#[test]
fn mixnode_container_becomes_healthy() {
    let Some(mut guard) = engine_guard("mixnode_container_becomes_healthy") else {
        return;
    };
    build_twice();
    let network = guard.network("imgs-mix-net", "10.232.6.0/24");
    let name = guard.container("imgs-mix");
    let volume = format!("{name}-data");
    guard.volumes.push(volume.clone());
    let advertise = format!("MIX_ADVERTISE_ADDR={name}:1789");
    let mount = format!("{volume}:/data");
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &network,
        "-v",
        &mount,
        "-e",
        "NODE_TYPE=entry",
        "-e",
        &advertise,
        "--health-interval",
        "1s",
        IMAGE,
    ]);
    wait_healthy(&name, std::time::Duration::from_secs(180));
    let status = docker(&["inspect", "--format", "{{.State.Pid}}", &name]);
    let uid = std::fs::read_to_string(format!("/proc/{status}/status")).unwrap();
    let uid = uid
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string();
    assert_eq!(uid.split_whitespace().nth(1), Some("10001"), "{uid}");
}
