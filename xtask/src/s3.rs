//! An S3-compatible object store (AWS, SeaweedFS, MinIO, ...) through the
//! blocking client of the `rust-s3` crate (attohttpc + rustls, no async
//! runtime). [`Location`] parses `s3://BUCKET/PREFIX`; [`Store::open`] takes
//! the endpoint from `--endpoint` or `FOG_S3_ENDPOINT`, the region from
//! `FOG_S3_REGION`/`AWS_REGION` (default `us-east-1`), credentials from
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` or else the shared credentials
//! file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`, profile
//! `AWS_PROFILE`), and always uses path-style addressing. Uploads stream from
//! a file and are verified by reading the object back and hashing it;
//! downloads stream into a writer, hashed in the same pass.

use std::{
    fs::File,
    io::{Read, Write},
    path::Path,
};

use anyhow::{bail, Context, Result};
use s3::{creds::Credentials, Bucket, Region};
use sha2::{Digest, Sha256};

/// `s3://BUCKET/PREFIX`: a bucket and a key prefix (no leading or trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub bucket: String,
    pub prefix: String,
}

impl Location {
    /// Parse `s3://BUCKET[/PREFIX]`; `None` if `text` is not an s3 URL.
    pub fn parse(text: &str) -> Option<Result<Location>> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = !bucket.is_empty()
            && bucket.len() <= 63
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
        if !valid {
            return Some(Err(crate::UsageError::new(format!(
                "`{text}`: the bucket must be 1-63 lowercase letters, digits, `-` or `.` (s3://BUCKET/PREFIX)"
            ))
            .into()));
        }
        Some(Ok(Location {
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
        }))
    }

    /// The key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The URL of `name` under the prefix.
    pub fn url(&self, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(name))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// One object of a listing.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Object {
    /// The key's last part (the file name).
    pub name: String,
    pub key: String,
    pub size: u64,
    pub last_modified: String,
}

/// An open bucket.
pub struct Store {
    pub location: Location,
    pub endpoint: String,
    bucket: Box<Bucket>,
    credentials: Credentials,
}

/// A throwaway secret (a local test or bench server's identity).
pub fn random_secret() -> String {
    let mut hash = Sha256::new();
    hash.update(std::process::id().to_le_bytes());
    hash.update(format!("{:?}", std::time::SystemTime::now()).as_bytes());
    hash.update(format!("{:p}", &hash as *const _).as_bytes());
    hex::encode(hash.finalize())[..32].to_string()
}

/// The endpoint: `--endpoint`, else `FOG_S3_ENDPOINT`; a usage error without one.
pub fn endpoint(flag: Option<&str>) -> Result<String> {
    let value = flag
        .map(str::to_string)
        .or_else(|| std::env::var("FOG_S3_ENDPOINT").ok())
        .filter(|e| !e.is_empty());
    let Some(value) = value else {
        crate::usage_bail!(
            "no S3 endpoint: pass --endpoint URL or set FOG_S3_ENDPOINT (e.g. https://s3.eu-central-1.amazonaws.com)"
        );
    };
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        crate::usage_bail!("--endpoint `{value}`: give a URL starting with http:// or https://");
    }
    Ok(value.trim_end_matches('/').to_string())
}

fn credentials() -> Result<Credentials> {
    let key = std::env::var("AWS_ACCESS_KEY_ID")
        .ok()
        .filter(|v| !v.is_empty());
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY")
        .ok()
        .filter(|v| !v.is_empty());
    if key.is_some() || secret.is_some() {
        let (Some(key), Some(secret)) = (key, secret) else {
            crate::usage_bail!(
                "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (only one is set)"
            );
        };
        let token = std::env::var("AWS_SESSION_TOKEN")
            .ok()
            .filter(|v| !v.is_empty());
        return Credentials::new(Some(&key), Some(&secret), None, token.as_deref(), None)
            .context("S3 credentials from the environment");
    }
    let profile = std::env::var("AWS_PROFILE").ok();
    Credentials::from_profile(profile.as_deref()).map_err(|e| {
        crate::UsageError::new(format!(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or write them to {} ({e})",
            std::env::var("AWS_SHARED_CREDENTIALS_FILE")
                .unwrap_or_else(|_| "~/.aws/credentials".into())
        ))
        .into()
    })
}

impl Store {
    /// Open `location` at `endpoint` (see [`endpoint`]) with the caller's credentials.
    pub fn open(location: &Location, endpoint: &str) -> Result<Store> {
        Self::open_with(location, endpoint, credentials()?)
    }

    /// Open with these credentials instead of the caller's.
    pub fn with_credentials(
        location: &Location,
        endpoint: &str,
        key: &str,
        secret: &str,
    ) -> Result<Store> {
        let creds = Credentials::new(Some(key), Some(secret), None, None, None)
            .context("S3 credentials")?;
        Self::open_with(location, endpoint, creds)
    }

    fn open_with(location: &Location, endpoint: &str, credentials: Credentials) -> Result<Store> {
        let region = std::env::var("FOG_S3_REGION")
            .or_else(|_| std::env::var("AWS_REGION"))
            .unwrap_or_else(|_| "us-east-1".into());
        let region = Region::Custom {
            region,
            endpoint: endpoint.to_string(),
        };
        let mut bucket = Bucket::new(&location.bucket, region, credentials.clone())
            .context("opening the S3 bucket")?
            .with_path_style();
        bucket.set_request_timeout(Some(std::time::Duration::from_secs(300)));
        Ok(Store {
            location: location.clone(),
            endpoint: endpoint.to_string(),
            bucket,
            credentials,
        })
    }

    /// The same bucket and credentials with `sub` appended to the prefix.
    pub fn child(&self, sub: &str) -> Result<Store> {
        let prefix = match self.location.prefix.as_str() {
            "" => sub.to_string(),
            p => format!("{p}/{sub}"),
        };
        let location = Location {
            bucket: self.location.bucket.clone(),
            prefix,
        };
        Self::open_with(&location, &self.endpoint, self.credentials.clone())
    }

    fn what(&self, key: &str) -> String {
        format!("s3://{}/{key} at {}", self.location.bucket, self.endpoint)
    }

    /// Upload `path` as `name` under the prefix, then read it back and
    /// compare its sha256 with the file's. Returns bytes and sha256.
    pub fn upload_verified(&self, path: &Path, name: &str) -> Result<(u64, String)> {
        let key = self.location.key(name);
        let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut hashing = HashingReader::new(&mut file);
        self.bucket
            .put_object_stream(&mut hashing, &key)
            .with_context(|| format!("uploading {} to {}", path.display(), self.what(&key)))?;
        let (size, sent) = hashing.finish();
        let (got_size, got) = self.download(name, &mut std::io::sink())?;
        if got != sent || got_size != size {
            bail!(
                "{}: the uploaded object reads back as {got_size} bytes, sha256 {got}, not the {size} bytes, sha256 {sent} that were sent; upload again",
                self.what(&key)
            );
        }
        Ok((size, sent))
    }

    /// Stream `name` under the prefix into `to`; bytes and sha256.
    pub fn download(&self, name: &str, to: &mut (impl Write + Send)) -> Result<(u64, String)> {
        let key = self.location.key(name);
        let mut hashing = HashingWriter::new(to);
        self.bucket
            .get_object_to_writer(&key, &mut hashing)
            .with_context(|| format!("downloading {}", self.what(&key)))?;
        hashing.inner.flush()?;
        Ok(hashing.finish())
    }

    /// A small object (a manifest, a `.sha256`) as text.
    pub fn read_small(&self, name: &str) -> Result<String> {
        let mut bytes = Vec::new();
        self.download(name, &mut bytes)?;
        String::from_utf8(bytes).with_context(|| format!("{} is not text", self.location.url(name)))
    }

    /// Every object directly under the prefix, in key order.
    pub fn list(&self) -> Result<Vec<Object>> {
        let prefix = if self.location.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.location.prefix)
        };
        let pages = self
            .bucket
            .list(prefix.clone(), Some("/".into()))
            .with_context(|| format!("listing {}", self.what(&prefix)))?;
        let mut out: Vec<Object> = pages
            .into_iter()
            .flat_map(|p| p.contents)
            .map(|o| Object {
                name: o.key[prefix.len()..].to_string(),
                key: o.key,
                size: o.size,
                last_modified: o.last_modified,
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Delete `name` under the prefix.
    pub fn delete(&self, name: &str) -> Result<()> {
        let key = self.location.key(name);
        self.bucket
            .delete_object(&key)
            .with_context(|| format!("deleting {}", self.what(&key)))?;
        Ok(())
    }

    /// Create the bucket (tests and first use); an existing bucket is fine.
    pub fn create_bucket(&self) -> Result<()> {
        let region = self.bucket.region.clone();
        match Bucket::create_with_path_style(
            &self.location.bucket,
            region,
            self.credentials.clone(),
            s3::BucketConfiguration::default(),
        ) {
            Ok(_) => Ok(()),
            Err(s3::error::S3Error::HttpFailWithBody(409, _)) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("creating bucket {}", self.location)),
        }
    }
}

struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }
    fn finish(self) -> (u64, String) {
        (self.bytes, hex::encode(self.hash.finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }
    /// Bytes written and their sha256 (hex).
    pub fn finish(self) -> (u64, String) {
        (self.bytes, hex::encode(self.hash.finalize()))
    }
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        let l = Location::parse("s3://fog-backups/prod/db/")
            .unwrap()
            .unwrap();
        assert_eq!(l.bucket, "fog-backups");
        assert_eq!(l.prefix, "prod/db");
        assert_eq!(l.key("a.dump"), "prod/db/a.dump");
        assert_eq!(l.url("a.dump"), "s3://fog-backups/prod/db/a.dump");
        assert_eq!(l.to_string(), "s3://fog-backups/prod/db");
        let bare = Location::parse("s3://b").unwrap().unwrap();
        assert_eq!(bare.key("x"), "x");
        assert_eq!(bare.to_string(), "s3://b");
        assert!(Location::parse("backups/x.dump").is_none());
        assert!(Location::parse("s3://").unwrap().is_err());
        assert!(Location::parse("s3://Upper/x").unwrap().is_err());
    }

    #[test]
    fn hashing_writer_counts() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (n, h) = w.finish();
        assert_eq!(n, 3);
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
