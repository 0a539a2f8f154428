//! E2E: `images save` / `images load` round trip against the real engine with
//! a tiny uniquely tagged test image, and rejection of a corrupt bundle: the
//! error names the file and nothing is loaded.

mod common;

use std::path::Path;

use common::*;

/// Build a two-file `FROM scratch` image with a unique tag.
fn test_image(guard: &mut Cleanup) -> String {
    let context = guard.temp_dir("imgs-bundle-ctx");
    std::fs::write(
        context.join("payload.txt"),
        format!("bundle payload {}\n", unique("p")),
    )
    .unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM scratch\nCOPY payload.txt /payload.txt\nCMD [\"/none\"]\n",
    )
    .unwrap();
    let image = format!("{}:1", unique("imgs-bundle-test"));
    guard.images.push(image.clone());
    docker(&[
        "build",
        "--quiet",
        "-t",
        &image,
        &context.display().to_string(),
    ]);
    image
}

fn image_id(image: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", image])
}

fn round_trip(guard: &mut Cleanup, output: &Path) {
    let image = test_image(guard);
    let id = image_id(&image);
    let env_file = output.with_extension("env");
    let saved = xtask_env(
        &[
            "images",
            "save",
            &image,
            "-o",
            &output.display().to_string(),
        ],
        &env_file,
    );
    assert!(saved.status.success(), "{}", text(&saved));
    assert!(output.exists());
    let again = xtask_env(
        &[
            "images",
            "save",
            &image,
            "-o",
            &output.display().to_string(),
        ],
        &env_file,
    );
    assert_eq!(
        again.status.code(),
        Some(2),
        "overwriting without --force: {}",
        text(&again)
    );

    docker(&["rmi", &image]);
    assert!(!docker_ok(&["image", "inspect", &image]));
    let loaded = xtask_env(
        &["images", "load", &output.display().to_string()],
        &env_file,
    );
    assert!(loaded.status.success(), "{}", text(&loaded));
    assert_eq!(
        image_id(&image),
        id,
        "loaded image differs from the saved one"
    );
}

#[test]
fn bundle_directory_round_trip_and_corruption() {
    let Some(mut guard) = engine_guard("bundle_directory_round_trip_and_corruption") else {
        return;
    };
    let dir = guard.temp_dir("imgs-bundle");
    let bundle = dir.join("bundle");
    round_trip(&mut guard, &bundle);

    let sums = std::fs::read_to_string(bundle.join("SHA256SUMS")).unwrap();
    assert_eq!(sums.lines().count(), 2, "{sums}");
    assert!(sums.lines().any(|l| l.ends_with("  manifest.json")));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).unwrap())
            .unwrap();
    let entry = &manifest["files"][0];
    let file = entry["file"].as_str().unwrap().to_string();
    let image = entry["images"][0].as_str().unwrap().to_string();
    guard.images.push(image.clone());
    assert!(file.ends_with(".tar.gz"));
    assert!(sums.contains(entry["sha256"].as_str().unwrap()));

    // Flip one byte in the middle of the image file: load must refuse, naming it.
    let path = bundle.join(&file);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    docker(&["rmi", &image]);
    let out = xtask_env(
        &["images", "load", &bundle.display().to_string()],
        &dir.join(".env"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&file) && stderr.contains("does not match"),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was loaded"), "{stderr}");
    assert!(
        !docker_ok(&["image", "inspect", &image]),
        "a corrupt bundle was loaded"
    );
}

#[test]
fn bundle_tar_round_trip() {
    let Some(mut guard) = engine_guard("bundle_tar_round_trip") else {
        return;
    };
    let dir = guard.temp_dir("imgs-bundle-tar");
    round_trip(&mut guard, &dir.join("bundle.tar"));
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn load_of_a_missing_bundle_is_a_usage_error() {
    let mut guard = Cleanup::default();
    let dir = guard.temp_dir("imgs-bundle-missing");
    let out = xtask_env(
        &["images", "load", &dir.join("nope").display().to_string()],
        &dir.join(".env"),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}
