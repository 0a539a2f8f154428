//! Conformance: the compose model against Compose itself, on the corpus of
//! `tests/fixtures/corpus` (real-world files and files written to mirror one
//! Compose rule each; origins in `corpus/SOURCES.md`). Each file goes through
//! Compose v1 (`docker-compose config`), Compose v2 (`docker compose config`)
//! and this crate read like each ([`Flavour`]), exactly as `cargo xtask config
//! --compose v1|v2 -f FILE` reads it; the services' facts ([`facts`]) must be
//! equal, or both sides refuse. With `CI=true` a missing Compose fails the
//! test; elsewhere the test skips.

#[path = "support/facts.rs"]
mod facts;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use compose::{EnvSource, Flavour, Project};
use serde_yaml::Value;

use facts::{facts, text, ServiceFacts};

/// Whether `CI` asks for every e2e test to run (`CI=true`, or any value but `false`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What one Compose (or we) made of one corpus file.
#[derive(Debug)]
enum Outcome {
    Accepted(BTreeMap<String, ServiceFacts>),
    Refused(#[allow(dead_code)] String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Accepted(_) => "ok",
            Outcome::Refused(_) => "refused",
        }
    }
}

fn outcome(out: std::process::Output) -> Outcome {
    outcome_of(out.status.success(), &out.stdout, &out.stderr)
}

fn outcome_of(success: bool, stdout: &[u8], stderr: &[u8]) -> Outcome {
    if !success {
        let err = String::from_utf8_lossy(stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Outcome::Refused(last.chars().take(160).collect());
    }
    match serde_yaml::from_slice::<Value>(stdout) {
        Ok(doc) => Outcome::Accepted(facts(&doc)),
        Err(e) => Outcome::Refused(format!("output is not YAML: {e}")),
    }
}

/// Profiles named anywhere in the file, so v2 keeps every service.
fn profiles_in(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let doc: Value = serde_yaml::from_str(&text).unwrap_or(Value::Null);
    doc.get("services")
        .and_then(Value::as_mapping)
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|s| s.get("profiles").and_then(Value::as_sequence))
        .flatten()
        .map(text_of)
        .collect()
}

fn text_of(v: &Value) -> String {
    text(v)
}

/// Variables that would change what Compose reads; the project name is fixed.
const CLEARED: [&str; 4] = [
    "COMPOSE_FILE",
    "COMPOSE_PROJECT_NAME",
    "COMPOSE_PROFILES",
    "FOG_ENV_FILE",
];

fn clean_env(cmd: &mut Command) -> &mut Command {
    for var in CLEARED {
        cmd.env_remove(var);
    }
    cmd.env("COMPOSE_PROJECT_NAME", "corpus")
}

/// Run `compose config` (v1 or v2) on one file from its own directory.
/// `CORPUS_CACHE=DIR` keeps Compose's answers (keyed by file content) for
/// quick reruns while developing.
fn compose_config(v2: bool, file: &Path) -> Outcome {
    let cache = std::env::var_os("CORPUS_CACHE").map(PathBuf::from);
    let key = cache.as_ref().map(|dir| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (v2, file, std::fs::read(file).unwrap_or_default()).hash(&mut h);
        dir.join(format!("{:016x}", h.finish()))
    });
    if let Some(key) = &key {
        if let Ok(bytes) = std::fs::read(key) {
            let (ok, rest) = bytes.split_at(1);
            return outcome_of(ok == b"1", rest, rest);
        }
    }
    let out = run_compose_config(v2, file);
    if let Some(key) = &key {
        let _ = std::fs::create_dir_all(key.parent().unwrap());
        let body = if out.status.success() {
            &out.stdout
        } else {
            &out.stderr
        };
        let mut bytes = vec![if out.status.success() { b'1' } else { b'0' }];
        bytes.extend_from_slice(body);
        let _ = std::fs::write(key, bytes);
    }
    outcome(out)
}

fn run_compose_config(v2: bool, file: &Path) -> std::process::Output {
    let dir = file.parent().unwrap();
    let mut cmd = if v2 {
        let mut c = Command::new("docker");
        c.arg("compose");
        c
    } else {
        Command::new("docker-compose")
    };
    clean_env(&mut cmd).current_dir(dir);
    cmd.arg("-f").arg(file.file_name().unwrap());
    if v2 {
        for p in profiles_in(file) {
            cmd.arg("--profile").arg(p);
        }
    }
    cmd.arg("config").output().expect("run compose config")
}

/// What `cargo xtask config --compose FLAVOUR -f FILE` makes of one file,
/// through the calls that command makes: the process environment Compose is
/// given ([`clean_env`]), then the `.env` beside the file, read like
/// `flavour`; loaded, dependencies checked, printed, parsed back.
fn ours_config(flavour: Flavour, file: &Path) -> Outcome {
    let process = std::env::vars()
        .filter(|(k, _)| !CLEARED.contains(&k.as_str()))
        .chain([("COMPOSE_PROJECT_NAME".to_string(), "corpus".to_string())]);
    let mut env = EnvSource::from_pairs(process);
    let dot_env = file.parent().unwrap().join(".env");
    if dot_env.is_file() {
        if let Err(e) = env.load_file(&dot_env) {
            return Outcome::Refused(e.to_string());
        }
    }
    let env = env.with_flavour(flavour);
    let printed = Project::load(&[file.to_path_buf()], &env).and_then(|project| {
        project.check_dependencies()?;
        Ok(project.to_yaml())
    });
    match printed {
        Ok(yaml) => outcome_of(true, yaml.as_bytes(), b""),
        Err(e) => Outcome::Refused(e.to_string()),
    }
}

/// `corpus/EXPECT`: `path v1=ok|refused v2=ok|refused [differs=v1|v2|both: reason]`.
fn expectations(root: &Path) -> BTreeMap<String, (String, String, Option<String>)> {
    let text = std::fs::read_to_string(root.join("EXPECT")).expect("corpus/EXPECT");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let mut parts = l.splitn(4, ' ');
            let path = parts.next().unwrap().to_string();
            let v1 = parts.next().unwrap().trim_start_matches("v1=").to_string();
            let v2 = parts.next().unwrap().trim_start_matches("v2=").to_string();
            let differs = parts
                .next()
                .map(|d| d.trim_start_matches("differs=").to_string());
            (path, (v1, v2, differs))
        })
        .collect()
}

fn corpus_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            corpus_files(&p, out);
        } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yml" | "yaml")) {
            out.push(p);
        }
    }
}

/// The two figures of README.md's "`config` equals Compose on X% (v1) and
/// Y% (v2)" sentence.
fn readme_conformance_figures() -> (f64, f64) {
    let readme = std::fs::read_to_string(crate_dir().join("../../README.md")).unwrap();
    let text = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    let after = text
        .split_once("equals Compose on ")
        .expect("README.md states the conformance figures")
        .1;
    let figure = |s: &str| -> f64 { s.trim_end_matches('%').parse().expect("a percentage") };
    let words: Vec<&str> = after.split(' ').collect();
    // "99.2% (v1) and 99.3% (v2)"
    assert_eq!((words[1], words[4]), ("(v1)", "(v2)"), "{after}");
    (figure(words[0]), figure(words[3]))
}

/// Every file of `tests/fixtures/corpus` (real-world files and files written
/// to mirror one Compose rule each; origins in `corpus/SOURCES.md`) through
/// Compose v1, Compose v2 and the model read like each. Compose must
/// still behave as `corpus/EXPECT` records; we must refuse what each
/// refuses and equal what each accepts, on at least 98% of the accepted
/// files, and every difference must be listed with its reason. Prints the
/// ratios. `CORPUS_BLESS=1` rewrites EXPECT's Compose columns instead.
#[test]
fn corpus_matches_compose_v1_and_v2() {
    let both = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        both || !in_ci(),
        "the corpus needs both docker-compose (v1) and docker compose (v2)"
    );
    if !both {
        eprintln!("skipping: the corpus needs both Compose v1 and v2");
        return;
    }
    let root = crate_dir().join("tests/fixtures/corpus");
    let mut files = Vec::new();
    corpus_files(&root, &mut files);
    let rel = |p: &Path| p.strip_prefix(&root).unwrap().display().to_string();
    let expect = expectations(&root);
    let bless = std::env::var("CORPUS_BLESS").is_ok();

    // Four workers: each mostly waits for a Compose process to start.
    let queue = std::sync::Mutex::new(files.clone());
    let results = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let Some(file) = queue.lock().unwrap().pop() else {
                    break;
                };
                let row = (
                    compose_config(false, &file),
                    compose_config(true, &file),
                    ours_config(Flavour::V1, &file),
                    ours_config(Flavour::V2, &file),
                );
                results.lock().unwrap().insert(rel(&file), row);
            });
        }
    });
    let results = results.into_inner().unwrap();

    if bless {
        let mut out = String::from("# path v1=ok|refused v2=ok|refused [differs=...: reason]; written by CORPUS_BLESS=1, reasons kept\n");
        for (path, (v1, v2, _, _)) in &results {
            out.push_str(&format!("{path} v1={} v2={}", v1.label(), v2.label()));
            if let Some((_, _, Some(d))) = expect.get(path) {
                out.push_str(&format!(" differs={d}"));
            }
            out.push('\n');
        }
        std::fs::write(root.join("EXPECT"), out).unwrap();
        panic!("CORPUS_BLESS rewrote corpus/EXPECT: review the diff, then run again without it (a bless run never passes)");
    }

    let mut problems = Vec::new();
    let (mut v1_ok, mut v1_eq, mut v2_ok, mut v2_eq, mut refused, mut refused_agree) =
        (0, 0, 0, 0, 0, 0);
    for (path, (v1, v2, o1, o2)) in &results {
        let Some((e1, e2, differs)) = expect.get(path) else {
            problems.push(format!(
                "{path}: not in corpus/EXPECT (v1={} v2={})",
                v1.label(),
                v2.label()
            ));
            continue;
        };
        if v1.label() != e1 || v2.label() != e2 {
            problems.push(format!(
                "{path}: Compose changed: v1={} v2={} but EXPECT says v1={e1} v2={e2} ({v1:?} / {v2:?})",
                v1.label(),
                v2.label()
            ));
            continue;
        }
        let differs = differs.as_deref().unwrap_or("");
        for (name, theirs, ours, ok, eq) in [
            ("v1", v1, o1, &mut v1_ok, &mut v1_eq),
            ("v2", v2, o2, &mut v2_ok, &mut v2_eq),
        ] {
            let listed = differs.starts_with(name) || differs.starts_with("both");
            let same = match (theirs, ours) {
                (Outcome::Accepted(a), Outcome::Accepted(b)) => a == b,
                (Outcome::Refused(_), Outcome::Refused(_)) => true,
                _ => false,
            };
            match theirs {
                Outcome::Accepted(_) => {
                    *ok += 1;
                    *eq += usize::from(same);
                }
                Outcome::Refused(_) => {
                    refused += 1;
                    refused_agree += usize::from(same);
                }
            }
            if !same && !listed {
                problems.push(format!(
                    "{path}: {name} differs:\n  compose: {theirs:?}\n  ours:    {ours:?}"
                ));
            }
            if same && listed {
                problems.push(format!(
                    "{path}: listed as differing for {name} but now equal; update EXPECT"
                ));
            }
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    eprintln!(
        "corpus: {} files; v1 accepts {v1_ok}, equal {v1_eq} ({:.1}%); v2 accepts {v2_ok}, equal {v2_eq} ({:.1}%); refusals {refused}, we refuse too {refused_agree} ({:.1}%)",
        results.len(),
        100.0 * ratio(v1_eq, v1_ok),
        100.0 * ratio(v2_eq, v2_ok),
        100.0 * ratio(refused_agree, refused),
    );
    assert!(
        problems.is_empty(),
        "{} corpus problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    // The floors are the figures README.md states: a lower measurement
    // fails, and a README that claims more than is measured fails too.
    let (v1_floor, v2_floor) = readme_conformance_figures();
    let (v1_pct, v2_pct) = (
        (1000.0 * ratio(v1_eq, v1_ok)).round() / 10.0,
        (1000.0 * ratio(v2_eq, v2_ok)).round() / 10.0,
    );
    assert!(
        v1_pct >= v1_floor && v2_pct >= v2_floor,
        "measured v1 {v1_pct}% / v2 {v2_pct}%, README.md states {v1_floor}% / {v2_floor}%"
    );
    assert!(
        results.len() >= 150,
        "the corpus must hold at least 150 files"
    );
}

/// `config` output reads back as exactly the model it printed
/// ([`Project::config`]), for every corpus file the crate accepts, under both
/// flavours: so a caller that rewrites the model's value sees what it would
/// see parsing the printed file. No Docker needed.
#[test]
fn config_output_reads_back_to_the_model() {
    let root = crate_dir().join("tests/fixtures/corpus");
    let mut files = Vec::new();
    corpus_files(&root, &mut files);
    let mut checked = 0;
    for file in &files {
        for flavour in [Flavour::V1, Flavour::V2] {
            let dot_env = file.parent().unwrap().join(".env");
            let Ok(env) =
                EnvSource::with_process_env(Some(dot_env.as_path()).filter(|p| p.is_file()))
            else {
                continue;
            };
            let Ok(project) = Project::load(std::slice::from_ref(file), &env.with_flavour(flavour))
            else {
                continue;
            };
            let printed = project.to_yaml();
            let reread: Value = serde_yaml::from_str(&printed)
                .unwrap_or_else(|e| panic!("{} ({flavour:?}): {e}\n{printed}", file.display()));
            assert_eq!(
                reread,
                project.config(),
                "{} ({flavour:?}) reads back differently:\n{printed}",
                file.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 250, "only {checked} corpus loads were checked");
    eprintln!("config output of {checked} corpus loads reads back to the model");
}
