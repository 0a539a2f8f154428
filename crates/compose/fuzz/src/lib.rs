//! The `compose_loader` fuzz logic, shared by the libFuzzer target and the
//! plain `cargo test` below. An input is split at the first NUL into a
//! compose file and an env file. Both are loaded the way `config` does
//! (env values interpolated in order, the compose file interpolated,
//! normalised, `extends` resolved, merged over itself as a second `-f`), for
//! Compose v1 and v2. Errors are fine; a panic, or `config` output that does
//! not read back to the same services, is a bug.

use std::path::Path;

use compose::{EnvSource, Flavour, Project, SourceFile};

/// One fuzz iteration; panics only on a real bug.
pub fn compose_loader(data: &[u8]) {
    let (compose, env_text) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(text) = std::str::from_utf8(compose) else {
        return;
    };
    let env_text = String::from_utf8_lossy(env_text);
    let dir = Path::new("/nonexistent-fuzz-dir");
    for flavour in [Flavour::V1, Flavour::V2] {
        let base = EnvSource::from_pairs([("SET", "value"), ("EMPTY", "")]).with_flavour(flavour);
        let mut env = base.clone();
        if let Ok(vars) = base.read_vars(&dir.join(".env"), &env_text) {
            for (k, v) in vars {
                env.set_file_var(&k, &v);
            }
        }
        let path = dir.join("compose.yml");
        let Ok(a) = SourceFile::from_text(&path, text, &env) else {
            continue;
        };
        let Ok(b) = SourceFile::from_text(&dir.join("override.yml"), text, &env) else {
            panic!("the same text loaded once and failed the second time");
        };
        let Ok(project) = Project::from_sources(vec![a, b], &env) else {
            continue;
        };
        let out = project.to_yaml();
        let reread = SourceFile::from_text(&dir.join("out.yml"), &out, &env)
            .unwrap_or_else(|e| panic!("config output does not read back: {e}\n{out}"));
        let again = Project::from_sources(vec![reread], &env)
            .unwrap_or_else(|e| panic!("config output does not load: {e}\n{out}"));
        assert_eq!(project.service_names(), again.service_names(), "{out}");
    }
}

#[cfg(test)]
mod tests {
    use super::compose_loader;

    fn corpus(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                corpus(&p, out);
            } else if let Ok(bytes) = std::fs::read(&p) {
                out.push(bytes);
            }
        }
    }

    /// Runs the fuzz body over the conformance corpus, the hostile inputs of
    /// issue 8 and pseudo-random mutations of both, so the harness is
    /// exercised without nightly or libFuzzer.
    #[test]
    fn fuzz_body_survives_seeds_and_random_inputs() {
        let mut seeds = Vec::new();
        corpus(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/corpus"),
            &mut seeds,
        );
        assert!(seeds.len() > 150, "the corpus seeds are missing");
        let nested = format!("services:\n  a:\n    image: \"{}x{}\"\n", "${A:-".repeat(4000), "}".repeat(4000));
        seeds.push(nested.into_bytes());
        seeds.push(format!("a: {}", "[".repeat(100_000)).into_bytes());
        let refs = vec!["$BIG"; 1000].join(",");
        let mut big = format!("services:\n  a:\n    image: x\n    command: [{refs}]\n").into_bytes();
        big.push(0);
        big.extend(format!("BIG={}\n", "v".repeat(1 << 20)).into_bytes());
        seeds.push(big);
        seeds.push(b"\xEF\xBB\xBFservices: {a: {image: x}}\0\xEF\xBB\xBFA=1".to_vec());
        seeds.push(b"services: {a: {image: \"x\x7fy\", environment: {A: \"\\x7f\"}}}".to_vec());
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let originals = seeds.clone();
        const PIECES: &[&[u8]] = &[b"${", b"}", b":-", b"$$", b"[", b"{", b"\n  ", b": ", b"- ", b"<<: *a", b"&a ", b"!reset ", b"extends: a", b"\0", b"\x7f", b"\xff"];
        for _ in 0..400 {
            let mut input = originals[(next() % originals.len() as u64) as usize].clone();
            for _ in 0..1 + next() % 8 {
                let at = (next() % (input.len() as u64 + 1)) as usize;
                match next() % 3 {
                    0 => {
                        let piece = PIECES[(next() % PIECES.len() as u64) as usize];
                        input.splice(at..at, piece.iter().copied());
                    }
                    1 if at < input.len() => {
                        input.remove(at);
                    }
                    _ => input.truncate(at.max(input.len() / 2)),
                }
            }
            seeds.push(input);
        }
        for seed in &seeds {
            compose_loader(seed);
        }
    }
}
