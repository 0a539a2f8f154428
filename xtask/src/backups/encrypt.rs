//! Encryption at rest with age (X25519 recipients, the `age` crate): a
//! backup taken with `--encrypt-to age1...` is encrypted in the process
//! before its bytes reach the archive file, so the file, its `.sha256` and
//! the manifest's size and hash are all of the ciphertext, and the archive is
//! named `<name>.age`. [`Sink`] is the writer a backup streams into; [`open`]
//! is how every reader (verify, drill, restore) opens an archive: plain
//! files as they are, `.age` files decrypted with the identity given by
//! `--identity FILE`, refused with one line naming the flag without it. The
//! recipient and identity are set once per run by the command line
//! ([`set_recipient`], [`set_identity`]), so the backup and restore code
//! paths stay the same for both.

use std::{
    fs::File,
    io::{BufReader, BufWriter, Read, Write},
    path::{Path, PathBuf},
    sync::OnceLock,
};

use anyhow::{Context, Result};

use crate::s3::HashingWriter;

/// The file-name suffix of an encrypted archive.
pub const SUFFIX: &str = ".age";

static RECIPIENT: OnceLock<age::x25519::Recipient> = OnceLock::new();
static IDENTITY: OnceLock<PathBuf> = OnceLock::new();

/// Parse an `age1...` recipient.
pub fn parse_recipient(text: &str) -> Result<age::x25519::Recipient> {
    match text.trim().parse::<age::x25519::Recipient>() {
        Ok(r) => Ok(r),
        Err(e) => crate::usage_bail!(
            "--encrypt-to `{text}`: not an age X25519 recipient ({e}); give the `age1...` public key (`age-keygen -y KEYFILE` prints it)"
        ),
    }
}

/// Encrypt this run's backups to `recipient`.
pub fn set_recipient(text: &str) -> Result<()> {
    let r = parse_recipient(text)?;
    let _ = RECIPIENT.set(r);
    Ok(())
}

/// Decrypt this run's archives with the identities in `file`.
pub fn set_identity(file: &Path) -> Result<()> {
    let file = crate::absolute(file);
    if !file.is_file() {
        crate::usage_bail!(
            "--identity {}: no such file (give the age secret key file, AGE-SECRET-KEY-1...)",
            file.display()
        );
    }
    let _ = IDENTITY.set(file);
    Ok(())
}

/// Whether backups of this run are encrypted (their names end in `.age`).
pub fn encrypting() -> bool {
    RECIPIENT.get().is_some()
}

/// `name` as this run writes it: with `.age` when encrypting.
pub fn archive_name(name: String) -> String {
    if encrypting() {
        name + SUFFIX
    } else {
        name
    }
}

/// Whether `path` is an encrypted archive.
pub fn is_encrypted(path: &Path) -> bool {
    path.to_string_lossy().ends_with(SUFFIX)
}

/// Where a backup's bytes go: the archive file, through age when this run
/// encrypts, hashing what reaches the file.
pub struct Sink<'a> {
    inner: Inner<'a>,
}

enum Inner<'a> {
    Plain(HashingWriter<BufWriter<&'a mut File>>),
    Age(age::stream::StreamWriter<HashingWriter<BufWriter<&'a mut File>>>),
}

impl<'a> Sink<'a> {
    pub fn new(file: &'a mut File) -> Result<Sink<'a>> {
        let hashing = HashingWriter::new(BufWriter::with_capacity(super::archive::CHUNK, file));
        let inner = match RECIPIENT.get() {
            None => Inner::Plain(hashing),
            Some(r) => {
                let encryptor =
                    age::Encryptor::with_recipients(std::iter::once(r as &dyn age::Recipient))
                        .context("setting up age encryption")?;
                Inner::Age(
                    encryptor
                        .wrap_output(hashing)
                        .context("writing the age header")?,
                )
            }
        };
        Ok(Sink { inner })
    }

    /// Flush everything into the file; bytes written to it and their sha256.
    pub fn finish(self) -> Result<(u64, String)> {
        let mut hashing = match self.inner {
            Inner::Plain(h) => h,
            Inner::Age(w) => w.finish().context("finishing the age stream")?,
        };
        hashing.flush().context("writing the archive")?;
        Ok(hashing.finish())
    }
}

impl Write for Sink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(w) => w.write(buf),
            Inner::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Plain(w) => w.flush(),
            Inner::Age(w) => w.flush(),
        }
    }
}

/// Open an archive for reading its content: decrypted if it is `.age`.
pub fn open(path: &Path) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    if !is_encrypted(path) {
        return Ok(Box::new(file));
    }
    let Some(identity) = IDENTITY.get() else {
        crate::usage_bail!(
            "{} is encrypted (age): pass --identity FILE with its secret key; nothing was touched",
            path.display()
        );
    };
    decrypt(
        BufReader::with_capacity(super::archive::CHUNK, file),
        identity,
    )
    .with_context(|| format!("{}: cannot decrypt", path.display()))
}

fn decrypt(input: BufReader<File>, identity: &Path) -> Result<Box<dyn Read + Send>> {
    let identities = age::IdentityFile::from_file(identity.to_string_lossy().into_owned())
        .with_context(|| format!("reading the identity file {}", identity.display()))?
        .into_identities()
        .with_context(|| format!("{}: not an age identity file", identity.display()))?;
    let decryptor = age::Decryptor::new_buffered(input).context("not an age file")?;
    let reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| {
            crate::UsageError::new(format!(
                "the key in {} does not open it ({e}): pass the identity of the recipient it was encrypted to",
                identity.display()
            ))
        })?;
    Ok(Box::new(reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_checked() {
        let key = age::x25519::Identity::generate();
        let public = key.to_public().to_string();
        assert!(parse_recipient(&public).is_ok());
        let err = parse_recipient("age1nope").unwrap_err();
        assert!(err.downcast_ref::<crate::UsageError>().is_some());
        assert!(is_encrypted(Path::new("/b/x.dump.age")));
        assert!(!is_encrypted(Path::new("/b/x.dump")));
    }
}
