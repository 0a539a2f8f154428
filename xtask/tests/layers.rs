//! The xtask's layering, checked from its source: every `crate::` path in
//! `xtask/src` (in `use` trees and inline, comments and strings aside) is an
//! edge from the top-level module of its file to the module it names. The
//! command modules are the ones `cli::Command` takes a `Cmd` from (read from
//! `cli.rs`, so the list lives in one place). The rules (ARCHITECTURE.md,
//! invariants):
//! - no command module imports another command module;
//! - no library module imports a command module, and nothing imports `cli`
//!   (the dispatcher, which hands `completions` and `release` the CLI
//!   definition instead);
//! - no two top-level modules import each other, directly or in a circle.
//!
//! A violation fails naming `file:line` of each offending path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// One `crate::` reference: the importing file, its line and the module named.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edge {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// `text` with comments, string and char literals blanked out (newlines
/// kept, so line numbers stay right).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if rest.starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    out.extend(b"  ");
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    out.extend(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if (rest.starts_with(b"r#") || rest.starts_with(b"r\""))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // Raw string: r"...", r#"..."#, ...
            let hashes = rest[1..].iter().take_while(|&&c| c == b'#').count();
            if rest.get(1 + hashes) != Some(&b'"') {
                out.push(b[i]);
                i += 1;
                continue;
            }
            let mut end = vec![b'#'; hashes + 1];
            end[0] = b'"';
            let start = i + 2 + hashes;
            let close = b[start..]
                .windows(end.len())
                .position(|w| w == end.as_slice())
                .map_or(b.len(), |p| start + p + end.len());
            for &c in &b[i..close] {
                blank(&mut out, c);
            }
            i = close;
        } else if rest[0] == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                blank(&mut out, b[i]);
                i += 1;
            }
            if i < b.len() {
                out.push(b' ');
                i += 1;
            }
        } else if rest[0] == b'\'' {
            // A char literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            let len = if rest.get(1) == Some(&b'\\') {
                rest[2..].iter().position(|&c| c == b'\'').map(|p| p + 3)
            } else {
                let ch = std::str::from_utf8(&rest[1..])
                    .ok()
                    .and_then(|s| s.chars().next());
                ch.map(char::len_utf8)
                    .filter(|n| rest.get(1 + n) == Some(&b'\''))
                    .map(|n| n + 2)
            };
            match len {
                Some(n) => {
                    out.resize(out.len() + n, b' ');
                    i += n;
                }
                None => {
                    out.push(b'\'');
                    i += 1;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("only ASCII was replaced")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segments of a `use` group's top-level items: `{a, b::{c}, d as e}`.
fn group_heads(group: &str) -> Vec<(usize, String)> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut at_item = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item = true,
            c if at_item && depth == 0 && (c.is_ascii_alphabetic() || c == '_') => {
                heads.push((i, ident_at(&group[i..]).to_string()));
                at_item = false;
            }
            _ => {}
        }
    }
    heads
}

/// Every top-level module named by a `crate::` path (or a `super::` path that
/// climbs to the crate root) in `code`, with the line it is on.
fn references(code: &str, depth: usize) -> Vec<(usize, String)> {
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut refs = Vec::new();
    let mut push_path = |pos: usize, rest: &str| {
        if let Some(group) = rest.strip_prefix('{') {
            let mut d = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => d += 1,
                        '}' => d -= 1,
                        _ => {}
                    }
                    d == 0
                })
                .map_or(group.len(), |(i, _)| i);
            let start = pos + 1;
            for (off, head) in group_heads(&group[..end]) {
                refs.push((line_of(start + off), head));
            }
        } else {
            refs.push((line_of(pos), ident_at(rest).to_string()));
        }
    };
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(p) = code[from..].find("crate::") {
        let at = from + p;
        from = at + "crate::".len();
        let prev = at.checked_sub(1).map(|i| bytes[i]);
        if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c == b':') {
            continue; // `$crate::` in macros, `xtask_crate::`, `a::crate::`
        }
        push_path(from, &code[from..]);
    }
    // `super::super::x` from a file `depth` modules below the root.
    if depth > 0 {
        let climb = "super::".repeat(depth);
        let mut from = 0;
        while let Some(p) = code[from..].find(&climb) {
            let at = from + p;
            from = at + climb.len();
            let prev = at.checked_sub(1).map(|i| bytes[i]);
            if prev.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':') {
                continue;
            }
            if code[from..].starts_with("super::") {
                continue;
            }
            push_path(from, &code[from..]);
        }
    }
    refs
}

/// The edges of a source tree given as (path below `src/`, text).
fn edges(files: &[(String, String)], modules: &BTreeSet<String>) -> Vec<Edge> {
    let mut out = Vec::new();
    for (path, text) in files {
        if path == "lib.rs" || path == "main.rs" {
            continue;
        }
        let parts: Vec<&str> = path.trim_end_matches(".rs").split('/').collect();
        let top = parts[0].to_string();
        // a.rs and a/mod.rs are `crate::a` (depth 1); a/b.rs is `crate::a::b` (2).
        let depth = parts.len() - usize::from(parts.last() == Some(&"mod"));
        for (line, to) in references(&code_only(text), depth) {
            if modules.contains(&to) && to != top {
                out.push(Edge {
                    file: format!("xtask/src/{path}"),
                    line,
                    from: top.clone(),
                    to,
                });
            }
        }
    }
    out
}

/// The modules `cli::Command`'s variants take their `Cmd` from.
fn command_modules(cli: &str) -> BTreeSet<String> {
    let code = code_only(cli);
    let start = code
        .find("pub enum Command")
        .expect("cli.rs declares `pub enum Command`");
    let open = start + code[start..].find('{').expect("enum opens");
    let close = open + code[open..].find('}').expect("enum closes");
    let body = &code[open..close];
    let mut commands = BTreeSet::new();
    let mut from = 0;
    while let Some(p) = body[from..].find("::Cmd)") {
        let end = from + p;
        let begin = body[..end].rfind('(').expect("Variant(module::Cmd)") + 1;
        commands.insert(body[begin..end].to_string());
        from = end + 1;
    }
    commands
}

/// Every rule broken by `edges`, one line each.
fn violations(edges: &[Edge], commands: &BTreeSet<String>) -> Vec<String> {
    let mut bad = Vec::new();
    for e in edges {
        let at = format!("{}:{}", e.file, e.line);
        if e.to == "cli" {
            bad.push(format!(
                "{at}: `{}` imports `cli` (the dispatcher): take what you need as an argument from its dispatch",
                e.from
            ));
        } else if commands.contains(&e.to) && commands.contains(&e.from) {
            bad.push(format!(
                "{at}: command `{}` imports command `{}`: move what they share into a library module named for what it is",
                e.from, e.to
            ));
        } else if commands.contains(&e.to) && e.from != "cli" {
            bad.push(format!(
                "{at}: library `{}` imports command `{}`",
                e.from, e.to
            ));
        }
    }
    // Circles: strongly connected components of the module graph.
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        graph.entry(&e.from).or_default().insert(&e.to);
        graph.entry(&e.to).or_default();
    }
    for component in components(&graph) {
        let members: BTreeSet<&str> = component.iter().copied().collect();
        let within: Vec<String> = edges
            .iter()
            .filter(|e| members.contains(e.from.as_str()) && members.contains(e.to.as_str()))
            .map(|e| format!("{} -> {} at {}:{}", e.from, e.to, e.file, e.line))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        bad.push(format!(
            "modules import each other in a circle: {}\n    {}",
            component.join(", "),
            within.join("\n    ")
        ));
    }
    bad
}

/// Tarjan's strongly connected components with more than one member.
fn components<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        found: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(v: &'a str, g: &BTreeMap<&'a str, BTreeSet<&'a str>>, s: &mut State<'a>) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in &g[v] {
            if !s.index.contains_key(w) {
                visit(w, g, s);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort_unstable();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for &v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(v, graph, &mut state);
        }
    }
    state.found
}

fn read_tree(dir: &Path, prefix: &str, out: &mut Vec<(String, String)>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            read_tree(&path, &format!("{prefix}{name}/"), out);
        } else if name.ends_with(".rs") {
            out.push((
                format!("{prefix}{name}"),
                fs::read_to_string(&path).unwrap(),
            ));
        }
    }
}

fn top_level_modules(lib: &str) -> BTreeSet<String> {
    code_only(lib)
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?
                .strip_suffix(';')
                .map(str::to_string)
        })
        .collect()
}

#[test]
fn no_command_imports_a_command_and_no_module_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = top_level_modules(&fs::read_to_string(src.join("lib.rs")).unwrap());
    let commands = command_modules(&fs::read_to_string(src.join("cli.rs")).unwrap());
    assert!(commands.len() >= 20, "cli.rs names {commands:?}");
    for c in &commands {
        assert!(
            modules.contains(c),
            "cli.rs names `{c}`, which lib.rs does not declare"
        );
    }
    let mut files = Vec::new();
    read_tree(&src, "", &mut files);
    let edges = edges(&files, &modules);
    assert!(
        edges.len() > 200,
        "only {} crate:: references found: the scan is broken",
        edges.len()
    );
    let bad = violations(&edges, &commands);
    assert!(
        bad.is_empty(),
        "{} layering violation(s) (see ARCHITECTURE.md, invariants):\n{}",
        bad.len(),
        bad.join("\n")
    );
    println!(
        "layers: {} modules ({} commands), {} crate:: references, no violation",
        modules.len(),
        commands.len(),
        edges.len()
    );
}

/// The scan itself: each rule fires on a small made-up tree, and comments,
/// strings and `$crate` do not count.
#[test]
fn the_scan_finds_each_kind_of_violation() {
    let file = |p: &str, t: &str| (p.to_string(), t.to_string());
    let files = vec![
        file(
            "cli.rs",
            "use crate::{alpha, beta};\npub enum Command { A(alpha::Cmd), B(beta::Cmd) }\n",
        ),
        file(
            "alpha/mod.rs",
            "//! See crate::beta for more.\nuse crate::{\n    lib_a::X,\n    beta::{self, Y},\n};\nfn f() { let s = \"crate::beta\"; let c = '\"'; }\n",
        ),
        file("alpha/deep.rs", "fn g() { super::super::lib_b::h(); }\n"),
        file("beta.rs", "use crate::lib_a;\nmacro_rules! m { () => { $crate::alpha::x() } }\n"),
        file("lib_a.rs", "pub fn x() { crate::lib_b::y() }\n"),
        file("lib_b.rs", "pub fn y() { crate::lib_a::x() }\n"),
        file("lib_c.rs", "use crate::alpha;\nfn z() { crate::cli::Cli::z() }\n"),
    ];
    let modules: BTreeSet<String> = ["cli", "alpha", "beta", "lib_a", "lib_b", "lib_c"]
        .map(String::from)
        .into();
    let commands = command_modules(&files[0].1);
    assert_eq!(commands, ["alpha", "beta"].map(String::from).into());
    let edges = edges(&files, &modules);
    let bad = violations(&edges, &commands);
    let text = bad.join("\n");
    assert!(
        text.contains("xtask/src/alpha/mod.rs:4: command `alpha` imports command `beta`"),
        "{text}"
    );
    assert!(
        text.contains("xtask/src/lib_c.rs:2: `lib_c` imports `cli`"),
        "{text}"
    );
    assert!(
        text.contains("xtask/src/lib_c.rs:1: library `lib_c` imports command `alpha`"),
        "{text}"
    );
    assert!(
        text.contains("modules import each other in a circle: lib_a, lib_b"),
        "{text}"
    );
    assert!(
        edges
            .iter()
            .any(|e| e.file.ends_with("alpha/deep.rs") && e.to == "lib_b"),
        "{edges:?}"
    );
    // The doc comment, the string, the char literal and `$crate` added nothing.
    assert_eq!(
        edges
            .iter()
            .filter(|e| e.from == "alpha" && e.to == "beta")
            .count(),
        1,
        "{edges:?}"
    );
    assert!(!edges.iter().any(|e| e.from == "beta" && e.to == "alpha"));
    assert_eq!(bad.len(), 4, "{text}");
}
