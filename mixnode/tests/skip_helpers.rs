//! `may_skip`, the mixnode tests' skip helper: it skips outside CI and fails
//! the test under `CI=true`, so a CI machine without PostgreSQL cannot pass
//! by skipping. One test in its own binary, since it sets `CI`.

mod common;

#[test]
fn may_skip_skips_outside_ci_and_fails_under_ci_true() {
    let saved = std::env::var_os("CI");
    std::env::set_var("CI", "false");
    assert!(common::may_skip("a tool"));
    std::env::set_var("CI", "true");
    let err = std::panic::catch_unwind(|| common::may_skip("a tool")).unwrap_err();
    let message = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_eq!(message, "a tool is required when CI is set");
    match saved {
        Some(v) => std::env::set_var("CI", v),
        None => std::env::remove_var("CI"),
    }
}
