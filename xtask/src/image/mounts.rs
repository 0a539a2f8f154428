//! Mounts left below a debootstrap target. debootstrap mounts `proc` (and
//! `sys`, and may bind `/dev`) inside the rootfs it builds and does not
//! always unmount them when it fails; removing such a tree would descend into
//! the host's live filesystems, and copying it (a `cp -a` of `target/`) copies
//! `/proc/kcore`. So before a partial rootfs is removed, every mount below it
//! is detached (deepest first, `umount2(MNT_DETACH)`), and removal is refused
//! while any is still there. The mount table is `/proc/self/mountinfo`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The mount points strictly below `dir`, deepest first.
pub fn below(dir: &Path) -> Result<Vec<PathBuf>> {
    let table =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(mounts_below(&table, dir))
}

/// Detach every mount below `dir`; fails naming those that stay.
pub fn detach_below(dir: &Path) -> Result<()> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    for mount in below(&dir)? {
        let Ok(c_path) = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: a valid NUL-terminated path; umount2 reads it only.
        let rc = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
        if rc == 0 {
            eprintln!("unmounted {} (left by debootstrap)", mount.display());
        }
    }
    let left = below(&dir)?;
    if !left.is_empty() {
        bail!(
            "{} still has mounts below it ({}); unmount them (`umount -l PATH`, as root) before it can be removed",
            dir.display(),
            left.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// [`detach_below`], then remove `dir` (absent is fine).
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    detach_below(dir)?;
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

/// The mount points of a mountinfo `table` strictly below `dir`, deepest first.
fn mounts_below(table: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape(point)))
        .filter(|point| point != dir && point.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
98 22 0:5 / /work/t/p/rootfs/proc rw,relatime - proc proc rw
99 98 0:6 / /work/t/p/rootfs/proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
100 22 0:7 / /work/t/p/rootfs/sys rw - sysfs sysfs rw
101 22 0:8 / /work/t/p2/rootfs/proc rw - proc proc rw
102 22 0:9 / /work/t/p/odd\\040dir rw - tmpfs tmpfs rw
";

    #[test]
    fn mounts_below_a_dir_come_deepest_first_and_only_its_own() {
        let found = mounts_below(TABLE, Path::new("/work/t/p"));
        assert_eq!(
            found,
            [
                "/work/t/p/rootfs/proc/sys/fs/binfmt_misc",
                "/work/t/p/rootfs/proc",
                "/work/t/p/rootfs/sys",
                "/work/t/p/odd dir",
            ]
            .map(PathBuf::from)
        );
        assert!(mounts_below(TABLE, Path::new("/work/t/p/rootfs/proc/sys")).len() == 1);
        assert!(mounts_below(TABLE, Path::new("/elsewhere")).is_empty());
    }
}
