//! The project's two Docker networks (`fog-network`, `betanet-network`), with
//! names and subnets from `.env`. Creating them is idempotent: a network with
//! the right subnet is kept; a wrong subnet, or a subnet overlapping another
//! Docker network or a host route, is one error naming the conflict. They are
//! created with the labels Compose sets itself, so both flavours adopt them.

use std::{fmt, net::Ipv4Addr, str::FromStr};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use xshell::{cmd, Shell};

use super::containers::PROJECT_LABEL;
use crate::{dotenv::DotEnv, process::Runner, UsageError};

const NETWORK_LABEL: &str = "com.docker.compose.network";
const VERSION_LABEL: &str = "com.docker.compose.version";

/// An IPv4 network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: u32,
    pub prefix: u8,
}

impl Cidr {
    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }
    fn first(self) -> u32 {
        self.addr & self.mask()
    }
    fn last(self) -> u32 {
        self.first() | !self.mask()
    }
    pub fn overlaps(self, other: Cidr) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, prefix) = s.split_once('/').ok_or("expected a.b.c.d/n")?;
        let addr: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("`{ip}` is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or("prefix must be 0-32")?;
        Ok(Cidr {
            addr: u32::from(addr),
            prefix,
        })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.first()), self.prefix)
    }
}

/// A network the project wants: compose key, Docker name, subnet.
#[derive(Debug, Clone)]
pub struct Wanted {
    pub key: &'static str,
    pub name: String,
    pub subnet: Cidr,
}

/// The two networks, from `.env` (process environment first) or the compose defaults.
pub fn wanted(env: &DotEnv) -> Result<Vec<Wanted>> {
    let table = [
        (
            "fog-network",
            "FOG_NETWORK_NAME",
            "FOG_NETWORK_SUBNET",
            "172.28.0.0/16",
        ),
        (
            "betanet-network",
            "BETANET_NETWORK_NAME",
            "BETANET_NETWORK_SUBNET",
            "172.30.0.0/16",
        ),
    ];
    table
        .iter()
        .map(|(key, name_var, subnet_var, default)| {
            let text = env.get_or(subnet_var, default);
            let subnet = text.parse::<Cidr>().map_err(|why| {
                UsageError::new(format!(
                    "{subnet_var}=`{text}` in {}: {why}",
                    env.path.display()
                ))
            })?;
            Ok(Wanted {
                key,
                name: env.get_or(name_var, key),
                subnet,
            })
        })
        .collect()
}

/// A Docker network that exists now.
#[derive(Debug, Clone)]
pub struct Existing {
    pub name: String,
    pub subnets: Vec<String>,
    pub project: Option<String>,
    pub containers: usize,
}

/// Every Docker network with its IPv4/IPv6 subnets and labels.
pub fn existing(sh: &Shell, runner: &Runner) -> Result<Vec<Existing>> {
    let ids = runner.read(cmd!(sh, "docker network ls -q --no-trunc"))?;
    let ids: Vec<&str> = ids.lines().collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let text = runner.read(cmd!(sh, "docker network inspect {ids...}"))?;
    let items: Vec<Value> =
        serde_json::from_str(&text).context("cannot parse `docker network inspect`")?;
    Ok(items
        .iter()
        .map(|n| Existing {
            name: n["Name"].as_str().unwrap_or("").to_string(),
            subnets: n["IPAM"]["Config"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|c| c["Subnet"].as_str().map(String::from))
                .collect(),
            project: n["Labels"][PROJECT_LABEL].as_str().map(String::from),
            containers: n["Containers"].as_object().map_or(0, |m| m.len()),
        })
        .collect())
}

/// Host routes outside Docker's own bridges: `(interface, destination)`.
pub fn host_routes() -> Vec<(String, Cidr)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, mask) = (f.first()?, f.get(1)?, f.get(7)?);
            // The kernel prints the in-memory (network-order) words in hex.
            let word = |hex: &str| {
                u32::from_str_radix(hex, 16)
                    .ok()
                    .map(|v| u32::from_be_bytes(v.to_ne_bytes()))
            };
            let (dest, mask) = (word(dest)?, word(mask)?);
            let prefix = mask.count_ones() as u8;
            let docker = *iface == "docker0" || iface.starts_with("br-");
            (prefix > 0 && !docker).then(|| (iface.to_string(), Cidr { addr: dest, prefix }))
        })
        .collect()
}

/// What `create` must do for one wanted network.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Keep,
    Create,
}

/// Decide, or explain the conflict in one line.
pub fn plan(want: &Wanted, networks: &[Existing], routes: &[(String, Cidr)]) -> Result<Plan> {
    if let Some(same) = networks.iter().find(|n| n.name == want.name) {
        let ok = same
            .subnets
            .iter()
            .any(|s| s.parse::<Cidr>().ok() == Some(want.subnet));
        if ok {
            return Ok(Plan::Keep);
        }
        bail!(
            "network {} exists with subnet {} but .env wants {}: remove it (`cargo xtask network rm`) or change the subnet variable for {}",
            want.name,
            if same.subnets.is_empty() { "(none)".to_string() } else { same.subnets.join(", ") },
            want.subnet,
            want.key
        );
    }
    for other in networks {
        for subnet in &other.subnets {
            if let Ok(cidr) = subnet.parse::<Cidr>() {
                if cidr.overlaps(want.subnet) {
                    bail!(
                        "subnet {} for {} overlaps Docker network `{}` ({subnet}): pick a free subnet in .env",
                        want.subnet, want.name, other.name
                    );
                }
            }
        }
    }
    for (iface, route) in routes {
        if route.overlaps(want.subnet) {
            bail!(
                "subnet {} for {} overlaps the host route {route} on {iface}: pick a free subnet in .env",
                want.subnet, want.name
            );
        }
    }
    Ok(Plan::Create)
}

/// Create whichever of the networks is missing, with Compose's labels.
pub fn ensure(
    sh: &Shell,
    runner: &Runner,
    project: &str,
    compose_version: &str,
    wants: &[Wanted],
) -> Result<()> {
    let networks = existing(sh, runner)?;
    let routes = host_routes();
    for want in wants {
        if plan(want, &networks, &routes)? == Plan::Create {
            let (name, subnet, key) = (&want.name, want.subnet.to_string(), want.key);
            let labels = [
                format!("{PROJECT_LABEL}={project}"),
                format!("{NETWORK_LABEL}={key}"),
                format!("{VERSION_LABEL}={compose_version}"),
            ];
            let label_args: Vec<String> = labels
                .iter()
                .flat_map(|l| ["--label".to_string(), l.clone()])
                .collect();
            // The engine prints the new network's ID; keep the output quiet.
            runner.run_capture(cmd!(
                sh,
                "docker network create --driver bridge --subnet {subnet} {label_args...} {name}"
            ))?;
        }
    }
    Ok(())
}

/// Remove the project's networks that exist and were created for `project`.
pub fn remove(sh: &Shell, runner: &Runner, project: &str, wants: &[Wanted]) -> Result<Vec<String>> {
    let networks = existing(sh, runner)?;
    let mut removed = Vec::new();
    for want in wants {
        let Some(n) = networks.iter().find(|n| n.name == want.name) else {
            continue;
        };
        if n.project.as_deref() != Some(project) {
            bail!(
                "network {} belongs to project `{}`, not `{project}`: leaving it alone",
                n.name,
                n.project.as_deref().unwrap_or("none")
            );
        }
        if n.containers > 0 {
            bail!(
                "network {} still has {} container(s) attached: run `cargo xtask down` first",
                n.name,
                n.containers
            );
        }
        let name = &n.name;
        runner.run_capture(cmd!(sh, "docker network rm {name}"))?;
        removed.push(name.clone());
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, subnet: &str) -> Existing {
        Existing {
            name: name.into(),
            subnets: vec![subnet.into()],
            project: None,
            containers: 0,
        }
    }

    #[test]
    fn cidr_overlap() {
        let a: Cidr = "10.231.1.0/24".parse().unwrap();
        assert!(a.overlaps("10.231.0.0/16".parse().unwrap()));
        assert!(!a.overlaps("10.231.2.0/24".parse().unwrap()));
        assert_eq!(
            "10.231.1.7/24".parse::<Cidr>().unwrap().to_string(),
            "10.231.1.0/24"
        );
        assert!("10.1.2/24".parse::<Cidr>().is_err());
    }

    #[test]
    fn plans_keep_create_or_names_the_conflict() {
        let want = Wanted {
            key: "fog-network",
            name: "fogt-a".into(),
            subnet: "10.231.5.0/24".parse().unwrap(),
        };
        assert_eq!(
            plan(&want, &[net("fogt-a", "10.231.5.0/24")], &[]).unwrap(),
            Plan::Keep
        );
        assert_eq!(
            plan(&want, &[net("other", "10.231.6.0/24")], &[]).unwrap(),
            Plan::Create
        );
        let err = plan(&want, &[net("fogt-a", "10.231.9.0/24")], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("10.231.9.0/24"), "{err}");
        let err = plan(&want, &[net("other", "10.231.0.0/16")], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`other`"), "{err}");
        let err = plan(
            &want,
            &[],
            &[("eth1".into(), "10.231.5.128/25".parse().unwrap())],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("eth1"), "{err}");
    }
}
