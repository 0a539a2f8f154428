//! Who a node may send to. Entry and middle nodes (and an exit, when it
//! relays) forward only to mixes: the static `MIX_PEERS` list united with the
//! `mix_address` of every row in the PostgreSQL registry
//! (`mixnode_topology`), which [`crate::registry`] refreshes every heartbeat.
//! An exit delivers to any destination unless `EXIT_ALLOW` restricts them.
//! Both lists hold `host:port` entries, or a bare `host` meaning every port
//! of that host (tests use `MIX_PEERS=127.0.0.1`).

use std::collections::HashSet;
use std::sync::RwLock;

/// A set of `host:port` and bare `host` entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddrSet {
    exact: HashSet<String>,
    hosts: HashSet<String>,
}

impl AddrSet {
    /// Parses a comma-separated list; `Err` holds the first bad entry.
    pub fn parse(list: &str) -> Result<AddrSet, String> {
        let mut set = AddrSet::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if entry.contains(char::is_whitespace) || entry.len() > crate::packet::ADDRESS_LEN {
                return Err(entry.to_string());
            }
            if crate::config::is_host_port(entry) {
                set.exact.insert(entry.to_string());
            } else if !entry.contains(':') || entry.starts_with('[') && entry.ends_with(']') {
                set.hosts.insert(entry.to_string());
            } else {
                return Err(entry.to_string());
            }
        }
        Ok(set)
    }

    pub fn contains(&self, address: &str) -> bool {
        self.exact.contains(address)
            || address
                .rsplit_once(':')
                .is_some_and(|(host, _)| self.hosts.contains(host))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.hosts.is_empty()
    }

    pub fn len(&self) -> usize {
        self.exact.len() + self.hosts.len()
    }
}

/// The node's view of the mix network.
pub struct Topology {
    static_peers: AddrSet,
    registry: RwLock<HashSet<String>>,
    exit_allow: Option<AddrSet>,
}

impl Topology {
    pub fn new(static_peers: AddrSet, exit_allow: Option<AddrSet>) -> Self {
        Topology {
            static_peers,
            registry: RwLock::new(HashSet::new()),
            exit_allow,
        }
    }

    /// Whether `address` is a known mix (a legal relay target).
    pub fn is_mix(&self, address: &str) -> bool {
        self.static_peers.contains(address)
            || self
                .registry
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .contains(address)
    }

    /// Whether an exit may deliver to `address`.
    pub fn may_deliver(&self, address: &str) -> bool {
        match &self.exit_allow {
            Some(allowed) => allowed.contains(address),
            None => true,
        }
    }

    /// Replaces the registry's part of the topology.
    pub fn set_registry(&self, addresses: HashSet<String>) {
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = addresses;
    }

    /// Known mixes: static entries plus registry rows.
    pub fn known_mixes(&self) -> usize {
        self.static_peers.len()
            + self
                .registry
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_host_entries_match() {
        let set = AddrSet::parse("mixnode-2:1789, 127.0.0.1 ,[::1]").unwrap();
        assert!(set.contains("mixnode-2:1789"));
        assert!(!set.contains("mixnode-2:1790"));
        assert!(set.contains("127.0.0.1:4242"));
        assert!(set.contains("[::1]:80"));
        assert!(!set.contains("127.0.0.2:4242"));
        assert!(!set.contains("evil:1789"));
        assert_eq!(AddrSet::parse("a:b:c").unwrap_err(), "a:b:c");
        assert_eq!(AddrSet::parse("host:0").unwrap_err(), "host:0");
        assert!(AddrSet::parse("").unwrap().is_empty());
    }

    #[test]
    fn registry_rows_extend_the_static_list() {
        let t = Topology::new(AddrSet::parse("m1:1789").unwrap(), None);
        assert!(t.is_mix("m1:1789") && !t.is_mix("m2:1789"));
        t.set_registry(["m2:1789".to_string()].into());
        assert!(t.is_mix("m2:1789"));
        assert!(t.may_deliver("anything:1"));
        let exit = Topology::new(AddrSet::default(), Some(AddrSet::parse("dst:80").unwrap()));
        assert!(exit.may_deliver("dst:80") && !exit.may_deliver("other:80"));
    }
}
