//! The WAL archive of point-in-time recovery: what is in it and what it can
//! reach. Segment names (`TTTTTTTTXXXXXXXXYYYYYYYY`, 16 MiB segments) become
//! (timeline, segment number); [`runs`] finds the continuous stretches and
//! the gaps between them; [`parse_time`] reads the `--to-time` argument
//! (`YYYY-MM-DD HH:MM:SS[.frac][+TZ]`, UTC without a zone) and [`Lsn`] an
//! LSN. The archive volume itself is read through a throwaway container of the
//! environment's image ([`Archive`]): a listing, and the commit times that
//! `pg_waldump` finds in a segment. Used by `backup base`, `backup verify
//! --wal` and `restore --to-time`.

use anyhow::{bail, Context, Result};

use crate::process::Cmd;
use crate::{database::capture, process::Runner};

/// Where the compose overlays mount the archive volume in the Postgres
/// container (the postgres user's home, so the new volume is its own)...
pub const ARCHIVE_MOUNT: &str = "/var/lib/postgresql";
/// ...and the folder in the volume that holds the segments.
pub const ARCHIVE_SUBDIR: &str = "wal-archive";
/// Where a recovery server mounts the archive volume (read-only).
pub const RECOVERY_MOUNT: &str = "/pitr-archive";
/// Segments per 4 GiB "xlogid" with the default 16 MiB segment size.
const SEGMENTS_PER_ID: u64 = 0x100;

/// One archived segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment {
    pub timeline: u32,
    pub number: u64,
}

impl Segment {
    /// `000000010000000000000002` -> timeline 1, segment 2; anything else: None.
    pub fn parse(name: &str) -> Option<Segment> {
        if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let timeline = u32::from_str_radix(&name[..8], 16).ok()?;
        let id = u64::from_str_radix(&name[8..16], 16).ok()?;
        let seg = u64::from_str_radix(&name[16..], 16).ok()?;
        Some(Segment {
            timeline,
            number: id * SEGMENTS_PER_ID + seg,
        })
    }

    pub fn name(&self) -> String {
        format!(
            "{:08X}{:08X}{:08X}",
            self.timeline,
            self.number / SEGMENTS_PER_ID,
            self.number % SEGMENTS_PER_ID
        )
    }

    /// The segment that holds `lsn` on `timeline`.
    pub fn of(timeline: u32, lsn: Lsn) -> Segment {
        Segment {
            timeline,
            number: lsn.0 >> 24,
        }
    }
}

/// A log sequence number, `X/Y` in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl Lsn {
    pub fn parse(text: &str) -> Option<Lsn> {
        let (hi, lo) = text.trim().split_once('/')?;
        let hi = u64::from_str_radix(hi, 16).ok()?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        (hi <= u32::MAX as u64 && lo <= u32::MAX as u64).then_some(Lsn((hi << 32) | lo))
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// The segments of one timeline from `from` on, split at gaps: the first
/// element is the continuous run starting at `from` (empty when `from`
/// itself is missing), the second the missing segments after it, in order
/// (only the first missing one of each gap).
pub fn runs(segments: &[Segment], from: Segment) -> (Vec<Segment>, Vec<Segment>) {
    let mut mine: Vec<Segment> = segments
        .iter()
        .copied()
        .filter(|s| s.timeline == from.timeline && s.number >= from.number)
        .collect();
    mine.sort();
    mine.dedup();
    let mut run = Vec::new();
    let mut gaps = Vec::new();
    let mut expect = from.number;
    for s in mine {
        if s.number != expect {
            gaps.push(Segment {
                timeline: from.timeline,
                number: expect,
            });
        }
        if gaps.is_empty() {
            run.push(s);
        }
        expect = s.number + 1;
    }
    if run.is_empty() && gaps.is_empty() {
        gaps.push(from);
    }
    (run, gaps)
}

/// Seconds since the epoch of `YYYY-MM-DD HH:MM:SS[.frac][ ]?[Z|UTC|+HH[:MM]|-HH[:MM]]`
/// (also with a `T`); no zone means UTC.
pub fn parse_time(text: &str) -> Option<f64> {
    let t = text.trim();
    let (date, rest) = t.split_at(t.find([' ', 'T'])?);
    let rest = &rest[1..];
    let mut d = date.split('-');
    let (y, mo, da): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if d.next().is_some() || !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let split = rest.find(['+', '-', 'Z', ' ', 'U']).unwrap_or(rest.len());
    let (clock, zone) = rest.split_at(split);
    let mut c = clock.split(':');
    let h: i64 = c.next()?.parse().ok()?;
    let mi: i64 = c.next()?.parse().ok()?;
    let s: f64 = c.next().unwrap_or("0").parse().ok()?;
    if c.next().is_some() || h > 23 || mi > 59 || !(0.0..61.0).contains(&s) {
        return None;
    }
    let zone = zone.trim();
    let offset = match zone {
        "" | "Z" | "UTC" | "+00" | "+00:00" => 0,
        z => {
            let sign = match &z[..1] {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let z = &z[1..];
            let (zh, zm) = match z.split_once(':') {
                Some((a, b)) => (a.parse::<i64>().ok()?, b.parse::<i64>().ok()?),
                None if z.len() == 4 => (z[..2].parse().ok()?, z[2..].parse().ok()?),
                None => (z.parse().ok()?, 0),
            };
            sign * (zh * 3600 + zm * 60)
        }
    };
    let month = time::Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date =
        time::Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(da).ok()?)
            .ok()?;
    let midnight = date.midnight().assume_utc().unix_timestamp();
    Some((midnight + h * 3600 + mi * 60 - offset) as f64 + s)
}

/// `YYYY-MM-DD HH:MM:SS UTC` for messages (whole seconds, rounded down).
pub fn show_time(epoch: f64) -> String {
    let rfc = crate::clock::rfc3339(epoch.max(0.0).floor() as u64);
    rfc.replace('T', " ").replace('Z', " UTC")
}

/// The archive volume, read through throwaway containers of `image`.
pub struct Archive {
    pub volume: String,
    pub image: String,
}

impl Archive {
    fn run(&self, runner: &Runner, script: &str) -> Result<String> {
        let mut cmd = Cmd::new("docker");
        cmd.args(["run", "--rm", "--network", "none", "-e", "TZ=UTC", "-v"])
            .arg(format!("{}:/a:ro", self.volume))
            .args(["--entrypoint", "sh", &self.image, "-c", script]);
        capture(
            runner,
            false,
            cmd,
            &format!("reading WAL archive volume {}", self.volume),
        )
    }

    /// The archived segments (timeline history files and partials aside).
    pub fn segments(&self, runner: &Runner) -> Result<Vec<Segment>> {
        let out = self.run(runner, "ls -1 /a/wal-archive")?;
        let mut segs: Vec<Segment> = out.lines().filter_map(Segment::parse).collect();
        segs.sort();
        Ok(segs)
    }

    /// The archived files that are shipped: segments and timeline history
    /// files (partials and anything else aside), in name order.
    pub fn names(&self, runner: &Runner) -> Result<Vec<String>> {
        let out = self.run(runner, "ls -1 /a/wal-archive 2>/dev/null; true")?;
        let mut names: Vec<String> = out
            .lines()
            .filter(|n| is_archived_file(n))
            .map(str::to_string)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Commit times (epoch seconds) in the segments `names`, in WAL order,
    /// as `pg_waldump` prints them.
    pub fn commit_times(&self, runner: &Runner, names: &[String]) -> Result<Vec<f64>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        // pg_waldump stops with an error at the end of a switched segment:
        // the records before it are what counts.
        let script = format!(
            "for f in {}; do pg_waldump -p /a/wal-archive \"$f\" 2>/dev/null; done; true",
            names.join(" ")
        );
        let out = self.run(runner, &script)?;
        Ok(commit_times(&out))
    }
}

/// The commit timestamps in `pg_waldump` output (`COMMIT 2026-12-05 06:30:00.123456 UTC`).
pub fn commit_times(waldump: &str) -> Vec<f64> {
    waldump
        .lines()
        .filter_map(|l| {
            let at = l.find("desc: COMMIT ")? + "desc: COMMIT ".len();
            let rest = &l[at..];
            let end = rest.find(';').unwrap_or(rest.len());
            parse_time(&rest[..end])
        })
        .collect()
}

/// Check `name` is a plain file name of the archive (for error messages and scripts).
pub fn check_name(name: &str) -> Result<()> {
    if Segment::parse(name).is_none() {
        bail!("`{name}` is not a WAL segment name");
    }
    Ok(())
}

/// The newest commit time reachable from the start of `run` (scanning its
/// segments from the newest back, a few at a time).
pub fn last_commit(archive: &Archive, runner: &Runner, run: &[Segment]) -> Result<Option<f64>> {
    for chunk in run.rchunks(4) {
        let names: Vec<String> = chunk.iter().map(Segment::name).collect();
        let times = archive
            .commit_times(runner, &names)
            .context("reading commit times with pg_waldump")?;
        if let Some(t) = times.iter().copied().reduce(f64::max) {
            return Ok(Some(t));
        }
    }
    Ok(None)
}

/// `00000002.history`.
pub fn is_history(name: &str) -> bool {
    name.len() == 16
        && name.ends_with(".history")
        && name[..8].bytes().all(|b| b.is_ascii_hexdigit())
}

/// A file name of the archive that is shipped (a segment or a history file).
pub fn is_archived_file(name: &str) -> bool {
    Segment::parse(name).is_some() || is_history(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip_and_order() {
        let s = Segment::parse("0000000100000001000000FF").unwrap();
        assert_eq!(s.timeline, 1);
        assert_eq!(s.number, 0x1FF);
        assert_eq!(s.name(), "0000000100000001000000FF");
        assert!(Segment::parse("00000002.history").is_none());
        assert!(Segment::parse(".000000010000000000000001.partial").is_none());
        let next = Segment::parse("000000010000000200000000").unwrap();
        assert_eq!(next.number, s.number + 1);
        assert_eq!(
            Segment::of(1, Lsn::parse("0/3000028").unwrap()).name(),
            "000000010000000000000003"
        );
    }

    #[test]
    fn lsns_parse_and_print() {
        let l = Lsn::parse("1/2A000060").unwrap();
        assert_eq!(l.0, 0x1_2A00_0060);
        assert_eq!(l.to_string(), "1/2A000060");
        assert!(Lsn::parse("nope").is_none());
        assert!(Lsn::parse("1/").is_none());
    }

    #[test]
    fn runs_stop_at_the_first_gap_and_name_each_gap() {
        let segs: Vec<Segment> = [2u64, 3, 4, 6, 7, 9]
            .iter()
            .map(|&n| Segment {
                timeline: 1,
                number: n,
            })
            .collect();
        let from = segs[0];
        let (run, gaps) = runs(&segs, from);
        assert_eq!(run.iter().map(|s| s.number).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(gaps.iter().map(|s| s.number).collect::<Vec<_>>(), [5, 8]);
        let (run, gaps) = runs(
            &segs,
            Segment {
                timeline: 1,
                number: 1,
            },
        );
        assert!(run.is_empty());
        assert_eq!(gaps[0].number, 1);
        let (run, gaps) = runs(&segs[..3], from);
        assert_eq!(run.len(), 3);
        assert!(gaps.is_empty());
    }

    #[test]
    fn times_parse_with_and_without_zones() {
        let utc = parse_time("2026-12-05 06:30:00").unwrap();
        assert_eq!(utc, 1_796_452_200.0);
        assert_eq!(parse_time("2026-12-05T06:30:00Z"), Some(utc));
        assert_eq!(parse_time("2026-12-05 06:30:00 UTC"), Some(utc));
        assert_eq!(parse_time("2026-12-05 07:30:00+01"), Some(utc));
        assert_eq!(parse_time("2026-12-05 01:00:00-05:30"), Some(utc));
        assert_eq!(parse_time("2026-12-05 06:30:00.25"), Some(utc + 0.25));
        assert!(parse_time("2026-13-05 06:30:00").is_none());
        assert!(
            parse_time("2026-02-30 06:30:00").is_none(),
            "no 30 February"
        );
        assert!(parse_time("yesterday").is_none());
        assert_eq!(show_time(utc + 0.9), "2026-12-05 06:30:00 UTC");
        let dump = "rmgr: Transaction len (rec/tot): 34/34, tx: 735, lsn: 0/03000060, prev 0/03000028, desc: COMMIT 2026-12-05 06:30:00.500000 UTC\n\
                    rmgr: Heap len: 1, desc: INSERT off 3\n";
        assert_eq!(commit_times(dump), [utc + 0.5]);
    }
}
