//! Conformance: our compose model against Compose itself. For every named
//! environment (with `.env.example` as the env file) and for the merge
//! fixture, the services, images, commands, environment, networks, published
//! ports and volume targets of `cargo xtask config` must equal what
//! `docker-compose ... config` (v1) or `docker compose ... config` (v2)
//! prints. Both outputs are parsed here with a port normaliser of its own, so
//! short and long port syntax compare equal. With `CI=true` a missing Compose
//! fails the test; elsewhere the test skips.

mod common;

#[path = "../src/usage.rs"]
mod usage;
pub use usage::UsageError;
#[allow(dead_code)] // only NAMED and files() are used here
#[path = "../src/environments.rs"]
mod environments;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use common::{compose_or_skip, crate_dir, fixture, xtask, Cleanup};

/// The facts compared for one service.
#[derive(Debug, PartialEq, Eq)]
struct ServiceFacts {
    image: Option<String>,
    command: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    environment: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    networks: BTreeSet<String>,
    ports: BTreeSet<String>,
    /// `source -> target` (source empty for anonymous volumes).
    volumes: BTreeSet<String>,
    build_context: Option<String>,
    depends_on: BTreeSet<String>,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => format!("{other:?}"),
    }
}

/// `ip:published:target/proto` from either port syntax, one per port of a range.
fn ports(v: &Value) -> Vec<String> {
    let one = port(v);
    let (head, proto) = one.rsplit_once('/').unwrap();
    let parts: Vec<&str> = head
        .rsplitn(3, ':')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if parts.len() != 3 {
        return vec![one];
    }
    let range = |s: &str| -> Option<(u32, u32)> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    match (range(parts[1]), range(parts[2])) {
        (Some((p0, p1)), Some((t0, t1))) if t1 > t0 && p1 - p0 == t1 - t0 => (0..=t1 - t0)
            .map(|i| format!("{}:{}:{}/{proto}", parts[0], p0 + i, t0 + i))
            .collect(),
        (None, Some((t0, t1))) if t1 > t0 && parts[1].is_empty() => (t0..=t1)
            .map(|t| format!("{}::{t}/{proto}", parts[0]))
            .collect(),
        _ => vec![one],
    }
}

fn port(v: &Value) -> String {
    let (ip, published, target, proto) = match v {
        Value::Mapping(m) => {
            let get = |k: &str| m.get(k).map(text).unwrap_or_default();
            let proto = m.get("protocol").map(text).unwrap_or_else(|| "tcp".into());
            (get("host_ip"), get("published"), get("target"), proto)
        }
        other => {
            let s = text(other);
            let (spec, proto) = s.rsplit_once('/').unwrap_or((&s, "tcp"));
            let mut parts = spec.rsplitn(3, ':');
            let target = parts.next().unwrap_or_default();
            let published = parts.next().unwrap_or_default();
            let ip = parts.next().unwrap_or_default();
            let ip = ip.trim_start_matches('[').trim_end_matches(']');
            (ip.into(), published.into(), target.into(), proto.into())
        }
    };
    let ip = if ip == "0.0.0.0" { String::new() } else { ip };
    format!("{ip}:{published}:{target}/{proto}")
}

fn volume(v: &Value) -> String {
    match v {
        Value::Mapping(m) => {
            let source = m.get("source").map(text).unwrap_or_default();
            format!("{source} -> {}", text(&m["target"]))
        }
        other => {
            let s = text(other);
            let parts: Vec<&str> = s.split(':').collect();
            match parts.as_slice() {
                [t] => format!(" -> {t}"),
                [s, t] | [s, t, _] => format!("{s} -> {t}"),
                _ => format!("? -> {s}"),
            }
        }
    }
}

/// A command as a list: lists as they are, strings split like a shell would.
fn words(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(items) => items.iter().map(text).collect(),
        other => shell_split(&text(other)),
    }
}

fn shell_split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut chars = s.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'') | (None, '"') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (_, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (text(k), text(v))).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|i| {
                let s = text(i);
                let (k, v) = s.split_once('=').unwrap_or((&s, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn facts(doc: &Value) -> BTreeMap<String, ServiceFacts> {
    let Some(services) = doc.get("services").and_then(Value::as_mapping) else {
        return BTreeMap::new();
    };
    services
        .iter()
        .map(|(name, s)| {
            let list = |k: &str| -> Vec<&Value> {
                s.get(k)
                    .and_then(Value::as_sequence)
                    .map(|v| v.iter().collect())
                    .unwrap_or_default()
            };
            let keys = |k: &str| -> BTreeSet<String> {
                match s.get(k) {
                    Some(Value::Mapping(m)) => m.keys().map(text).collect(),
                    Some(Value::Sequence(items)) => items.iter().map(text).collect(),
                    _ => BTreeSet::new(),
                }
            };
            let build_context = s.get("build").map(|b| match b {
                Value::Mapping(m) => m.get("context").map(text).unwrap_or_else(|| ".".into()),
                other => text(other),
            });
            let facts = ServiceFacts {
                image: s.get("image").map(text),
                command: s.get("command").filter(|c| !c.is_null()).map(words),
                entrypoint: s.get("entrypoint").filter(|c| !c.is_null()).map(words),
                environment: string_map(s.get("environment")),
                labels: string_map(s.get("labels")),
                // v2 adds the implicit `default` network to every service.
                networks: keys("networks")
                    .into_iter()
                    .filter(|n| n != "default")
                    .collect(),
                ports: list("ports").into_iter().flat_map(ports).collect(),
                volumes: list("volumes").into_iter().map(volume).collect(),
                build_context,
                depends_on: keys("depends_on"),
            };
            (text(name), facts)
        })
        .collect()
}

/// Compare `xtask config` with compose's `config` for `files`.
fn assert_conforms(compose: &[&str], project_dir: &Path, env_file: &Path, files: &[PathBuf]) {
    let mut ours_args = vec!["config".to_string()];
    for f in files {
        ours_args.extend(["-f".to_string(), f.display().to_string()]);
    }
    ours_args.extend(["--env-file".to_string(), env_file.display().to_string()]);
    let args: Vec<&str> = ours_args.iter().map(String::as_str).collect();
    let out = xtask(&args);
    assert!(
        out.status.success(),
        "xtask config failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours_text = out.stdout;
    let ours: Value = serde_yaml::from_slice(&ours_text).expect("our config output is YAML");

    let mut cmd = Command::new(compose[0]);
    cmd.args(&compose[1..])
        .arg("--project-directory")
        .arg(project_dir)
        .arg("--env-file")
        .arg(env_file);
    for f in files {
        cmd.arg("-f").arg(f);
    }
    // v2 leaves services of inactive profiles out; enable every profile we saw.
    let profiles: BTreeSet<String> = ours["services"]
        .as_mapping()
        .into_iter()
        .flat_map(|m| m.values())
        .filter_map(|s| s.get("profiles").and_then(Value::as_sequence))
        .flatten()
        .map(text)
        .collect();
    for p in &profiles {
        cmd.arg("--profile").arg(p);
    }
    let out = cmd.arg("config").output().expect("run compose config");
    assert!(
        out.status.success(),
        "compose config failed for {files:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Value = serde_yaml::from_slice(&out.stdout).expect("compose config output is YAML");
    assert_eq!(
        facts(&ours),
        facts(&theirs),
        "model differs from compose for {files:?}"
    );

    // Compose reads our output back to the same model.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp =
        std::env::temp_dir().join(format!("xtask-conformance-{}-{n}.yml", std::process::id()));
    std::fs::write(&tmp, &ours_text).unwrap();
    let mut cleanup = Cleanup::default();
    cleanup.paths.push(tmp.clone());
    let mut cmd = Command::new(compose[0]);
    cmd.args(&compose[1..]).arg("-f").arg(&tmp);
    for p in &profiles {
        cmd.arg("--profile").arg(p);
    }
    let out = cmd.arg("config").output().expect("run compose config");
    assert!(
        out.status.success(),
        "compose rejects our config output for {files:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reread: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    assert_eq!(
        facts(&ours),
        facts(&reread),
        "our output reads back differently"
    );
}

#[test]
fn merge_fixture_matches_compose() {
    let Some(compose) = compose_or_skip("merge_fixture_matches_compose") else {
        return;
    };
    let dir = fixture("merge");
    let files = [dir.join("base.yml"), dir.join("override.yml")];
    assert_conforms(&compose, &dir, &dir.join(".env"), &files);
    assert_conforms(&compose, &dir, &dir.join(".env"), &files[..1]);
}

#[test]
fn named_environments_match_compose() {
    let Some(compose) = compose_or_skip("named_environments_match_compose") else {
        return;
    };
    let root = crate_dir().parent().unwrap().to_path_buf();
    let env_file = root.join(".env.example");
    if !root.join("compose").is_dir() {
        eprintln!("skipping: compose/ has not landed on this branch yet");
        return;
    }
    assert!(
        root.join("compose/base.yml").is_file() && env_file.is_file(),
        "the repository's compose/ overlays and .env.example must exist"
    );
    for name in environments::NAMED {
        let env: environments::Environment = name.parse().unwrap();
        let files: Vec<PathBuf> = env.files().iter().map(|f| root.join(f)).collect();
        assert_conforms(&compose, &root.join("compose"), &env_file, &files);
    }
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

fn clean_env(cmd: &mut Command) -> &mut Command {
    for var in [
        "COMPOSE_FILE",
        "COMPOSE_PROJECT_NAME",
        "COMPOSE_PROFILES",
        "FOG_ENV_FILE",
    ] {
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

fn ours_config(flavour: &str, file: &Path) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    clean_env(&mut cmd).current_dir(file.parent().unwrap());
    cmd.args(["config", "--compose", flavour, "-f"]).arg(file);
    outcome(cmd.output().expect("run xtask config"))
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
    let readme = std::fs::read_to_string(common::crate_dir().join("../README.md")).unwrap();
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
/// Compose v1, Compose v2 and `xtask config --compose v1|v2`. Compose must
/// still behave as `corpus/EXPECT` records; we must refuse what each
/// refuses and equal what each accepts, on at least 98% of the accepted
/// files, and every difference must be listed with its reason. Prints the
/// ratios. `CORPUS_BLESS=1` rewrites EXPECT's Compose columns instead.
#[test]
fn corpus_matches_compose_v1_and_v2() {
    let Some(_) = compose_or_skip("corpus_matches_compose_v1_and_v2") else {
        return;
    };
    let both = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
        && Command::new("docker")
            .args(["compose", "version"])
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        both || !common::in_ci(),
        "the corpus needs both docker-compose (v1) and docker compose (v2)"
    );
    if !both {
        eprintln!("skipping: the corpus needs both Compose v1 and v2");
        return;
    }
    let root = fixture("corpus");
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
                    ours_config("v1", &file),
                    ours_config("v2", &file),
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
