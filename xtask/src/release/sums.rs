//! `SHA256SUMS` of the artifact directory in the format `sha256sum -c`
//! accepts (`<hex>  <file>`, one line per file, sorted by name). `dist` writes
//! it over the archive and SBOM; `images` adds the bundle and `images.lock`,
//! so the one signature covers binaries and images alike. Only plain file
//! names are accepted when reading: a listed `../x` or `/etc/x` is an error.

use std::{collections::BTreeMap, fs, path::Path};

use anyhow::{bail, Context, Result};

use super::common::{write_atomic, SUMS};
use crate::image::sha256_file;

/// The file names and hashes listed in `dir/SHA256SUMS` (empty when absent).
pub fn read(dir: &Path) -> Result<BTreeMap<String, String>> {
    let path = dir.join(SUMS);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    parse(&fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?)
}

fn parse(text: &str) -> Result<BTreeMap<String, String>> {
    let mut sums = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let Some((hash, file)) = line.split_once("  ") else {
            bail!("{SUMS} line {}: expected `<sha256>  <file>`", i + 1);
        };
        let plain = !file.is_empty() && !file.contains('/') && !file.starts_with('.');
        if !plain {
            bail!("{SUMS} line {}: `{file}` is not a plain file name", i + 1);
        }
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{SUMS} line {}: `{hash}` is not a sha256", i + 1);
        }
        sums.insert(file.to_string(), hash.to_ascii_lowercase());
    }
    Ok(sums)
}

/// Hash `files` (names in `dir`) and merge them into `dir/SHA256SUMS`,
/// keeping entries for other files that still exist.
pub fn update(dir: &Path, files: &[String]) -> Result<()> {
    let mut sums = read(dir)?;
    sums.retain(|file, _| dir.join(file).is_file());
    for file in files {
        let hash = sha256_file(&dir.join(file)).with_context(|| format!("hashing {file}"))?;
        sums.insert(file.clone(), hash);
    }
    write_atomic(&dir.join(SUMS), render(&sums).as_bytes())
}

fn render(sums: &BTreeMap<String, String>) -> String {
    sums.iter().map(|(f, h)| format!("{h}  {f}\n")).collect()
}

/// Check every file `dir/SHA256SUMS` lists; return the names. Names the first
/// file that is missing or does not match.
pub fn check(dir: &Path) -> Result<Vec<String>> {
    if !dir.join(SUMS).is_file() {
        bail!(
            "{} has no {SUMS}: run `cargo xtask release dist` first",
            dir.display()
        );
    }
    let sums = read(dir)?;
    for (file, expected) in &sums {
        let actual = sha256_file(&dir.join(file))
            .with_context(|| format!("{file}: listed in {SUMS} but unreadable"))?;
        if &actual != expected {
            bail!("{file}: sha256 {actual} does not match {SUMS} (corrupt or modified)");
        }
    }
    Ok(sums.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_paths_and_bad_hashes() {
        let h = "a".repeat(64);
        assert_eq!(
            parse(&format!("{h}  x.tar.gz\n")).unwrap()[&"x.tar.gz".to_string()],
            h
        );
        for bad in [
            format!("{h}  ../x"),
            format!("{h}  /etc/passwd"),
            format!("{h}  .hidden"),
            format!("{h} x"),
            "abc  x".to_string(),
        ] {
            assert!(parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn update_then_check_then_tamper() {
        let dir = std::env::temp_dir().join(format!("xtask-sums-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("b"), b"bee").unwrap();
        fs::write(dir.join("a"), b"ay").unwrap();
        update(&dir, &["b".into()]).unwrap();
        update(&dir, &["a".into()]).unwrap();
        let text = fs::read_to_string(dir.join(SUMS)).unwrap();
        assert!(text.ends_with("  a\n") || text.contains("  a\n"), "{text}");
        assert!(text.find("  a\n") < text.find("  b\n"), "sorted: {text}");
        assert_eq!(check(&dir).unwrap(), ["a", "b"]);
        fs::write(dir.join("b"), b"bea").unwrap();
        let err = check(&dir).unwrap_err().to_string();
        assert!(err.starts_with("b: sha256"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
