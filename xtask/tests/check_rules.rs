//! `cargo xtask check` and `config` against small fixtures under
//! `tests/fixtures/rules`: each planted defect is reported with its rule id,
//! file and line; clean files pass; bad input exits 1 or 2 with a position.

mod common;

use std::collections::BTreeSet;

use common::{check_facts, fact, fixture, stdout, xtask};

fn path(rel: &str) -> String {
    fixture(rel).display().to_string()
}

#[test]
fn every_generic_rule_fires_at_its_line_in_dev() {
    let (code, facts) = check_facts(&[
        "-f",
        &path("rules/defects/base.yml"),
        "-f",
        &path("rules/defects/compose.dev.yml"),
    ]);
    assert_eq!(code, 1);
    let expected: BTreeSet<_> = [
        fact("unpinned-image", "base.yml", 4),
        fact("literal-secret", "base.yml", 6),
        fact("undeclared-network", "base.yml", 10),
        fact("undeclared-volume", "base.yml", 13),
        fact("missing-bind-source", "base.yml", 14),
        fact("unpinned-image", "base.yml", 17),
        fact("healthy-without-healthcheck", "base.yml", 19),
        fact("undefined-dependency", "base.yml", 20),
        fact("duplicate-service", "base.yml", 25),
        fact("overlapping-subnet", "base.yml", 39),
        fact("literal-secret", "compose.dev.yml", 6),
        fact("public-bind", "compose.dev.yml", 8),
        fact("public-bind", "compose.dev.yml", 9),
        fact("port-conflict", "compose.dev.yml", 9),
    ]
    .into_iter()
    .collect();
    assert_eq!(facts, expected);
}

#[test]
fn prod_flags_ports_of_base_services_and_not_dev_rules() {
    let (code, facts) = check_facts(&[
        "-f",
        &path("rules/defects/base.yml"),
        "-f",
        &path("rules/defects/compose.prod.yml"),
    ]);
    assert_eq!(code, 1);
    assert!(facts.contains(&fact("prod-publishes-port", "compose.prod.yml", 4)));
    // A warning, which alone would not fail the check.
    assert!(facts.contains(&fact("floating-tag", "compose.prod.yml", 6)));
    assert!(!facts
        .iter()
        .any(|f| f.0 == "public-bind" || f.0 == "port-conflict"));
    // Replicas (`node-1`, `node-2`) of one image are not duplicates.
    assert_eq!(
        facts.iter().filter(|f| f.0 == "duplicate-service").count(),
        1
    );
}

#[test]
fn clean_files_pass_with_variables_from_the_env_file_beside_them() {
    // DB_PASSWORD is required (`:?`) and only set in clean/.env.
    let (code, facts) = check_facts(&[
        "-f",
        &path("rules/clean/base.yml"),
        "-f",
        &path("rules/clean/dev.yml"),
    ]);
    assert_eq!(facts, BTreeSet::new());
    assert_eq!(code, 0);
}

#[test]
fn parse_errors_report_file_line_and_column() {
    let out = xtask(&["check", "-f", &path("rules/parse/bad.yml")]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(
        text.contains("bad.yml:4:4: error[yaml-syntax]: invalid YAML"),
        "{text}"
    );
}

#[test]
fn a_required_variable_names_itself_and_its_line() {
    let (code, facts) = check_facts(&["-f", &path("rules/parse/unset.yml")]);
    assert_eq!(code, 1);
    assert_eq!(
        facts,
        [fact("interpolation", "unset.yml", 5)]
            .into_iter()
            .collect()
    );
    let out = xtask(&["config", "-f", &path("rules/parse/unset.yml")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unset.yml:5") && err.contains("XTASK_TEST_SURELY_UNSET"),
        "{err}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn usage_errors_exit_2() {
    let out = xtask(&["check", "-f", "no/such/file.yml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/file.yml"));
    assert_eq!(xtask(&["check", "--format", "xml"]).status.code(), Some(2));
    assert_eq!(
        xtask(&["config", "--env", "staging"]).status.code(),
        Some(2)
    );
}

#[test]
fn config_prints_a_merged_file_compose_can_read_back() {
    let base = path("rules/clean/base.yml");
    let dev = path("rules/clean/dev.yml");
    let out = xtask(&["config", "-f", &base, "-f", &dev]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert!(doc.get("x-common").is_none(), "extensions are dropped");
    let db = &doc["services"]["db"];
    assert_eq!(db["image"].as_str(), Some("postgres:15.8-alpine"));
    assert_eq!(db["restart"].as_str(), Some("unless-stopped"));
    assert_eq!(
        db["environment"]["POSTGRES_PASSWORD"].as_str(),
        Some("from-dot-env")
    );
    assert_eq!(db["ports"][0].as_str(), Some("127.0.0.1:5433:5432/tcp"));
    // `$$` stays escaped so compose reads back the same literal `$`.
    assert_eq!(
        db["healthcheck"]["test"][1].as_str(),
        Some("pg_isready -U $${POSTGRES_USER}")
    );
    assert!(db["networks"].get("front").is_some());

    let out = xtask(&["config", "-f", &base, "-f", &dev, "--services"]);
    assert_eq!(stdout(&out), "db\napp\n");
}

#[test]
fn the_repository_environments_all_check_clean() {
    let env_file = common::crate_dir().join("../.env.example");
    let out = xtask(&[
        "check",
        "--format",
        "json",
        "--env-file",
        &env_file.display().to_string(),
    ]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(doc["errors"], 0, "{}", stdout(&out));
    assert_eq!(doc["environments"].as_array().unwrap().len(), 10);
    assert_eq!(out.status.code(), Some(0));
}
