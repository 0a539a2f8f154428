//! The SBOM of the shipped binaries: a CycloneDX 1.5 JSON document listing
//! every crate linked into `mixnode`/`loadgen` for the target (the normal
//! dependency closure of the `mixnode` crate in `cargo metadata --locked`, so
//! exactly what `Cargo.lock` resolved; dev- and build-only dependencies are
//! not shipped and not listed), each with its purl, licence and the
//! `Cargo.lock` sha256 of its `.crate`. Deterministic: sorted, stamped with
//! the commit time, no random serial number.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use xshell::{cmd, Shell};

use super::{
    common::{write_atomic, Release},
    dist::CRATE,
};
use crate::process::Runner;

#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    resolve: Resolve,
}

#[derive(Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    license: Option<String>,
    source: Option<String>,
}

#[derive(Deserialize)]
struct Resolve {
    nodes: Vec<Node>,
}

#[derive(Deserialize)]
struct Node {
    id: String,
    deps: Vec<NodeDep>,
}

#[derive(Deserialize)]
struct NodeDep {
    pkg: String,
    dep_kinds: Vec<DepKind>,
}

#[derive(Deserialize)]
struct DepKind {
    kind: Option<String>,
}

/// Write the SBOM into the artifact directory; returns its file name.
pub fn write(sh: &Shell, runner: &Runner, release: &Release) -> Result<String> {
    let target = &release.target;
    let json = runner.read(cmd!(
        sh,
        "cargo metadata --format-version 1 --locked --offline --filter-platform {target}"
    ))?;
    let metadata: Metadata = serde_json::from_str(&json).context("parsing `cargo metadata`")?;
    let lock =
        std::fs::read_to_string(release.root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let doc = document(&metadata, &checksums(&lock), release)?;
    let name = release.sbom_name();
    write_atomic(
        &release.out.join(&name),
        (serde_json::to_string_pretty(&doc)? + "\n").as_bytes(),
    )?;
    Ok(name)
}

/// `(name, version)` to the `checksum` of each registry package in `Cargo.lock`.
fn checksums(lock: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let (mut name, mut version) = (None, None);
    for line in lock.lines() {
        let value = |key: &str| {
            line.strip_prefix(key)
                .and_then(|v| v.trim().strip_prefix('"'))
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string)
        };
        if line == "[[package]]" {
            (name, version) = (None, None);
        } else if let Some(v) = value("name = ") {
            name = Some(v);
        } else if let Some(v) = value("version = ") {
            version = Some(v);
        } else if let (Some(sum), Some(n), Some(v)) = (value("checksum = "), &name, &version) {
            out.insert((n.clone(), v.clone()), sum);
        }
    }
    out
}

/// The normal-dependency closure of [`CRATE`] as a CycloneDX document.
fn document(
    metadata: &Metadata,
    sums: &BTreeMap<(String, String), String>,
    release: &Release,
) -> Result<Value> {
    let root = metadata
        .packages
        .iter()
        .find(|p| p.name == CRATE && p.source.is_none())
        .with_context(|| format!("no workspace crate `{CRATE}` in cargo metadata"))?;
    let nodes: BTreeMap<&str, &Node> = metadata
        .resolve
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n))
        .collect();
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.id.as_str()];
    while let Some(id) = stack.pop() {
        let Some(node) = nodes.get(id) else { continue };
        for dep in &node.deps {
            let normal = dep.dep_kinds.iter().any(|k| k.kind.is_none());
            if normal && seen.insert(dep.pkg.as_str()) {
                stack.push(dep.pkg.as_str());
            }
        }
    }
    let mut components: Vec<Value> = metadata
        .packages
        .iter()
        .filter(|p| seen.contains(p.id.as_str()))
        .map(|p| component(p, sums))
        .collect();
    components.sort_by(|a, b| a["purl"].as_str().cmp(&b["purl"].as_str()));
    Ok(json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": release.created(),
            "tools": {"components": [{"type": "application", "name": "cargo xtask release dist"}]},
            "component": {
                "type": "application",
                "bom-ref": purl(&root.name, &release.version),
                "name": "fog-compute",
                "version": release.version,
                "purl": purl(&root.name, &release.version),
                "licenses": licenses(root.license.as_deref()),
                "properties": [{"name": "vcs:revision", "value": release.revision}],
            },
        },
        "components": components,
    }))
}

fn purl(name: &str, version: &str) -> String {
    format!("pkg:cargo/{name}@{version}")
}

fn licenses(expression: Option<&str>) -> Value {
    match expression {
        Some(e) => json!([{"expression": e}]),
        None => json!([]),
    }
}

fn component(p: &Package, sums: &BTreeMap<(String, String), String>) -> Value {
    let purl = purl(&p.name, &p.version);
    let mut c = json!({
        "type": "library",
        "bom-ref": purl,
        "name": p.name,
        "version": p.version,
        "purl": purl,
        "licenses": licenses(p.license.as_deref()),
    });
    if let Some(sum) = sums.get(&(p.name.clone(), p.version.clone())) {
        c["hashes"] = json!([{"alg": "SHA-256", "content": sum}]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_checksums_are_read_per_package() {
        let lock = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\nsource = \"registry+x\"\nchecksum = \"abc\"\n\n[[package]]\nname = \"local\"\nversion = \"0.1.0\"\n\n[[package]]\nname = \"b\"\nversion = \"2.0.0\"\nchecksum = \"def\"\n";
        let sums = checksums(lock);
        assert_eq!(sums.len(), 2);
        assert_eq!(sums[&("a".into(), "1.0.0".into())], "abc");
        assert_eq!(sums[&("b".into(), "2.0.0".into())], "def");
    }

    #[test]
    fn closure_follows_normal_deps_only() {
        let pkg = |id: &str, name: &str| Package {
            id: id.into(),
            name: name.into(),
            version: "1.0.0".into(),
            license: Some("MIT".into()),
            source: (name != CRATE).then(|| "registry".into()),
        };
        let dep = |pkg: &str, kind: Option<&str>| NodeDep {
            pkg: pkg.into(),
            dep_kinds: vec![DepKind {
                kind: kind.map(str::to_string),
            }],
        };
        let metadata = Metadata {
            packages: vec![
                pkg("m", CRATE),
                pkg("t", "tokio"),
                pkg("b", "cc"),
                pkg("d", "tempfile"),
                pkg("p", "pin"),
            ],
            resolve: Resolve {
                nodes: vec![
                    Node {
                        id: "m".into(),
                        deps: vec![
                            dep("t", None),
                            dep("b", Some("build")),
                            dep("d", Some("dev")),
                        ],
                    },
                    Node {
                        id: "t".into(),
                        deps: vec![dep("p", None)],
                    },
                ],
            },
        };
        let release = Release {
            root: "/r".into(),
            version: "1.0.0".into(),
            revision: "f".repeat(40),
            short: "fffffff".into(),
            epoch: 0,
            target: "x".into(),
            out: "/o".into(),
        };
        let doc = document(&metadata, &BTreeMap::new(), &release).unwrap();
        let names: Vec<&str> = doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["pin", "tokio"]);
        assert_eq!(doc["metadata"]["timestamp"], "1970-01-01T00:00:00Z");
    }
}
