//! `cargo xtask dev` on a machine without debootstrap: the offline images
//! step installs it with apt-get when it runs as root, saying so, or fails
//! with the one command that installs it. The search path hides the real
//! debootstrap; apt-get is a test double that records its arguments and
//! "installs" a debootstrap beside itself, as the real one puts it in /usr/sbin.

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
