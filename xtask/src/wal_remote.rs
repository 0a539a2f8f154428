//! The WAL archive off the host: how `backup wal --to s3://BUCKET/PREFIX`
//! stores segments and how `restore --to-time --from` and `backup prune
//! --from` find them again. Each archived file (segment or timeline
//! `.history`) becomes the object `PREFIX/<project>-wal/<NAME>.gz` (gzip,
//! fast level: a switched, mostly empty 16 MiB segment shrinks to a few KiB),
//! or `<NAME>.gz.age` when encrypted to an age recipient, and is followed by
//! `<object>.sha256` (`sha256sum -c` format) only once the object read back
//! with the sha256 that was sent: a segment counts as shipped when its
//! `.sha256` is there. The local ledger `<backups>/.wal-shipped-<project>.json`
//! records every verified upload (raw and stored size and sha256); local WAL
//! pruning never removes a segment it does not list.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{Read, Write},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::{
    backups::archive,
    backups::encrypt,
    s3::Store,
    wal::{is_archived_file, Segment},
};

/// Bytes of a WAL segment (the default `--wal-segsize`).
pub const SEGMENT_BYTES: u64 = 16 << 20;

/// The WAL store of `project` under `base`'s prefix.
pub fn store(base: &Store, project: &str) -> Result<Store> {
    base.child(&format!("{project}-wal"))
}

/// The object name of archived file `name`.
pub fn object_name(name: &str, encrypted: bool) -> String {
    if encrypted {
        format!("{name}.gz{}", encrypt::SUFFIX)
    } else {
        format!("{name}.gz")
    }
}

/// The archived file an object holds, if it is one of ours.
pub fn source_name(object: &str) -> Option<&str> {
    let stem = object
        .strip_suffix(".gz.age")
        .or_else(|| object.strip_suffix(".gz"))?;
    is_archived_file(stem).then_some(stem)
}

/// One verified upload.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Shipped {
    pub object: String,
    pub size: u64,
    pub sha256: String,
    pub stored_size: u64,
    pub stored_sha256: String,
}

/// What has been shipped where.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct Ledger {
    /// `s3://BUCKET/PREFIX/<project>-wal`.
    pub to: String,
    pub files: BTreeMap<String, Shipped>,
}

pub fn ledger_path(dir: &Path, project: &str) -> PathBuf {
    dir.join(format!(".wal-shipped-{project}.json"))
}

/// The ledger, if shipping ever ran for `project`.
pub fn load_ledger(dir: &Path, project: &str) -> Result<Option<Ledger>> {
    let path = ledger_path(dir, project);
    if !path.exists() {
        return Ok(None);
    }
    let text = archive::read_small(&path)?;
    serde_json::from_str(&text)
        .map(Some)
        .with_context(|| format!("{}: unreadable WAL shipping ledger; move it away and run `backup wal --to` again (it re-ships what is missing)", path.display()))
}

pub fn save_ledger(dir: &Path, project: &str, ledger: &Ledger) -> Result<()> {
    archive::write_atomic(
        &ledger_path(dir, project),
        serde_json::to_string_pretty(ledger)?.as_bytes(),
    )
}

/// Gzip (and encrypt, when this run encrypts) `from` into the file `dest`.
/// Raw bytes and sha256, stored bytes and sha256.
pub fn encode(from: &mut impl Read, dest: &Path) -> Result<(u64, String, u64, String)> {
    let mut file = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let sink = encrypt::Sink::new(&mut file)?;
    let mut gz = flate2::write::GzEncoder::new(sink, flate2::Compression::fast());
    let mut hash = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        gz.write_all(&buf[..n])?;
        size += n as u64;
    }
    let sink = gz.finish().context("compressing a WAL file")?;
    let (stored_size, stored_sha) = sink.finish()?;
    file.sync_all()?;
    Ok((size, hex::encode(hash.finalize()), stored_size, stored_sha))
}

/// Upload the encoded file `path` as `object`, check the read-back sha256
/// against `sha256`, then upload its `.sha256` (also read back).
pub fn upload(store: &Store, path: &Path, object: &str, sha256: &str) -> Result<()> {
    let (_, got) = store.upload_verified(path, object)?;
    if got != sha256 {
        bail!(
            "{}: stored with sha256 {got}, not the {sha256} that was encoded",
            store.location.url(object)
        );
    }
    let side = path.with_file_name(format!(
        "{}.sha256",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&side, format!("{sha256}  {object}\n"))?;
    store.upload_verified(&side, &format!("{object}.sha256"))?;
    let _ = std::fs::remove_file(side);
    Ok(())
}

/// The shipped files in the store: archived name -> object, only those
/// whose `.sha256` is there (the upload verified).
pub fn list(store: &Store) -> Result<BTreeMap<String, String>> {
    let objects = store.list()?;
    let names: std::collections::BTreeSet<&str> = objects.iter().map(|o| o.name.as_str()).collect();
    Ok(objects
        .iter()
        .filter_map(|o| {
            let src = source_name(&o.name)?;
            names
                .contains(format!("{}.sha256", o.name).as_str())
                .then(|| (src.to_string(), o.name.clone()))
        })
        .collect())
}

/// Download `object` into `work`, check it against its `.sha256`, decrypt
/// (with `--identity`) and gunzip it into `dest`. The bytes written.
pub fn fetch(store: &Store, object: &str, work: &Path, dest: &Path) -> Result<u64> {
    let url = store.location.url(object);
    let recorded_text = store
        .read_small(&format!("{object}.sha256"))
        .with_context(|| format!("{url}: its .sha256 is missing, so it cannot be verified"))?;
    let recorded = recorded_text.split_whitespace().next().unwrap_or_default();
    let tmp = work.join(object);
    let (size, sha) = {
        let mut file = File::create(&tmp)?;
        let mut w = std::io::BufWriter::new(&mut file);
        let got = store.download(object, &mut w)?;
        w.flush()?;
        got
    };
    if sha != recorded {
        bail!("{url}: downloaded {size} bytes with sha256 {sha}, but its .sha256 says {recorded}: the copy in the bucket is damaged");
    }
    let reader = encrypt::open(&tmp)?;
    let mut gz = flate2::read::GzDecoder::new(reader);
    let mut out = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let n = std::io::copy(&mut gz, &mut out).with_context(|| format!("{url}: cannot decode"))?;
    out.sync_all()?;
    let _ = std::fs::remove_file(&tmp);
    let name = source_name(object).unwrap_or(object);
    if Segment::parse(name).is_some() && n != SEGMENT_BYTES {
        bail!("{url}: decodes to {n} bytes, a WAL segment has {SEGMENT_BYTES}");
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_round_trip() {
        assert_eq!(
            object_name("000000010000000000000003", false),
            "000000010000000000000003.gz"
        );
        assert_eq!(
            source_name("000000010000000000000003.gz.age"),
            Some("000000010000000000000003")
        );
        assert_eq!(source_name("00000002.history.gz"), Some("00000002.history"));
        assert_eq!(source_name("000000010000000000000003.gz.sha256"), None);
        assert_eq!(source_name("x.gz"), None);
        assert!(!is_archived_file(".000000010000000000000003.partial"));
    }

    #[test]
    fn encode_gzips_and_hashes_both_sides() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("seg.gz");
        let raw = vec![0u8; 1 << 20];
        let (size, sha, stored, stored_sha) = encode(&mut raw.as_slice(), &dest).unwrap();
        assert_eq!(size, 1 << 20);
        assert_eq!(
            sha,
            hex::encode(Sha256::digest(&raw)),
            "the raw hash is of the input"
        );
        let bytes = std::fs::read(&dest).unwrap();
        assert_eq!(stored, bytes.len() as u64);
        assert!(stored < 16 << 10, "zeros compress: {stored}");
        assert_eq!(stored_sha, hex::encode(Sha256::digest(&bytes)));
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, raw);
    }
}
