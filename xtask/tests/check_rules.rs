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

/// Run `xtask config -f FILE` under `/usr/bin/time` when it exists, so the
/// hostile inputs below print their wall time and peak memory (the figures
/// for issue 8: `cargo test -p xtask --test check_rules hostile -- --nocapture`).
fn config_measured(name: &str, args: &[&str], dir: &std::path::Path) -> std::process::Output {
    let bin = env!("CARGO_BIN_EXE_xtask");
    let timed = std::path::Path::new("/usr/bin/time").exists();
    let report = dir.join(format!("{name}.time"));
    let mut cmd = if timed {
        let mut c = std::process::Command::new("/usr/bin/time");
        c.arg("-f").arg("%e %M").arg("-o").arg(&report).arg(bin);
        c
    } else {
        std::process::Command::new(bin)
    };
    let out = cmd.args(args).current_dir(dir).output().expect("run xtask");
    if let Ok(figures) = std::fs::read_to_string(&report) {
        // `/usr/bin/time` puts "Command exited with non-zero status N" first.
        let mut it = figures
            .lines()
            .last()
            .unwrap_or_default()
            .split_whitespace();
        let (secs, kb) = (it.next().unwrap_or("?"), it.next().unwrap_or("?"));
        eprintln!(
            "hostile {name:<24} {secs:>6} s {kb:>8} KB peak RSS  exit {:?}",
            out.status.code()
        );
    }
    out
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-hostile-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every hostile input of issue 8 ends in a clear error (or a correct
/// result) with a position, never a crash: nested defaults, `[` x 100000,
/// a 1 MB `.env` value referenced 1000 times, a file over the 1 MB limit
/// (and a valid file just under it, 10,000 services),
/// a BOM before `.env`, a directory or fifo as `-f`, invalid UTF-8, and a
/// DEL character, which `config` must write so that its output reads back.
#[test]
fn hostile_inputs_end_in_clear_errors() {
    let dir = scratch("all");
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let write = |name: &str, text: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };

    let nested = format!(
        "services:\n  a:\n    image: \"{}x{}\"\n",
        "${A:-".repeat(4000),
        "}".repeat(4000)
    );
    let f = write("nested.yml", nested.as_bytes());
    let out = config_measured("nested-defaults", &["config", "-f", &f], &dir);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nested.yml:3") && stderr(&out).contains("nested more than 32"),
        "{}",
        stderr(&out)
    );

    let f = write(
        "brackets.yml",
        format!("services:\n  a: {}", "[".repeat(100_000)).as_bytes(),
    );
    let out = config_measured("brackets-100000", &["config", "-f", &f], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("brackets.yml:2") && stderr(&out).contains("nested more than 64"),
        "{}",
        stderr(&out)
    );

    let big = dir.join("big");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(big.join(".env"), format!("BIG={}\n", "v".repeat(1 << 20))).unwrap();
    let refs = vec!["$BIG"; 1000].join(", ");
    std::fs::write(
        big.join("c.yml"),
        format!("services:\n  a:\n    image: x\n    command: [{refs}]\n"),
    )
    .unwrap();
    let f = big.join("c.yml").display().to_string();
    let out = config_measured("1MB-value-x1000", &["config", "-f", &f], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("16 MB"), "{}", stderr(&out));

    let huge = dir.join("huge.yml");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(4 << 30).unwrap(); // sparse 4 GB: refused on its size, never read
    let out = config_measured(
        "4GB-file",
        &["config", "-f", &huge.display().to_string()],
        &dir,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("over the 1 MB limit for this kind of file"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(&huge).unwrap();

    let mut at_limit = String::from("services:\n");
    let mut i = 0;
    while at_limit.len() < 1_000_000 {
        at_limit.push_str(&format!(
            "  s{i}:\n    image: busybox:1.36\n    environment:\n      A: \"${{X:-{i}}}\"\n    ports: [\"{}\"]\n",
            1000 + i % 60000
        ));
        i += 1;
    }
    if at_limit.len() > 1024 * 1024 {
        at_limit.truncate(at_limit[..1024 * 1024].rfind("\n  s").unwrap() + 1);
    }
    let f = write("at-limit.yml", at_limit.as_bytes());
    let out = config_measured("1MB-file-config", &["config", "-f", &f], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = config_measured("1MB-file-check", &["check", "-f", &f], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let bom = dir.join("bom");
    std::fs::create_dir_all(&bom).unwrap();
    std::fs::write(bom.join(".env"), "\u{feff}FIRST=kept\nSECOND=too\n").unwrap();
    std::fs::write(
        bom.join("c.yml"),
        "services:\n  a:\n    image: \"x:${FIRST}-${SECOND}\"\n",
    )
    .unwrap();
    let f = bom.join("c.yml").display().to_string();
    let out = config_measured("bom-env", &["config", "-f", &f], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("x:kept-too"), "{}", stdout(&out));

    let out = config_measured(
        "directory-as-f",
        &["config", "-f", &dir.display().to_string()],
        &dir,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is a directory"), "{}", stderr(&out));
    let fifo = dir.join("fifo.yml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let out = config_measured(
            "fifo-as-f",
            &["config", "-f", &fifo.display().to_string()],
            &dir,
        );
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("not a regular file"),
            "{}",
            stderr(&out)
        );
    }

    let f = write(
        "latin1.yml",
        b"services:\n  a:\n    image: x\n    environment:\n      A: caf\xe9\n",
    );
    let out = config_measured("invalid-utf8", &["config", "-f", &f], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("latin1.yml:5") && stderr(&out).contains("UTF-8"),
        "{}",
        stderr(&out)
    );

    let f = write(
        "del.yml",
        b"services:\n  a:\n    image: x\n    environment:\n      A: \"x\\x7fy\"\n",
    );
    let out = config_measured("del-character", &["config", "-f", &f], &dir);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!out.stdout.contains(&0x7f), "a raw DEL was written");
    let again = write("del-out.yml", &out.stdout);
    let out = xtask(&["config", "-f", &again]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "our output does not read back: {}",
        stderr(&out)
    );
    let doc: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(
        doc["services"]["a"]["environment"]["A"].as_str(),
        Some("x\u{7f}y")
    );

    std::fs::remove_dir_all(&dir).unwrap();
}

/// `check` on the corpus files Compose accepts: no error-level finding
/// (prints the count of warnings, which are advice).
#[test]
fn check_raises_no_error_on_legitimate_corpus_files() {
    let root = common::crate_dir().join("../crates/compose/tests/fixtures/corpus");
    let expect = std::fs::read_to_string(root.join("EXPECT")).unwrap();
    let (mut files, mut warnings) = (0, 0);
    let mut errors = Vec::new();
    for line in expect.lines().filter(|l| !l.starts_with('#')) {
        let mut parts = line.split(' ');
        let (Some(path), Some(v1), Some(v2)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        // Legitimate: both Compose versions accept it.
        if v1 != "v1=ok" || v2 != "v2=ok" {
            continue;
        }
        files += 1;
        let file = root.join(path).display().to_string();
        let out = xtask(&["check", "--format", "json", "-f", &file]);
        let doc: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{path}: {e}"));
        warnings += doc["warnings"].as_u64().unwrap_or(0);
        for env in doc["environments"].as_array().unwrap() {
            for f in env["findings"].as_array().unwrap() {
                if f["severity"] == "error" {
                    errors.push(format!("{path}: {} {}", f["rule"], f["message"]));
                }
            }
        }
    }
    eprintln!(
        "check on {files} legitimate corpus files: {} errors, {warnings} warnings",
        errors.len()
    );
    assert!(files >= 100, "only {files} legitimate files");
    assert!(
        errors.is_empty(),
        "error-level findings on legitimate files:\n{}",
        errors.join("\n")
    );
}
