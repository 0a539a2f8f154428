//! The retention policy of `backup prune`, as restic applies it: the newest
//! `--keep-last N`, and the newest backup of each of the last N days, ISO
//! weeks and months that have one (`--keep-daily/weekly/monthly`, calendar
//! buckets in UTC); a backup is kept when any rule keeps it (the union). On
//! top of the rules, the newest backup is always kept, and so is the newest
//! one whose restore drill passed. Pure: [`decide`] gets times and drill
//! results and says why each backup is kept (no reason: it goes).

use time::{format_description::well_known::Rfc3339, OffsetDateTime, UtcOffset};

/// How many backups each rule keeps (0: the rule is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub last: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
}

impl Policy {
    /// No rule is on.
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// `--keep-last 3 --keep-daily 7`, for messages.
    pub fn describe(&self) -> String {
        let rules = [
            ("last", self.last),
            ("daily", self.daily),
            ("weekly", self.weekly),
            ("monthly", self.monthly),
        ];
        rules
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(r, n)| format!("--keep-{r} {n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One backup of a kind: when it was taken and whether its drill passed.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub at: OffsetDateTime,
    pub drilled: bool,
}

/// An RFC 3339 timestamp (a manifest's `created_at`), in UTC.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .ok()
        .map(|t| t.to_offset(UtcOffset::UTC))
}

fn day(t: OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn week(t: OffsetDateTime) -> String {
    let (year, week, _) = t.date().to_iso_week_date();
    format!("{year:04}-W{week:02}")
}

fn month(t: OffsetDateTime) -> String {
    let d = t.date();
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}

/// A calendar bucket's key of a time (its day, ISO week or month).
type Bucket = fn(OffsetDateTime) -> String;

/// Why each candidate (in the order given) is kept; an empty list: it goes.
pub fn decide(candidates: &[Candidate], policy: Policy) -> Vec<Vec<String>> {
    let mut reasons = vec![Vec::new(); candidates.len()];
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    // Newest first; equal times keep their given order.
    order.sort_by(|&a, &b| candidates[b].at.cmp(&candidates[a].at));
    if let Some(&newest) = order.first() {
        reasons[newest].push("newest".to_string());
    }
    for (rank, &i) in order.iter().take(policy.last).enumerate() {
        reasons[i].push(format!("last {}", rank + 1));
    }
    let buckets: [(&str, usize, Bucket); 3] = [
        ("daily", policy.daily, day),
        ("weekly", policy.weekly, week),
        ("monthly", policy.monthly, month),
    ];
    for (rule, count, key) in buckets {
        let mut left = count;
        let mut previous: Option<String> = None;
        for &i in &order {
            if left == 0 {
                break;
            }
            let k = key(candidates[i].at);
            if previous.as_deref() != Some(k.as_str()) {
                reasons[i].push(format!("{rule} {k}"));
                previous = Some(k);
                left -= 1;
            }
        }
    }
    if let Some(&i) = order.iter().find(|&&i| candidates[i].drilled) {
        reasons[i].push("newest passed drill".to_string());
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Candidate {
        Candidate {
            at: parse_time(text).unwrap(),
            drilled: false,
        }
    }

    fn kept(candidates: &[Candidate], policy: Policy) -> Vec<usize> {
        decide(candidates, policy)
            .iter()
            .enumerate()
            .filter(|(_, r)| !r.is_empty())
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn last_keeps_the_newest_n_and_always_the_newest() {
        let c = [
            at("2026-12-01T09:00:00Z"),
            at("2026-12-03T09:00:00Z"),
            at("2026-12-02T09:00:00Z"),
        ];
        let last = |n| Policy {
            last: n,
            ..Policy::default()
        };
        assert_eq!(kept(&c, last(2)), [1, 2]);
        assert_eq!(kept(&c, last(0)), [1]);
        assert_eq!(kept(&c, last(9)), [0, 1, 2]);
        assert_eq!(decide(&c, last(1))[1], ["newest", "last 1"]);
    }

    #[test]
    fn daily_weekly_monthly_keep_the_newest_of_each_bucket() {
        // Newest first: two on Dec 3, one on Dec 2, one on Nov 30 (ISO week
        // 2026-W49 starts Monday Nov 30), one on Nov 29 (W48), one in October.
        let c = [
            at("2026-12-03T22:00:00Z"),
            at("2026-12-03T01:00:00Z"),
            at("2026-12-02T12:00:00Z"),
            at("2026-11-30T00:00:00Z"),
            at("2026-11-29T23:59:59Z"),
            at("2026-10-15T08:00:00Z"),
        ];
        let daily = Policy {
            daily: 3,
            ..Policy::default()
        };
        assert_eq!(kept(&c, daily), [0, 2, 3]);
        let weekly = Policy {
            weekly: 2,
            ..Policy::default()
        };
        assert_eq!(kept(&c, weekly), [0, 4]);
        assert_eq!(decide(&c, weekly)[4], ["weekly 2026-W48"]);
        let monthly = Policy {
            monthly: 3,
            ..Policy::default()
        };
        assert_eq!(kept(&c, monthly), [0, 3, 5]);
        // The union of the rules.
        let all = Policy {
            last: 2,
            daily: 1,
            weekly: 2,
            monthly: 3,
        };
        assert_eq!(kept(&c, all), [0, 1, 3, 4, 5]);
        assert_eq!(
            all.describe(),
            "--keep-last 2 --keep-daily 1 --keep-weekly 2 --keep-monthly 3"
        );
    }

    #[test]
    fn the_newest_drilled_backup_is_kept_and_times_are_utc() {
        let mut c = [
            at("2026-12-03T09:00:00Z"),
            at("2026-12-02T09:00:00Z"),
            at("2026-12-01T09:00:00Z"),
        ];
        c[1].drilled = true;
        c[2].drilled = true;
        let last = Policy {
            last: 1,
            ..Policy::default()
        };
        assert_eq!(kept(&c, last), [0, 1]);
        assert_eq!(decide(&c, last)[1], ["newest passed drill"]);
        // 23:30 at -02:00 is the next day in UTC.
        assert_eq!(
            day(parse_time("2026-12-01T23:30:00-02:00").unwrap()),
            "2026-12-02"
        );
        assert!(parse_time("yesterday").is_none());
        assert!(decide(&[], last).is_empty());
    }
}
