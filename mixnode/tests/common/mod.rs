//! Shared helpers for the integration tests: spawn the real `mixnode` binary
//! on free 127.0.0.1 ports with a temp DATA_DIR (killed on drop), read its
//! HTTP endpoints, and a sink that counts the frames a node forwards to it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mixnode::packet::{build_packet, PublicKey, RouteHop, SecretKey, PACKET_LEN};

/// A 127.0.0.1 port that was free a moment ago and that this process has
/// not handed out before: two threads asking the kernel for port 0 one
/// after the other can be given the same port, which failed a fresh CI run
/// ("cannot listen on NODE_PORT 127.0.0.1:32773: Address already in use").
/// Another process can still take it before the node binds it; `Node`
/// retries with new ports when that happens.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// How often a node whose freshly chosen port was taken before it could
/// bind it is started again on new ports.
const PORT_RETRIES: usize = 5;

pub struct Node {
    child: Option<Child>,
    pub http_port: u16,
    pub mix_port: u16,
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
    role: String,
    /// Where the node's stderr goes (echoed through the test's own stderr
    /// when `None`).
    log: Option<PathBuf>,
    /// The end of the node's stderr when it is not logged to a file; set
    /// once the node was first started.
    stderr_tail: Option<Arc<Mutex<String>>>,
}

impl Node {
    /// Starts a node and waits until `/health` answers 200.
    pub fn start(role: &str, data_dir: &Path, extra: &[(&str, &str)]) -> Node {
        Node::start_logged(role, data_dir, extra, None)
    }

    /// Like [`Node::start`], with the node's stderr written to `log`.
    pub fn start_logged(
        role: &str,
        data_dir: &Path,
        extra: &[(&str, &str)],
        log: Option<PathBuf>,
    ) -> Node {
        Node::start_on(role, data_dir, extra, log, free_port())
    }

    /// Like [`Node::start_logged`], first trying `http_port` for its HTTP
    /// listener (a test of the retry on a port that is already taken).
    pub fn start_on(
        role: &str,
        data_dir: &Path,
        extra: &[(&str, &str)],
        log: Option<PathBuf>,
        http_port: u16,
    ) -> Node {
        let mut node = Node {
            log,
            child: None,
            http_port,
            mix_port: free_port(),
            data_dir: data_dir.to_path_buf(),
            env: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            role: role.to_string(),
            stderr_tail: None,
        };
        node.spawn();
        node
    }

    /// Starts the process and waits for `/health`. A first start whose
    /// port was taken in the meantime by another process ("Address already
    /// in use") is retried on new ports; a restart keeps its ports.
    fn spawn(&mut self) {
        let first_start = self.child.is_none() && self.stderr_tail.is_none();
        for attempt in 1..=PORT_RETRIES {
            match self.spawn_once() {
                Ok(()) => return,
                Err(tail)
                    if first_start
                        && attempt < PORT_RETRIES
                        && tail.contains("Address already in use") =>
                {
                    eprintln!(
                        "a port was taken before the node bound it; retrying on new ports: {}",
                        tail.trim()
                    );
                    self.http_port = free_port();
                    self.mix_port = free_port();
                }
                Err(tail) => panic!("mixnode exited early; its stderr ends with:\n{tail}"),
            }
        }
    }

    /// One start: `Err` carries the end of the node's stderr when it exits
    /// before it is healthy.
    fn spawn_once(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mixnode"));
        cmd.env_clear()
            .env("NODE_TYPE", &self.role)
            .env("NODE_PORT", self.http_port.to_string())
            .env("MIX_PORT", self.mix_port.to_string())
            .env("BIND_ADDR", "127.0.0.1")
            .env("MIX_ADVERTISE_ADDR", format!("127.0.0.1:{}", self.mix_port))
            .env("DATA_DIR", &self.data_dir)
            .env("RUST_LOG", "warn")
            // Every 127.0.0.1 listener counts as a mix (tests' sinks pose as mixes).
            .env("MIX_PEERS", "127.0.0.1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null());
        let log_len = self
            .log
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len());
        match &self.log {
            Some(path) => cmd.stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap(),
            )),
            None => cmd.stderr(Stdio::piped()),
        };
        let mut child = cmd.spawn().expect("spawn mixnode");
        let tail = Arc::new(Mutex::new(String::new()));
        let forward = child.stderr.take().map(|stderr| {
            // Echoed line by line (the test harness captures it) and the
            // last lines kept for the early-exit message.
            let tail = Arc::clone(&tail);
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    eprintln!("{line}");
                    let mut tail = tail.lock().unwrap();
                    tail.push_str(&line);
                    tail.push('\n');
                    if tail.len() > 8192 {
                        let cut = tail.len() - 4096;
                        let cut = (cut..tail.len())
                            .find(|&i| tail.is_char_boundary(i))
                            .unwrap();
                        tail.drain(..cut);
                    }
                }
            })
        });
        self.stderr_tail = Some(Arc::clone(&tail));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok((200, _)) = self.get("/health") {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                if let Some(forward) = forward {
                    let _ = forward.join();
                }
                let text = match &self.log {
                    Some(path) => {
                        let all = std::fs::read(path).unwrap_or_default();
                        String::from_utf8_lossy(&all[(log_len as usize).min(all.len())..])
                            .into_owned()
                    }
                    None => tail.lock().unwrap().clone(),
                };
                return Err(format!("{text}(exit: {status})"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("mixnode did not become healthy within 30 s");
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("node running").id()
    }

    /// The node's resident set size in bytes (from /proc).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS")
            * 1024
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn mix_address(&self) -> String {
        format!("127.0.0.1:{}", self.mix_port)
    }

    pub fn get(&self, path: &str) -> Result<(u16, String), mixnode::http::ClientError> {
        mixnode::http::get(&format!("{}{path}", self.url()), Duration::from_secs(5))
    }

    pub fn status(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/status").unwrap().1).unwrap()
    }

    pub fn public_key(&self) -> PublicKey {
        self.status()["public_key"]
            .as_str()
            .unwrap()
            .parse()
            .ok()
            .unwrap()
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics").unwrap();
        assert_eq!(status, 200);
        Metrics::parse(&body)
    }

    /// Sends SIGTERM without waiting.
    pub fn send_sigterm(&self) {
        let child = self.child.as_ref().expect("node running");
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.send_sigterm();
        self.wait_exit()
    }

    /// Waits (up to 15 s) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("node running");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node did not stop within 15 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the same node again (same ports, env and DATA_DIR).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            assert!(self.terminate().success());
        }
        self.spawn();
    }

    /// Waits until every packet the node received has left it.
    pub fn wait_quiescent(&self) -> Metrics {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let m = self.metrics();
            if m.received() > 0.0
                && m.received() == m.accounted()
                && m.get("mixnode_queue_depth") == 0.0
            {
                return m;
            }
            assert!(Instant::now() < deadline, "node never settled: {m:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parsed `/metrics`: sample name with labels -> value.
#[derive(Debug, Clone)]
pub struct Metrics(pub HashMap<String, f64>);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        Metrics(
            text.lines()
                .filter(|l| !l.starts_with('#') && !l.is_empty())
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect(),
        )
    }
    pub fn get(&self, key: &str) -> f64 {
        *self.0.get(key).unwrap_or_else(|| panic!("no metric {key}"))
    }
    pub fn dropped(&self, reason: &str) -> f64 {
        self.get(&format!(
            "mixnode_packets_dropped_total{{reason=\"{reason}\"}}"
        ))
    }
    pub fn dropped_total(&self) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("mixnode_packets_dropped_total{"))
            .map(|(_, v)| v)
            .sum()
    }
    pub fn received(&self) -> f64 {
        self.get("mixnode_packets_received_total")
    }
    pub fn forwarded(&self) -> f64 {
        self.get("mixnode_packets_forwarded_total")
    }
    pub fn delivered(&self) -> f64 {
        self.get("mixnode_packets_delivered_total")
    }
    /// forwarded + delivered + dropped.
    pub fn accounted(&self) -> f64 {
        self.forwarded() + self.delivered() + self.dropped_total()
    }
}

/// A TCP listener standing in for the next mix: counts whole frames and
/// notes when each one arrived.
pub struct Sink {
    pub address: String,
    pub frames: Arc<AtomicU64>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

impl Sink {
    pub fn start() -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let frames = Arc::new(AtomicU64::new(0));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let (counter, times) = (frames.clone(), arrivals.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (counter, times) = (counter.clone(), times.clone());
                std::thread::spawn(move || count_frames(stream, &counter, &times));
            }
        });
        Sink {
            address,
            frames,
            arrivals,
        }
    }
    pub fn count(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
    pub fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }
}

fn count_frames(mut stream: TcpStream, counter: &AtomicU64, times: &Mutex<Vec<Instant>>) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut bytes = 0usize;
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            return;
        }
        let before = bytes / PACKET_LEN;
        bytes += n;
        let now = Instant::now();
        times
            .lock()
            .unwrap()
            .extend((before..bytes / PACKET_LEN).map(|_| now));
        // Summed over every connection (a node may reconnect).
        counter.fetch_add((bytes / PACKET_LEN - before) as u64, Ordering::Relaxed);
    }
}

/// One packet that `node` holds for `delay` and then relays to `next`.
pub fn packet_with_delay(node: PublicKey, node_addr: &str, next: &str, delay: Duration) -> Vec<u8> {
    let other = SecretKey::generate().public_key();
    let route = [
        hop(node_addr, node, delay),
        hop(next, other, Duration::ZERO),
        hop("127.0.0.1:9", other, Duration::ZERO),
    ];
    build_packet(&route, b"delayed").unwrap()
}

/// One packet for which `node` is the exit: it holds it for `delay`, then
/// delivers it to `destination` (a sink posing as the packet's recipient).
pub fn packet_for_exit(
    node: PublicKey,
    node_addr: &str,
    destination: &str,
    delay: Duration,
) -> Vec<u8> {
    let route = [
        hop(node_addr, node, delay),
        hop(
            destination,
            SecretKey::generate().public_key(),
            Duration::ZERO,
        ),
    ];
    build_packet(&route, b"for the destination").unwrap()
}

/// Builds `count` packets that `node` relays to `next` (a sink posing as a
/// mix), each then bound for a made-up destination.
pub fn packets_via(node: PublicKey, node_addr: &str, next: &str, count: usize) -> Vec<Vec<u8>> {
    let other = SecretKey::generate().public_key();
    let route = [
        hop(node_addr, node, Duration::ZERO),
        hop(next, other, Duration::ZERO),
        hop("127.0.0.1:9", other, Duration::ZERO),
    ];
    (0..count)
        .map(|i| build_packet(&route, &(i as u64).to_le_bytes()).unwrap())
        .collect()
}

/// A TCP connection to `addr` from the loopback source address `source`
/// (e.g. 127.0.0.2), so one test can play several peers.
pub fn connect_from(source: [u8; 4], addr: &str) -> TcpStream {
    let target: std::net::SocketAddr = addr.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let from = std::net::SocketAddr::from((source, 0));
    socket.bind(&from.into()).unwrap();
    socket.connect(&target.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Packets that `node` (as an exit) delivers to `destination`, `count` of them.
pub fn packets_for_exit(
    node: PublicKey,
    node_addr: &str,
    destination: &str,
    count: usize,
) -> Vec<Vec<u8>> {
    (0..count)
        .map(|_| packet_for_exit(node, node_addr, destination, Duration::ZERO))
        .collect()
}

/// Polls `cond` every 50 ms for up to `secs`.
pub fn eventually(secs: u64, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True when a test that needs an external tool may skip (CI unset).
pub fn may_skip(tool: &str) -> bool {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        panic!("{tool} is required when CI is set");
    }
    eprintln!("skipping: {tool} not found (set CI=true to make this a failure)");
    true
}

/// One route element: where it listens, its key, how long it holds the packet.
pub fn hop(address: &str, public_key: PublicKey, delay: Duration) -> RouteHop {
    RouteHop {
        address: address.to_string(),
        public_key,
        delay,
    }
}
