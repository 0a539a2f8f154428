//! Typed views of the parts of a service other code asks about: published
//! ports (short syntax `[ip:][published:]target[/proto]` and the long
//! mapping syntax), volume mounts (`source:target[:mode]` and long syntax) and
//! healthchecks. Both syntaxes parse to the same value, so merging and
//! comparing never depends on how a file spelled an entry.

use std::fmt;

use serde_yaml::Value;

/// A port or an inclusive port range, e.g. `9000-9003`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    fn parse(s: &str) -> Option<PortRange> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let start = a.trim().parse().ok()?;
        let end = b.trim().parse().ok()?;
        (start <= end).then_some(PortRange { start, end })
    }

    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// One `ports:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    /// Host interface; `None` means all interfaces.
    pub host_ip: Option<String>,
    /// Host port; `None` means an ephemeral port chosen by Docker.
    pub published: Option<PortRange>,
    pub target: PortRange,
    pub protocol: String,
}

impl Port {
    /// Parse either syntax. The error says what was wrong with the entry.
    pub fn parse(value: &Value) -> Result<Port, String> {
        match value {
            Value::Mapping(m) => {
                let get = |k: &str| m.get(k).map(scalar_string);
                let target = get("target")
                    .and_then(|t| PortRange::parse(&t))
                    .ok_or("a long-syntax port needs a numeric `target`")?;
                let published = match get("published").filter(|p| !p.is_empty()) {
                    Some(p) => {
                        Some(PortRange::parse(&p).ok_or(format!("bad published port `{p}`"))?)
                    }
                    None => None,
                };
                Ok(Port {
                    host_ip: get("host_ip").filter(|s| !s.is_empty()),
                    published,
                    target,
                    protocol: get("protocol").unwrap_or_else(|| "tcp".into()),
                })
            }
            Value::String(_) | Value::Number(_) => Port::parse_short(&scalar_string(value)),
            other => Err(format!("a port must be a string or mapping, not {other:?}")),
        }
    }

    fn parse_short(s: &str) -> Result<Port, String> {
        let bad =
            || format!("bad port `{s}`; use [IP:]HOST:CONTAINER[/PROTO], e.g. 127.0.0.1:5432:5432");
        let (spec, protocol) = match s.rsplit_once('/') {
            Some((spec, proto)) => (spec, proto.to_string()),
            None => (s, "tcp".to_string()),
        };
        let (host_ip, rest) = if let Some(v6) = spec.strip_prefix('[') {
            let (ip, rest) = v6.split_once("]:").ok_or_else(bad)?;
            (Some(ip.to_string()), rest)
        } else {
            match spec.matches(':').count() {
                0 | 1 => (None, spec),
                2 => {
                    let (ip, rest) = spec.split_once(':').unwrap_or_default();
                    (Some(ip.to_string()), rest)
                }
                _ => return Err(bad()),
            }
        };
        let (published, target) = match rest.rsplit_once(':') {
            Some((p, t)) => (Some(p), t),
            None => (None, rest),
        };
        let published = match published.filter(|p| !p.is_empty()) {
            Some(p) => Some(PortRange::parse(p).ok_or_else(bad)?),
            None => None,
        };
        Ok(Port {
            host_ip: host_ip.filter(|ip| !ip.is_empty()),
            published,
            target: PortRange::parse(target).ok_or_else(bad)?,
            protocol,
        })
    }

    /// Whether the port listens on every interface (no ip, `0.0.0.0` or `::`).
    pub fn all_interfaces(&self) -> bool {
        matches!(self.host_ip.as_deref(), None | Some("0.0.0.0") | Some("::"))
    }

    /// The short syntax, which Compose v1 and v2 both accept.
    pub fn to_short(&self) -> String {
        let ip = match &self.host_ip {
            Some(ip) if ip.contains(':') => format!("[{ip}]:"),
            Some(ip) => format!("{ip}:"),
            None => String::new(),
        };
        let published = self.published.map(|p| format!("{p}:")).unwrap_or_default();
        let published = if published.is_empty() && !ip.is_empty() {
            ":".to_string()
        } else {
            published
        };
        format!("{ip}{published}{}/{}", self.target, self.protocol)
    }
}

/// Render a scalar as Compose does: strings as-is, numbers and booleans printed.
pub fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// Kind of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Volume,
    Tmpfs,
    Other,
}

/// One `volumes:` entry of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountKind,
    /// Host path (bind, as written) or volume name; `None` for anonymous volumes.
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
}

impl Mount {
    pub fn parse(value: &Value) -> Result<Mount, String> {
        match value {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, mode) = match parts.as_slice() {
                    [t] => (None, *t, ""),
                    [s, t] => (Some(*s), *t, ""),
                    [s, t, m] => (Some(*s), *t, *m),
                    _ => return Err(format!("bad volume `{s}`; use SOURCE:TARGET[:ro]")),
                };
                // An empty source (v1 reads `${UNSET}:/x` so) is the project directory.
                let source = source.map(|s| if s.is_empty() { "." } else { s });
                let kind = match source {
                    None => MountKind::Volume,
                    Some(src) if is_host_path(src) => MountKind::Bind,
                    Some(_) => MountKind::Volume,
                };
                Ok(Mount {
                    kind,
                    source: source.map(str::to_string),
                    target: target.to_string(),
                    read_only: mode.split(',').any(|m| m == "ro"),
                })
            }
            Value::Mapping(m) => {
                let get = |k: &str| m.get(k).map(scalar_string);
                let target = get("target").ok_or("a long-syntax volume needs `target`")?;
                let kind = match get("type").as_deref() {
                    Some("bind") => MountKind::Bind,
                    Some("volume") | None => MountKind::Volume,
                    Some("tmpfs") => MountKind::Tmpfs,
                    Some(_) => MountKind::Other,
                };
                Ok(Mount {
                    kind,
                    source: get("source").filter(|s| !s.is_empty()),
                    target,
                    read_only: m.get("read_only").and_then(Value::as_bool).unwrap_or(false),
                })
            }
            other => Err(format!(
                "a volume must be a string or mapping, not {other:?}"
            )),
        }
    }
}

/// `./x`, `../x`, `/x`, `~/x` and `.` are host paths; anything else names a volume.
pub fn is_host_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with('.') || s.starts_with('~')
}

/// A service healthcheck.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// `test` as a list: `["CMD", ...]`, `["CMD-SHELL", "..."]` or `["NONE"]`.
    /// A string `test` becomes `["CMD-SHELL", string]`.
    pub test: Vec<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u64>,
    pub start_period: Option<String>,
    pub disable: bool,
}

impl Healthcheck {
    pub fn parse(value: &Value) -> Option<Healthcheck> {
        let m = value.as_mapping()?;
        let test = match m.get("test") {
            Some(Value::Sequence(items)) => items.iter().map(scalar_string).collect(),
            Some(Value::String(s)) => vec!["CMD-SHELL".to_string(), s.clone()],
            _ => Vec::new(),
        };
        let get = |k: &str| m.get(k).map(scalar_string);
        let disable = m.get("disable").and_then(Value::as_bool).unwrap_or(false)
            || test.first().map(String::as_str) == Some("NONE");
        Some(Healthcheck {
            test,
            interval: get("interval"),
            timeout: get("timeout"),
            retries: m.get("retries").and_then(Value::as_u64),
            start_period: get("start_period"),
            disable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(s: &str) -> Port {
        Port::parse(&serde_yaml::from_str(s).unwrap()).unwrap()
    }

    #[test]
    fn short_port_forms() {
        let p = port("'127.0.0.1:5432:5432/tcp'");
        assert_eq!(p.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(
            p.published,
            Some(PortRange {
                start: 5432,
                end: 5432
            })
        );
        assert_eq!(p.to_short(), "127.0.0.1:5432:5432/tcp");
        assert_eq!(port("'9090:9090'").to_short(), "9090:9090/tcp");
        assert_eq!(port("8080").to_short(), "8080/tcp");
        assert!(port("8080").published.is_none());
        assert_eq!(port("'[::1]:53:53/udp'").to_short(), "[::1]:53:53/udp");
        assert_eq!(port("'127.0.0.1::80'").to_short(), "127.0.0.1::80/tcp");
        assert_eq!(port("'9000-9002:8000-8002'").published.unwrap().end, 9002);
        assert!(Port::parse(&Value::from("1:2:3:4")).is_err());
        assert!(Port::parse(&Value::from("abc")).is_err());
    }

    #[test]
    fn long_port_equals_short() {
        let long = port("{target: 5432, published: '5433', host_ip: 127.0.0.1, protocol: tcp}");
        assert_eq!(long, port("'127.0.0.1:5433:5432'"));
        assert!(port("{target: 80, published: 8080}").all_interfaces());
        assert!(port("'0.0.0.0:80:80'").all_interfaces());
        assert!(!long.all_interfaces());
    }

    #[test]
    fn mounts() {
        let m = Mount::parse(&Value::from("./config/prometheus:/etc/prometheus:ro")).unwrap();
        assert_eq!((m.kind, m.read_only), (MountKind::Bind, true));
        let m = Mount::parse(&Value::from("pgdata:/var/lib/postgresql/data")).unwrap();
        assert_eq!(
            (m.kind, m.source.as_deref()),
            (MountKind::Volume, Some("pgdata"))
        );
        let m = Mount::parse(&Value::from("/data")).unwrap();
        assert_eq!((m.kind, m.source), (MountKind::Volume, None));
        let m: Value =
            serde_yaml::from_str("{type: bind, source: ./x, target: /x, read_only: true}").unwrap();
        assert_eq!(Mount::parse(&m).unwrap().kind, MountKind::Bind);
    }

    #[test]
    fn healthcheck_string_test_is_cmd_shell() {
        let v: Value =
            serde_yaml::from_str("{test: 'pg_isready', interval: 5s, retries: 3}").unwrap();
        let h = Healthcheck::parse(&v).unwrap();
        assert_eq!(h.test, ["CMD-SHELL", "pg_isready"]);
        assert_eq!((h.interval.as_deref(), h.retries), (Some("5s"), Some(3)));
        assert!(!h.disable);
    }
}
