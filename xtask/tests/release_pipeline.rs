//! The whole release pipeline end to end on a clean clone of HEAD with a
//! throwaway minisign key: `release plan && dist && images && sign && verify`,
//! then the operator's own checks (`minisign -V`, `sha256sum -c`), a tampered
//! `SHA256SUMS` refused; `dist` again in a second clone in another folder
//! gives a byte-identical archive and `SHA256SUMS` (reproducibility); and
//! `publish` to a real registry (Debian's `docker-registry`, started here on
//! 127.0.0.1:515xx), the local tags removed, the image pulled back by digest
//! and run. One test, because the steps share two release builds; the clones
//! share a target dir (`target/release-test`) and stay identical because
//! every path prefix is remapped. Prints each step's time and artifact sizes.

mod common;
mod release_support;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{docker, docker_ok, engine_guard, text};
use release_support::*;

/// `docker-registry serve` on 127.0.0.1:`port` with temp storage; killed on drop.
struct Registry(Child);

impl Registry {
    fn start(dir: &Path, port: u16) -> Registry {
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = Registry(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run one step, print its time, return stdout.
fn step(name: &str, root: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let started = Instant::now();
    let out = xtask_ok(root, args, env);
    eprintln!("step {name}: {:.1}s", started.elapsed().as_secs_f64());
    out
}

fn sizes(dir: &Path) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    files.sort_by_key(|e| e.file_name());
    for f in files {
        eprintln!(
            "artifact {:<52} {:>10} bytes",
            f.file_name().to_string_lossy(),
            f.metadata().unwrap().len()
        );
    }
}

#[test]
fn plan_dist_images_sign_verify_reproduce_and_publish() {
    let Some(mut cleanup) = engine_guard("release_pipeline") else {
        return;
    };
    for (tool, arg) in [
        ("minisign", "-v"),
        ("docker-registry", "--version"),
        ("sha256sum", "--version"),
    ] {
        if !tool_or_skip("release_pipeline", tool, arg) {
            return;
        }
    }
    let version = format!("0.1.0-fogrel.{}", std::process::id());
    let a = clone_head(&mut cleanup, &repo_root(), "fogrel-a");
    commit_changelog_section(&a, &version);
    let revision = git(&a, &["rev-parse", "HEAD"]);
    let short = &revision[..7];
    for repo in ["mixnode", "migrate"] {
        for tag in [version.as_str(), short] {
            cleanup.images.push(format!("fog-compute/{repo}:{tag}"));
        }
    }

    let keys = cleanup.temp_dir("fogrel-keys");
    let (public, secret) = (keys.join("pub"), keys.join("sec"));
    let made = Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret)
        .output()
        .unwrap();
    assert!(made.status.success(), "minisign -G: {}", text(&made));
    let secret_text = std::fs::read_to_string(&secret).unwrap();
    let public_s = public.display().to_string();
    let secret_s = secret.display().to_string();

    let out_a = cleanup.temp_dir("fogrel-out-a");
    let out_s = out_a.display().to_string();
    let common_args = ["--version", version.as_str(), "--out", out_s.as_str()];
    let with = |step: &str| -> Vec<String> {
        ["release", step]
            .iter()
            .chain(common_args.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let run = |name: &str, args: Vec<String>, env: &[(&str, &str)]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        step(name, &a, &args, env)
    };

    let plan = run(
        "plan",
        with("plan"),
        &[("FOG_MINISIGN_KEY_FILE", &secret_s)],
    );
    assert!(
        plan.contains(&format!("tag      fog-compute/mixnode:{version}")),
        "{plan}"
    );
    run("dist", with("dist"), &[]);
    let sums_after_dist = std::fs::read(out_a.join("SHA256SUMS")).unwrap();
    let archive = format!("fog-compute-{version}-");
    let archive_name = std::fs::read_dir(&out_a)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with(&archive) && n.ends_with(".tar.gz"))
        .expect("dist wrote the archive");
    let archive_a = std::fs::read(out_a.join(&archive_name)).unwrap();

    let mut images_args = with("images");
    images_args.push("--quiet".into());
    run("images", images_args, &[]);
    let labels = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &format!("fog-compute/mixnode:{version}"),
    ]);
    let labels: serde_json::Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["org.opencontainers.image.version"], version.as_str());
    assert_eq!(
        labels["org.opencontainers.image.revision"],
        revision.as_str()
    );
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    let epoch: u64 = git(&a, &["log", "-1", "--format=%ct"]).parse().unwrap();
    let created = labels["org.opencontainers.image.created"].as_str().unwrap();
    assert_eq!(
        created,
        xtask::clock::rfc3339(epoch),
        "created is the commit time"
    );
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_a.join("images.lock")).unwrap()).unwrap();
    let mixnode_image = format!("fog-compute/mixnode:{version}");
    let mixnode = lock["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["image"] == mixnode_image.as_str())
        .expect("images.lock pins the mixnode")
        .clone();
    assert!(mixnode["id"].as_str().unwrap().starts_with("sha256:"));

    run("sign", with("sign"), &[("FOG_MINISIGN_KEY", &secret_text)]);
    let verify: Vec<String> = ["release", "verify", &out_s, "--pubkey", &public_s]
        .map(String::from)
        .to_vec();
    run("verify", verify.clone(), &[]);
    sizes(&out_a);

    // The operator's checks, without our tool.
    let sums = std::fs::read_to_string(out_a.join("SHA256SUMS")).unwrap();
    for listed in [
        archive_name.as_str(),
        "images.lock",
        &format!("fog-compute-{version}-images.tar"),
        &format!("fog-compute-{version}.cdx.json"),
    ] {
        assert!(
            sums.contains(&format!("  {listed}\n")),
            "SHA256SUMS lacks {listed}:\n{sums}"
        );
    }
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg("SHA256SUMS")
        .current_dir(&out_a)
        .output()
        .unwrap();
    assert!(check.status.success(), "sha256sum -c: {}", text(&check));
    let check = Command::new("minisign")
        .args(["-V", "-p", &public_s, "-m", "SHA256SUMS"])
        .current_dir(&out_a)
        .output()
        .unwrap();
    assert!(check.status.success(), "minisign -V: {}", text(&check));
    let sbom: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_a.join(format!("fog-compute-{version}.cdx.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    let names: Vec<&str> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for shipped in ["tokio", "aws-lc-rs", "tokio-postgres"] {
        assert!(names.contains(&shipped), "SBOM lacks {shipped}: {names:?}");
    }
    assert!(
        !names.contains(&"tempfile"),
        "dev-dependencies are not shipped: {names:?}"
    );

    // A modified SHA256SUMS no longer verifies.
    let good = std::fs::read(out_a.join("SHA256SUMS")).unwrap();
    std::fs::write(out_a.join("SHA256SUMS"), [good.as_slice(), b"\n"].concat()).unwrap();
    let verify_args: Vec<&str> = verify.iter().map(String::as_str).collect();
    let err = xtask_err(&a, &verify_args, &[]);
    assert!(err.contains("the signature does not verify"), "{err}");
    std::fs::write(out_a.join("SHA256SUMS"), &good).unwrap();

    // Reproducible: a second checkout in another folder, same bytes.
    let b = clone_head(&mut cleanup, &a, "fogrel-b");
    assert_ne!(a, b);
    let out_b = cleanup.temp_dir("fogrel-out-b");
    let out_b_s = out_b.display().to_string();
    step(
        "dist (second clone)",
        &b,
        &["release", "dist", "--version", &version, "--out", &out_b_s],
        &[],
    );
    let archive_b = std::fs::read(out_b.join(&archive_name)).unwrap();
    assert!(
        archive_a == archive_b,
        "{archive_name} differs between {} and {}",
        a.display(),
        b.display()
    );
    assert_eq!(
        String::from_utf8_lossy(&std::fs::read(out_b.join("SHA256SUMS")).unwrap()),
        String::from_utf8_lossy(&sums_after_dist),
        "SHA256SUMS differs between the two checkouts"
    );
    let listing = Command::new("tar")
        .args(["tzvf", &archive_name])
        .current_dir(&out_b)
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", text(&listing));
    assert!(
        !String::from_utf8_lossy(&listing.stdout)
            .lines()
            .any(|l| !l.contains(" root/root ")),
        "uid/gid are not root"
    );

    // Publish to a real registry, then pull back by digest into a clean state and run.
    let port = free_port();
    let registry_dir = cleanup.temp_dir("fogrel-registry");
    let _registry = Registry::start(&registry_dir, port);
    let registry = format!("127.0.0.1:{port}");
    let mut publish = with("publish");
    publish.extend(["--registry".to_string(), registry.clone()]);
    run("publish", publish, &[]);
    let published: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_a.join("images.published.json")).unwrap(),
    )
    .unwrap();
    let pushed = published["images"].as_array().unwrap();
    for p in pushed {
        cleanup
            .images
            .push(p["pinned"].as_str().unwrap().to_string());
    }
    let pinned = pushed
        .iter()
        .find(|p| p["image"] == mixnode_image.as_str())
        .expect("the mixnode was published")["pinned"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        pinned.starts_with(&format!("{registry}/fog-compute/mixnode@sha256:")),
        "{pinned}"
    );
    cleanup.images.push(pinned.clone());
    let id = mixnode["id"].as_str().unwrap().to_string();
    // The sha tag may be gone already: `images build` elsewhere untags
    // stale `<7 hex>` tags. Either way both must be gone before the pull.
    for tag in [version.as_str(), short] {
        common::docker_output(&["rmi", &format!("fog-compute/mixnode:{tag}")]);
    }
    assert!(
        !docker_ok(&["image", "inspect", &id]),
        "the image is still in the engine"
    );
    docker(&["pull", "--quiet", &pinned]);
    let ran = docker(&["run", "--rm", "--network", "none", &pinned, "--version"]);
    assert!(ran.contains("0.1.0"), "mixnode --version printed {ran:?}");
    assert_eq!(
        docker(&["image", "inspect", "--format", "{{.Id}}", &pinned]),
        id,
        "pulled image differs from the released one"
    );
}
