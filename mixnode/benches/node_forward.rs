//! One node's sustained forwarding rate. Starts the real `mixnode` binary as
//! a middle node (PIPELINE_WORKERS=2, admission unlimited), pre-builds every
//! packet (zero mix delay, next hop = a sink in this process that counts
//! frames), then a feeder thread writes them over loopback TCP with at most
//! WINDOW packets in flight (so the node's queue never overflows) and the
//! sink times the arrivals. The rate is taken between the 10% and 90% marks
//! of arrivals, i.e. in steady state; the node's own CPU time per packet is
//! read from /proc. Usage: `cargo bench -p mixnode --bench node_forward [-- --json]
//! [--packets N]`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mixnode::packet::{build_packet, RouteHop, SecretKey, PACKET_LEN};

const WINDOW: u64 = 4096;
const WORKERS: &str = "2";

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn get(url: &str) -> String {
    mixnode::http::get(url, Duration::from_secs(5))
        .map(|r| r.1)
        .unwrap_or_default()
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or(f64::NAN)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let json = args.iter().any(|a| a == "--json");
    let packets: usize = args
        .iter()
        .position(|a| a == "--packets")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(150_000);

    // The sink: counts whole frames and stamps the 10% and 90% marks.
    let sink = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_addr = sink.local_addr().unwrap().to_string();
    let arrived = Arc::new(AtomicU64::new(0));
    let marks = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let origin = Instant::now();
    {
        let (arrived, marks) = (arrived.clone(), marks.clone());
        let (lo, hi) = ((packets / 10) as u64, (packets * 9 / 10) as u64);
        std::thread::spawn(move || {
            for stream in sink.incoming().flatten() {
                let (arrived, marks) = (arrived.clone(), marks.clone());
                std::thread::spawn(move || count(stream, &arrived, &marks, lo, hi, origin));
            }
        });
    }

    let dir = std::env::temp_dir().join(format!("node_forward-{}", std::process::id()));
    let (http, mix) = (free_port(), free_port());
    let node = Guard(
        Command::new(env!("CARGO_BIN_EXE_mixnode"))
            .env_clear()
            .envs([
                ("NODE_TYPE", "middle"),
                ("NODE_PORT", &http.to_string()),
                ("MIX_PORT", &mix.to_string()),
                ("BIND_ADDR", "127.0.0.1"),
                ("MIX_ADVERTISE_ADDR", &format!("127.0.0.1:{mix}")),
                ("DATA_DIR", dir.to_str().unwrap()),
                ("PIPELINE_WORKERS", WORKERS),
                ("BATCH_SIZE", "128"),
                ("POOL_SIZE", "8192"),
                ("MAX_QUEUE_DEPTH", "10000"),
                ("TARGET_THROUGHPUT", "0"),
                ("RUST_LOG", "warn"),
                // The sink on 127.0.0.1 counts as a mix (relays go only to mixes).
                ("MIX_PEERS", "127.0.0.1"),
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start mixnode"),
    );
    let base = format!("http://127.0.0.1:{http}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !get(&format!("{base}/health")).starts_with("ok") {
        assert!(Instant::now() < deadline, "mixnode did not become healthy");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status: serde_json::Value = serde_json::from_str(&get(&format!("{base}/status"))).unwrap();
    let node_key = status["public_key"].as_str().unwrap().parse().ok().unwrap();

    // Pre-build every packet on all cores: node -> sink (as a mix) -> nowhere.
    let built = Instant::now();
    let other = SecretKey::generate().public_key();
    let route = [
        RouteHop {
            address: format!("127.0.0.1:{mix}"),
            public_key: node_key,
            delay: Duration::ZERO,
        },
        RouteHop {
            address: sink_addr.clone(),
            public_key: other,
            delay: Duration::ZERO,
        },
        RouteHop {
            address: "127.0.0.1:9".into(),
            public_key: other,
            delay: Duration::ZERO,
        },
    ];
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut wire = vec![0u8; packets * PACKET_LEN];
    std::thread::scope(|s| {
        let per = packets.div_ceil(threads) * PACKET_LEN;
        for chunk in wire.chunks_mut(per) {
            let route = &route;
            s.spawn(move || {
                for (i, slot) in chunk.chunks_exact_mut(PACKET_LEN).enumerate() {
                    slot.copy_from_slice(&build_packet(route, &(i as u64).to_le_bytes()).unwrap());
                }
            });
        }
    });
    let generation = built.elapsed();

    // Feed with a bounded window; the node never sees more than WINDOW queued.
    let cpu_before = cpu_seconds(node.0.id());
    let mut feed = TcpStream::connect(format!("127.0.0.1:{mix}")).unwrap();
    feed.set_nodelay(true).unwrap();
    let started = Instant::now();
    let mut sent = 0u64;
    for group in wire.chunks(64 * PACKET_LEN) {
        while sent - arrived.load(Relaxed) > WINDOW {
            std::thread::sleep(Duration::from_micros(200));
        }
        feed.write_all(group).unwrap();
        sent += (group.len() / PACKET_LEN) as u64;
    }
    let wait_until = Instant::now() + Duration::from_secs(60);
    while arrived.load(Relaxed) < sent && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(5));
    }
    let total = started.elapsed();
    let cpu = cpu_seconds(node.0.id()) - cpu_before;
    let got = arrived.load(Relaxed);
    let metrics = get(&format!("{base}/metrics"));
    let dropped = metric(
        &metrics,
        "mixnode_packets_dropped_total{reason=\"overload\"}",
    );
    let (t10, t90) = (marks[0].load(Relaxed), marks[1].load(Relaxed));
    let steady = Duration::from_nanos(t90.saturating_sub(t10));
    let pps = (packets as f64 * 0.8) / steady.as_secs_f64();
    let cpu_us = cpu / got.max(1) as f64 * 1e6;
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        got, packets as u64,
        "the node lost packets ({dropped} overload drops)"
    );

    if json {
        println!(
            "{}",
            serde_json::json!({
                "node_forward_pps": pps.round(),
                "node_forward_packets": packets,
                "node_forward_seconds": total.as_secs_f64(),
                "node_cpu_us_per_packet": (cpu_us * 10.0).round() / 10.0,
                "node_workers": 2,
                "generation_seconds": generation.as_secs_f64(),
            })
        );
    } else {
        println!("node_forward: one middle node, PIPELINE_WORKERS={WORKERS}, loopback feeder -> node -> sink");
        println!(
            "{:<34} {packets} ({PACKET_LEN})",
            "packets (PACKET_LEN bytes)"
        );
        println!(
            "{:<34} {:.2} s (not timed)",
            "pre-generation",
            generation.as_secs_f64()
        );
        println!(
            "{:<34} {:.2} s",
            "feed to last arrival",
            total.as_secs_f64()
        );
        println!(
            "{:<34} {:.0} packets/s",
            "sustained (10%..90% of arrivals)", pps
        );
        println!(
            "{:<34} {:.0} packets/s",
            "overall",
            got as f64 / total.as_secs_f64()
        );
        println!("{:<34} {:.1} us", "node CPU per packet", cpu_us);
        println!("{:<34} {dropped}", "overload drops");
    }
}

fn count(
    mut stream: TcpStream,
    arrived: &AtomicU64,
    marks: &[AtomicU64; 2],
    lo: u64,
    hi: u64,
    origin: Instant,
) {
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        bytes += n as u64;
        let frames = bytes / PACKET_LEN as u64;
        let now = origin.elapsed().as_nanos() as u64;
        for (mark, at) in marks.iter().zip([lo, hi]) {
            if frames >= at && mark.load(Relaxed) == 0 {
                mark.store(now, Relaxed);
            }
        }
        arrived.store(frames, Relaxed);
    }
}
