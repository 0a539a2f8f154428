//! Why packets were lost: loadgen reads every node's drop counters
//! (`mixnode_packets_dropped_total{reason=...}` on `/metrics`) before and after
//! a run, and names each node that dropped packets during it, with the reason
//! and what to change (for example "entry dropped 300 as unknown_next_hop: set
//! MIX_PEERS ..."). Counters are cumulative, so only the difference counts; a
//! node whose `/metrics` cannot be read is left out rather than guessed.

use std::collections::BTreeMap;
use std::time::Duration;

/// Drop counters of one node, by reason.
pub type Counters = BTreeMap<String, u64>;

/// Packets one node dropped during the run, for one reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drop {
    pub node: String,
    pub role: String,
    pub reason: String,
    pub packets: u64,
}

impl Drop {
    /// "entry (http://...) dropped 300 as unknown_next_hop: set MIX_PEERS ...".
    pub fn sentence(&self) -> String {
        let mut text = format!(
            "{} ({}) dropped {} as {}",
            self.role, self.node, self.packets, self.reason
        );
        if let Some(hint) = hint(&self.reason) {
            text.push_str(": ");
            text.push_str(hint);
        }
        text
    }
}

/// What to change for a drop reason, where the fix is the operator's.
pub fn hint(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "unknown_next_hop" => "set MIX_PEERS on it to the next mixes' host:port (or give it DATABASE_URL to read the topology table)",
        "unreachable" => "the next hop (or loadgen's --advertise address) did not accept the connection",
        "overload" => "its queues were full: lower --rate or raise MAX_QUEUE_DEPTH / TARGET_THROUGHPUT",
        "expired" => "packets waited over 10 s inside it: lower --rate or add PIPELINE_WORKERS",
        "role" => "a deliver instruction reached a node that is not an exit: end --nodes with an exit",
        "excessive_delay" => "lower --mean-delay or raise MAX_DELAY_MS",
        "exit_denied" => "add loadgen's address to the exit's EXIT_ALLOW",
        "replay" => "the same packet arrived twice",
        "malformed" => "the packet did not unwrap: check that /status and the running key agree",
        _ => return None,
    })
}

/// Parse `mixnode_packets_dropped_total{reason="X"} N` lines of a metrics page.
pub fn parse(text: &str) -> Counters {
    let mut out = Counters::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("mixnode_packets_dropped_total{reason=\"") else {
            continue;
        };
        let Some((reason, value)) = rest.split_once("\"}") else {
            continue;
        };
        if let Ok(n) = value.trim().parse::<f64>() {
            out.insert(reason.to_string(), n as u64);
        }
    }
    out
}

/// Read one node's drop counters; `None` when `/metrics` cannot be read.
pub fn read(url: &str) -> Option<Counters> {
    match crate::http::get(&format!("{url}/metrics"), Duration::from_secs(3)) {
        Ok((200, body)) => Some(parse(&body)),
        _ => None,
    }
}

/// The drops of the run: `after - before` per node and reason, largest first.
pub fn during(nodes: &[(String, String, Counters)], after: &[Option<Counters>]) -> Vec<Drop> {
    let mut out = Vec::new();
    for ((url, role, before), after) in nodes.iter().zip(after) {
        let Some(after) = after else { continue };
        for (reason, n) in after {
            let packets = n.saturating_sub(before.get(reason).copied().unwrap_or(0));
            if packets > 0 {
                out.push(Drop {
                    node: url.clone(),
                    role: role.clone(),
                    reason: reason.clone(),
                    packets,
                });
            }
        }
    }
    out.sort_by_key(|d| std::cmp::Reverse(d.packets));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_what_the_run_dropped_and_names_the_fix() {
        let page = "# HELP x\nmixnode_packets_dropped_total{reason=\"unknown_next_hop\"} 310\n\
                    mixnode_packets_dropped_total{reason=\"replay\"} 2\nmixnode_packets_received_total 5\n";
        let before: Counters = [("unknown_next_hop".to_string(), 10)].into();
        let nodes = vec![("http://n1".to_string(), "entry".to_string(), before)];
        let drops = during(&nodes, &[Some(parse(page))]);
        assert_eq!(drops.len(), 2);
        assert_eq!(drops[0].packets, 300);
        assert!(drops[0]
            .sentence()
            .starts_with("entry (http://n1) dropped 300 as unknown_next_hop: set MIX_PEERS"));
        assert_eq!(drops[1].reason, "replay");
        assert!(
            during(&nodes, &[None]).is_empty(),
            "an unreadable node is left out"
        );
    }
}
