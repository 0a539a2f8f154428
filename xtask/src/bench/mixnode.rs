//! `cargo xtask bench mixnode`: runs the mixnode crate's two benchmarks with
//! `--json` and combines their figures. `per_hop` (the packet format's cost
//! per hop against sphinx-packet) gives `per_hop_us`,
//! `sphinx_packet_per_hop_us`, `x25519_us` and `speedup`; `node_forward` (one
//! real node forwarding over loopback TCP) gives `node_forward_pps` and the
//! node's CPU time per packet. Prints a table against the targets, or with
//! `--json` one JSON object holding every key of both benchmarks.

use anyhow::{Context, Result};
use serde_json::{Map, Value};
use xshell::{cmd, Shell};

use crate::process::Runner;

/// Packets per second one node must forward (the compose TARGET_THROUGHPUT).
const TARGET_PPS: f64 = 25_000.0;
/// How much faster than sphinx-packet one hop must be.
const TARGET_SPEEDUP: f64 = 3.0;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask bench mixnode\n  cargo xtask bench mixnode --json\n  cargo xtask bench mixnode --only node_forward --packets 60000"
)]
pub struct Cmd {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Run only one of the benchmarks.
    #[arg(long, value_parser = ["per_hop", "node_forward"])]
    only: Option<String>,
    /// Packets node_forward pushes through the node (default: the bench's own).
    #[arg(long)]
    packets: Option<u64>,
}

impl Cmd {
    pub fn run(self, sh: &Shell, global: &crate::Global) -> Result<()> {
        let runner = Runner::new(global);
        let mut figures = Map::new();
        for bench in ["per_hop", "node_forward"] {
            if self.only.as_deref().is_some_and(|only| only != bench) {
                continue;
            }
            let extra: Vec<String> = match (bench, self.packets) {
                ("node_forward", Some(n)) => vec!["--packets".into(), n.to_string()],
                _ => Vec::new(),
            };
            if !global.dry_run {
                eprintln!("running `cargo bench -p mixnode --bench {bench}` (builds in release mode first)...");
            }
            let output = runner.run_capture(cmd!(
                sh,
                "cargo bench --quiet -p mixnode --bench {bench} -- --json {extra...}"
            ))?;
            if global.dry_run {
                continue;
            }
            figures.extend(last_json_object(&output).with_context(|| {
                format!("`cargo bench --bench {bench} -- --json` printed no JSON object")
            })?);
        }
        if global.dry_run {
            return Ok(());
        }
        if self.json {
            println!("{}", Value::Object(figures));
        } else {
            print!("{}", table(&figures));
        }
        Ok(())
    }
}

/// The last line of `output` that parses as a JSON object.
fn last_json_object(output: &str) -> Option<Map<String, Value>> {
    output
        .lines()
        .rev()
        .find_map(|line| match serde_json::from_str(line.trim()) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        })
}

fn table(f: &Map<String, Value>) -> String {
    let num = |k: &str| f.get(k).and_then(Value::as_f64);
    let speedup =
        num("speedup").or_else(|| Some(num("sphinx_packet_per_hop_us")? / num("per_hop_us")?));
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "-",
    };
    let rows: Vec<(&str, String, String, &str)> = vec![
        (
            "per hop (ours)",
            fmt(num("per_hop_us"), "us"),
            String::new(),
            "",
        ),
        (
            "per hop (sphinx-packet)",
            fmt(num("sphinx_packet_per_hop_us"), "us"),
            String::new(),
            "",
        ),
        ("one X25519", fmt(num("x25519_us"), "us"), String::new(), ""),
        (
            "speedup vs sphinx-packet",
            fmt(speedup, "x"),
            format!(">= {TARGET_SPEEDUP}x"),
            verdict(speedup.map(|s| s >= TARGET_SPEEDUP)),
        ),
        (
            "one node forwarding",
            fmt(num("node_forward_pps"), "packets/s"),
            format!(">= {TARGET_PPS}"),
            verdict(num("node_forward_pps").map(|p| p >= TARGET_PPS)),
        ),
        (
            "node CPU per packet",
            fmt(num("node_cpu_us_per_packet"), "us"),
            String::new(),
            "",
        ),
    ];
    let rows: Vec<[String; 4]> = rows
        .into_iter()
        .filter(|(_, value, _, _)| value != "-")
        .map(|(name, value, target, verdict)| [name.into(), value, target, verdict.into()])
        .collect();
    use crate::table::Align::{Left, Right};
    crate::table::render(&["FIGURE", "MEASURED", "TARGET", ""], &[Left, Right], &rows)
}

fn fmt(value: Option<f64>, unit: &str) -> String {
    match value {
        Some(v) if v >= 100.0 => format!("{v:.0} {unit}"),
        Some(v) => format!("{v:.2} {unit}"),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_last_json_object_line() {
        let out = "warming up\n{\"a\":1}\nnoise\n{\"node_forward_pps\": 30000.0}\n";
        let map = last_json_object(out).unwrap();
        assert_eq!(map["node_forward_pps"], 30000.0);
        assert!(last_json_object("no json here\n[1,2]\n").is_none());
    }

    #[test]
    fn table_judges_the_targets() {
        let map = last_json_object(
            r#"{"per_hop_us":40.0,"sphinx_packet_per_hop_us":133.0,"node_forward_pps":20000.0}"#,
        )
        .unwrap();
        let t = table(&map);
        assert!(t.contains("3.33 x"), "{t}");
        assert!(
            t.lines()
                .any(|l| l.starts_with("speedup") && l.ends_with("met")),
            "{t}"
        );
        assert!(
            t.lines()
                .any(|l| l.starts_with("one node forwarding") && l.ends_with("MISSED")),
            "{t}"
        );
    }
}
