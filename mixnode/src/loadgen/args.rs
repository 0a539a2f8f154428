//! Command-line flags of `loadgen`, parsed by hand (the binary has only a
//! handful) into [`Args`]; a bad flag is a one-line [`UsageError`].

use std::net::SocketAddr;
use std::time::Duration;

pub const HELP: &str = "\
loadgen: send pre-built packets through a chain of mixnodes and measure them

USAGE:
    loadgen --nodes URL,URL,URL --packets N [--rate R] [--json]

OPTIONS:
    --nodes URLS        the nodes' HTTP base URLs in route order (entry first,
                        an exit node last: only an exit delivers); loadgen
                        reads each /status for its key, mix address and role
    --packets N         packets to send (up to 20000000; built ahead in a
                        bounded window of 50000, about 135 MB)
    --rate R            send at most R packets/s (default: as fast as possible)
    --delay-ms MS       mean mix delay at every node, exit included,
                        exponential (default 0)
    --listen ADDR       where the destination listens (default 127.0.0.1:0
                        when every node URL is local, else 0.0.0.0:0)
    --advertise H:P     address the exit node delivers to (default: 127.0.0.1
                        when every node URL is local, else this host's address
                        on the way to the entry node, else its name; with
                        the listening port)
    --timeout SECS      wait this long after sending for stragglers, and at
                        most this long for any connect, read or write (default 30)
    --json              print one JSON object instead of a table

EXIT STATUS:
    0 every packet arrived, 1 some were lost (or a node was unreachable),
    2 bad flags.

EXAMPLE:
    loadgen --nodes http://127.0.0.1:9001,http://127.0.0.1:9002,http://127.0.0.1:9003 --packets 5000
";

/// Largest `--packets`: the per-packet bookkeeping (send time, seen flag,
/// latency; about 25 bytes each) stays under 500 MB.
pub const MAX_PACKETS: usize = 20_000_000;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[derive(Clone, Debug)]
pub struct Args {
    pub nodes: Vec<String>,
    pub packets: usize,
    pub rate: Option<f64>,
    pub mean_delay: Duration,
    pub listen: Option<SocketAddr>,
    pub advertise: Option<String>,
    pub timeout: Duration,
    pub json: bool,
}

/// `None` means `--help` was asked for.
pub fn parse(raw: &[String]) -> Result<Option<Args>, UsageError> {
    let mut nodes = None;
    let mut packets = None;
    let mut args = Args {
        nodes: Vec::new(),
        packets: 0,
        rate: None,
        mean_delay: Duration::ZERO,
        listen: None,
        advertise: None,
        timeout: Duration::from_secs(30),
        json: false,
    };
    let mut it = raw.iter();
    while let Some(flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (flag.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| UsageError(format!("{name} needs a value; see loadgen --help")))
        };
        let bad =
            |name: &str, v: &str, what: &str| UsageError(format!("{name} {v}: expected {what}"));
        match name {
            "-h" | "--help" => return Ok(None),
            "--json" => args.json = true,
            "--nodes" => {
                let v = value(name)?;
                let list: Vec<String> = v
                    .split(',')
                    .map(|s| s.trim().trim_end_matches('/').to_string())
                    .collect();
                if list
                    .iter()
                    .any(|u| !u.starts_with("http://") || u.len() <= 7)
                {
                    return Err(bad(name, &v, "comma-separated http://host:port URLs"));
                }
                nodes = Some(list);
            }
            "--packets" => {
                let v = value(name)?;
                packets = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| *n > 0 && *n <= MAX_PACKETS)
                        .ok_or_else(|| {
                            bad(name, &v, "a positive integer up to 20000000 (about 25 bytes of bookkeeping each)")
                        })?,
                );
            }
            "--rate" => {
                let v = value(name)?;
                args.rate = Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|r| *r > 0.0 && r.is_finite())
                        .ok_or_else(|| bad(name, &v, "packets per second > 0"))?,
                );
            }
            "--delay-ms" => {
                let v = value(name)?;
                let ms = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| *r >= 0.0 && *r < 10_000.0)
                    .ok_or_else(|| bad(name, &v, "milliseconds in 0..10000"))?;
                args.mean_delay = Duration::from_secs_f64(ms / 1000.0);
            }
            "--listen" => {
                let v = value(name)?;
                args.listen = Some(
                    v.parse()
                        .map_err(|_| bad(name, &v, "IP:port, e.g. 0.0.0.0:7000"))?,
                );
            }
            "--advertise" => {
                let v = value(name)?;
                if !crate::config::is_host_port(&v) {
                    return Err(bad(name, &v, "host:port"));
                }
                args.advertise = Some(v);
            }
            "--timeout" => {
                let v = value(name)?;
                let secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| *s >= 0.0 && *s < 86_400.0)
                    .ok_or_else(|| bad(name, &v, "seconds"))?;
                args.timeout = Duration::from_secs_f64(secs);
            }
            other => {
                return Err(UsageError(format!(
                    "unknown flag `{other}`; see loadgen --help"
                )))
            }
        }
    }
    args.nodes =
        nodes.ok_or_else(|| UsageError("--nodes is required; see loadgen --help".into()))?;
    args.packets =
        packets.ok_or_else(|| UsageError("--packets is required; see loadgen --help".into()))?;
    if args.nodes.len() + 1 > crate::packet::MAX_HOPS {
        return Err(UsageError(format!(
            "--nodes lists {} nodes; a route holds at most {} mixes",
            args.nodes.len(),
            crate::packet::MAX_HOPS - 1
        )));
    }
    Ok(Some(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<Args>, UsageError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn parses_the_contract_flags() {
        let a = p("--nodes http://a:1,http://b:2/ --packets 10 --rate=500 --json")
            .unwrap()
            .unwrap();
        assert_eq!(a.nodes, ["http://a:1", "http://b:2"]);
        assert_eq!((a.packets, a.rate, a.json), (10, Some(500.0), true));
        assert!(p("--help").unwrap().is_none());
    }

    #[test]
    fn bad_flags_name_themselves() {
        assert_eq!(
            p("--nodes http://a:1 --packets x").unwrap_err().0,
            "--packets x: expected a positive integer up to 20000000 (about 25 bytes of bookkeeping each)"
        );
        assert!(p("--packets 3")
            .unwrap_err()
            .0
            .contains("--nodes is required"));
        assert!(p("--nodes a:1 --packets 3")
            .unwrap_err()
            .0
            .starts_with("--nodes a:1"));
        assert!(p("--bogus")
            .unwrap_err()
            .0
            .contains("unknown flag `--bogus`"));
    }
}
