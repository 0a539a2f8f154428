//! `cargo xtask dev` on a machine without debootstrap: the offline images
//! step installs it with apt-get when it runs as root, saying so, or fails
//! with the one command that installs it. The search path hides the real
//! debootstrap; apt-get is a test double that records its arguments and
//! "installs" a debootstrap beside itself, as the real one puts it in /usr/sbin.
//! The end-to-end test runs `cargo xtask dev` itself on an engine without
//! this build's offline images: only apt-get is replaced (the debootstrap
//! "installed" is the real one in /usr/sbin, which PATH hides), and it
//! debootstraps, imports, builds and comes up healthy.

mod common;
mod engine_support;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use xtask::image::debootstrap;
use xtask::process::Runner;

fn bin_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fogeng-deboot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn root_without_debootstrap_installs_it_with_apt_get() {
    let dir = bin_dir("root");
    let log = dir.join("apt-get.log");
    let apt = dir.join("apt-get");
    std::fs::write(
        &apt,
        format!(
            "#!/bin/sh\necho \"DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*\" >> {log}\ncase \"$*\" in *install*debootstrap*) printf '#!/bin/sh\\n' > {dir}/debootstrap; chmod 755 {dir}/debootstrap ;; esac\n",
            log = log.display(),
            dir = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path =
        std::env::join_paths([&dir, &PathBuf::from("/bin"), &PathBuf::from("/usr/bin")]).unwrap();

    let found = debootstrap::ensure(&Runner::default(), Some(&path), true).unwrap();
    assert_eq!(found, dir.join("debootstrap"));
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls,
        "DEBIAN_FRONTEND=noninteractive update -qq\nDEBIAN_FRONTEND=noninteractive install -y -qq --no-install-recommends debootstrap\n"
    );

    // Present now: nothing is installed a second time.
    debootstrap::ensure(&Runner::default(), Some(&path), true).unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), calls);

    // A dry run prints the commands and runs nothing.
    std::fs::remove_file(dir.join("debootstrap")).unwrap();
    let dry = Runner {
        dry_run: true,
        verbose: false,
    };
    debootstrap::ensure(&dry, Some(&path), true).unwrap();
    assert_eq!(std::fs::read_to_string(&log).unwrap(), calls);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_root_or_apt_get_it_names_the_one_command() {
    let dir = bin_dir("user");
    std::fs::write(dir.join("apt-get"), "#!/bin/sh\nexit 99\n").unwrap();
    let path = dir.clone().into_os_string();
    let err = debootstrap::ensure(&Runner::default(), Some(&path), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`sudo apt-get install debootstrap`") && err.contains("cargo xtask dev"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Removes the test's offline images and rootfs cache, also on failure.
struct OfflineRepoGuard {
    repo: String,
    cache: PathBuf,
}

impl Drop for OfflineRepoGuard {
    fn drop(&mut self) {
        let listed = common::docker_output(&[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}}",
            "--filter",
            &format!("reference={}/*", self.repo),
        ]);
        for image in String::from_utf8_lossy(&listed.stdout).lines() {
            common::docker_output(&["rmi", "-f", image]);
        }
        let _ = std::fs::remove_dir_all(&self.cache);
    }
}

#[test]
fn cargo_xtask_dev_without_debootstrap_installs_it_builds_the_offline_images_and_comes_up() {
    if !common::engine_or_skip(
        "cargo_xtask_dev_without_debootstrap_installs_it_builds_the_offline_images_and_comes_up",
    ) {
        return;
    }
    let real = PathBuf::from("/usr/sbin/debootstrap");
    assert!(
        real.is_file(),
        "this test runs the real debootstrap from /usr/sbin: `apt-get install debootstrap` (scripts/ci-setup.sh does)"
    );
    // An offline repository of this test's own: its images and rootfs cache
    // are built from nothing (debootstrap included) and removed afterwards.
    let repo = format!("fogdeb-{}", std::process::id());
    let _guard = OfflineRepoGuard {
        cache: xtask::project_root()
            .join("target/offline-rootfs")
            .join(xtask::image::rootfs_key_for(&repo)),
        repo: repo.clone(),
    };
    let dir = bin_dir("dev");
    let log = dir.join("apt-get.log");
    let apt = dir.join("apt-get");
    // Only apt-get is replaced: it records its calls; the debootstrap it
    // "installs" is the real one in /usr/sbin, where apt-get puts it.
    std::fs::write(
        &apt,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
    // cargo's own directory (the images step asks `cargo metadata`), then
    // the usual bin directories: no sbin, so no debootstrap.
    let cargo_dir = PathBuf::from(env!("CARGO")).parent().unwrap().to_path_buf();
    let path = std::env::join_paths([
        &dir,
        &cargo_dir,
        &PathBuf::from("/usr/local/bin"),
        &PathBuf::from("/usr/bin"),
        &PathBuf::from("/bin"),
    ])
    .unwrap();
    let path = path.to_str().unwrap();

    let stack = engine_support::Stack::new("deboot", 8, None, &[]);
    let out = stack.xtask_with(
        &["dev", "--timeout", "300"],
        &[
            ("FOG_OFFLINE", "1"),
            ("FOG_OFFLINE_REPO", &repo),
            ("PATH", path),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "dev failed: {err}");
    assert!(
        err.contains("debootstrap is missing: installing it with `apt-get install debootstrap`"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "update -qq\ninstall -y -qq --no-install-recommends debootstrap\n"
    );
    // Debootstrap ran: the cache holds a rootfs, and the base and service
    // images of this repository exist.
    assert!(
        _guard.cache.join("rootfs/etc/debian_version").is_file(),
        "no rootfs in {}",
        _guard.cache.display()
    );
    let images = String::from_utf8_lossy(
        &common::docker_output(&[
            "images",
            "--format",
            "{{.Repository}}",
            "--filter",
            &format!("reference={repo}/*"),
        ])
        .stdout,
    )
    .into_owned();
    for name in ["base", "postgres", "prometheus"] {
        assert!(
            images.lines().any(|l| l == format!("{repo}/{name}")),
            "{repo}/{name} not built: {images}"
        );
    }
    let env = std::fs::read_to_string(&stack.env_file).unwrap();
    assert!(
        env.contains(&format!("POSTGRES_IMAGE={repo}/postgres:")),
        "the env file points at this build's images: {env}"
    );
    let ps = stack.xtask(&["ps", "--format", "json"]);
    let ps: Vec<serde_json::Value> = serde_json::from_slice(&ps.stdout).unwrap();
    let mut healthy: Vec<&str> = ps
        .iter()
        .filter(|c| c["health"] == "healthy")
        .filter_map(|c| c["service"].as_str())
        .collect();
    healthy.sort();
    assert_eq!(healthy, ["postgres", "prometheus"]);

    let out = stack.xtask(&["down", "--volumes", "--yes"]);
    assert!(out.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
