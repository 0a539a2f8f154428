//! The skip helpers themselves: each one skips (returns "no") outside CI and
//! fails the test under `CI=true` when what it guards is missing, so a CI
//! machine without Docker, Compose or a tool can never pass by skipping.
//! One test in its own binary: it changes this process's environment
//! (`CI`, `DOCKER_HOST`, `PATH`, `FOG_COMPOSE`) in sequence, and no other
//! test runs beside it.

mod common;
mod release_support;

use std::panic::{catch_unwind, AssertUnwindSafe};

/// Run `guard` with `CI` set to `ci`: `Ok(value)` or `Err(panic message)`.
fn with_ci<T>(ci: &str, guard: impl FnOnce() -> T) -> Result<T, String> {
    std::env::set_var("CI", ci);
    catch_unwind(AssertUnwindSafe(guard)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn each_skip_helper_skips_outside_ci_and_fails_under_ci_true() {
    let saved: Vec<(&str, Option<std::ffi::OsString>)> =
        ["CI", "DOCKER_HOST", "PATH", "FOG_COMPOSE"]
            .into_iter()
            .map(|k| (k, std::env::var_os(k)))
            .collect();
    let empty = tempfile_dir();

    // No engine: DOCKER_HOST points at a socket that does not exist.
    std::env::set_var(
        "DOCKER_HOST",
        format!("unix://{}/none.sock", empty.display()),
    );
    assert_eq!(with_ci("", || common::engine_or_skip("t")), Ok(false));
    let err = with_ci("true", || common::engine_or_skip("t")).unwrap_err();
    assert!(
        err.contains("CI is set but the Docker engine is not reachable"),
        "{err}"
    );
    assert!(with_ci("true", || common::engine_guard("t").is_some()).is_err());

    // No Compose: neither flavour on PATH.
    std::env::set_var("PATH", &empty);
    std::env::set_var("FOG_COMPOSE", "v1");
    assert_eq!(with_ci("false", || common::compose_or_skip("t")), Ok(None));
    let err = with_ci("true", || common::compose_or_skip("t")).unwrap_err();
    assert!(
        err.contains("CI is set but the Compose flavour asked for is missing"),
        "{err}"
    );

    // No tool (promtool, minisign, ...).
    assert_eq!(
        with_ci("", || release_support::tool_or_skip(
            "t",
            "fog-no-such-tool",
            "--version"
        )),
        Ok(false)
    );
    let err = with_ci("1", || {
        release_support::tool_or_skip("t", "fog-no-such-tool", "--version")
    })
    .unwrap_err();
    assert!(
        err.contains("CI is set but `fog-no-such-tool` is not installed"),
        "{err}"
    );

    for (key, value) in saved {
        match value {
            Some(v) => std::env::set_var(key, v),
            None => std::env::remove_var(key),
        }
    }
    let _ = std::fs::remove_dir_all(&empty);
}

/// An empty directory of this test's own.
fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("fog-skip-helpers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
