//! Sizes and figures as they are written: Compose memory values (`512M`,
//! `1g`, `256mb`, plain bytes; powers of 1024 like Docker's `RAMInBytes`),
//! `docker stats` sizes (`12.5MiB`, `1.2GB`, `0B`) and percentages (`3.25%`),
//! and the one formatting of bytes, CPUs, percents and deltas every renderer uses.

use super::model::Unit;

/// A leading decimal number and the rest: `12.5MiB` -> (12.5, "MiB").
pub fn split_number(text: &str) -> Option<(f64, &str)> {
    let s = text.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let number: f64 = s[..end].parse().ok()?;
    Some((number, s[end..].trim()))
}

/// A Compose memory value in bytes: digits with an optional fraction and an
/// optional suffix `b`, `k`, `m`, `g`, `t` (optionally followed by `b`), any case.
pub fn parse_ram(text: &str) -> Option<u64> {
    let lower = text.to_ascii_lowercase();
    let (number, suffix) = split_number(&lower)?;
    let power = match suffix {
        "" | "b" => 0,
        "k" | "kb" => 1,
        "m" | "mb" => 2,
        "g" | "gb" => 3,
        "t" | "tb" => 4,
        _ => return None,
    };
    let bytes = number * 1024f64.powi(power);
    (0.0..1e19).contains(&bytes).then_some(bytes as u64)
}

/// A size as `docker stats` prints it: `12.5MiB` (binary) or `1.2MB` (decimal).
pub fn parse_docker_size(text: &str) -> Option<f64> {
    let (number, suffix) = split_number(text)?;
    let factor = match suffix {
        "B" | "" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024f64.powi(2),
        "GiB" => 1024f64.powi(3),
        "TiB" => 1024f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    Some(number * factor)
}

/// `3.25%` -> 3.25.
pub fn parse_percent(text: &str) -> Option<f64> {
    let v: f64 = text.trim().trim_end_matches('%').parse().ok()?;
    v.is_finite().then_some(v)
}

/// Bytes as MiB or GiB with one decimal (`45.2 MiB`).
pub fn bytes(b: f64) -> String {
    let mib = b / 1024.0 / 1024.0;
    if mib.abs() >= 1024.0 {
        format!("{:.2} GiB", mib / 1024.0)
    } else if mib.abs() >= 1.0 || b == 0.0 {
        format!("{mib:.1} MiB")
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

/// A value in its unit.
pub fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Count => format!("{v:.0}"),
        Unit::Bytes => bytes(v),
        Unit::Percent => format!("{v:.1}%"),
        Unit::Cpus => format!("{v:.2} CPUs"),
        Unit::Seconds => format!("{v:.1} s"),
    }
}

/// An optional value, `—` when missing.
pub fn opt(unit: Unit, v: Option<f64>) -> String {
    v.map_or_else(|| "—".to_string(), |v| value(unit, v))
}

/// A signed delta in its unit (`+2`, `-45.2 MiB`).
pub fn signed(unit: Unit, d: Option<f64>) -> String {
    match d {
        None => "—".into(),
        Some(0.0) => "0".into(),
        Some(d) => {
            let text = value(unit, d.abs());
            if d > 0.0 {
                format!("+{text}")
            } else {
                format!("-{text}")
            }
        }
    }
}

/// A signed percentage (`-66.7%`), `—` when there is none.
pub fn percent(p: Option<f64>) -> String {
    match p {
        None => "—".into(),
        Some(p) => format!("{p:+.1}%"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_memory_values() {
        assert_eq!(parse_ram("512M"), Some(512 << 20));
        assert_eq!(parse_ram("1G"), Some(1 << 30));
        assert_eq!(parse_ram("256mb"), Some(256 << 20));
        assert_eq!(parse_ram("1.5g"), Some(3 << 29));
        assert_eq!(parse_ram("1048576"), Some(1 << 20));
        assert_eq!(parse_ram("64k"), Some(64 << 10));
        assert_eq!(parse_ram("12 parsecs"), None);
        assert_eq!(parse_ram(""), None);
        assert_eq!(parse_ram("9999999999999t"), None);
    }

    #[test]
    fn docker_stats_values() {
        assert_eq!(parse_docker_size("12.5MiB"), Some(12.5 * 1048576.0));
        assert_eq!(parse_docker_size("0B"), Some(0.0));
        assert_eq!(parse_docker_size("1.2GB"), Some(1.2e9));
        assert_eq!(parse_docker_size("--"), None);
        assert_eq!(parse_percent("3.25%"), Some(3.25));
        assert_eq!(parse_percent("--"), None);
    }

    #[test]
    fn formatting() {
        assert_eq!(bytes(45.25 * 1048576.0), "45.2 MiB");
        assert_eq!(bytes(3.0 * 1073741824.0), "3.00 GiB");
        assert_eq!(signed(Unit::Count, Some(-2.0)), "-2");
        assert_eq!(signed(Unit::Bytes, Some(1048576.0)), "+1.0 MiB");
        assert_eq!(percent(Some(-66.666)), "-66.7%");
        assert_eq!(percent(None), "—");
    }
}
