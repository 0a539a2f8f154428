//! Times as the tool writes them: RFC 3339 in UTC with whole seconds
//! (`2026-12-01T09:06:11Z`), for manifests, image labels, release records and
//! the stamps in backup names, on the `time` crate.

use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// Now, as [`rfc3339`] writes it.
pub fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        .format(&Rfc3339)
        .expect("a UTC time with whole seconds formats as RFC 3339")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_427_260), "2026-11-23T09:47:40Z");
        assert_eq!(rfc3339_now().len(), "2026-11-23T09:47:40Z".len());
    }
}
