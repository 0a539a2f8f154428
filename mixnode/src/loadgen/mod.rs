//! `loadgen`: reads each node's `/status` (in route order), becomes the
//! packets' destination (a TCP listener speaking the same framing that
//! unwraps the final layer), builds the packets (a short run completely
//! before sending, so generation time is reported apart; a long one
//! streamed with bounded memory, see [`generate`]), sends them to the entry
//! node over one TCP connection, optionally paced, with `--timeout` on
//! every socket operation, and reports sent, delivered, lost,
//! throughput and end-to-end latency percentiles. Each payload carries the
//! run id and the packet's sequence number; the send instant of every
//! sequence number is recorded as it leaves, so latency is measured from the
//! moment a packet is written, not from when it was built.

pub mod args;
pub mod drops;
pub mod generate;
mod report;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::packet::{unwrap_packet, Action, PublicKey, RouteHop, SecretKey, PACKET_LEN};
pub use args::{parse, Args, UsageError, HELP};
pub use report::Report;

const MAGIC: &[u8; 4] = b"LGEN";

#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    #[error("cannot read {url}/status: {detail}")]
    Status { url: String, detail: String },
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build packets: {0}")]
    Build(String),
    #[error(
        "{url} is a {role} node, but the last of --nodes must be an exit \
         (NODE_TYPE=exit): only an exit delivers, any other role drops the packets as `role`"
    )]
    LastNotExit { url: String, role: String },
    #[error("cannot send to the entry node at {addr}: {source}")]
    Send {
        addr: String,
        source: std::io::Error,
    },
}

/// One node as its `/status` describes it.
#[derive(Clone, Debug)]
pub struct NodeInfo {
    pub mix_address: String,
    pub public_key: PublicKey,
    /// `entry`, `middle` or `exit` (absent from an older node's `/status`).
    pub role: Option<String>,
}

/// Reads `url/status` and returns the node's mix address, public key and role.
pub fn fetch_node(url: &str) -> Result<NodeInfo, LoadgenError> {
    let fail = |detail: String| LoadgenError::Status {
        url: url.to_string(),
        detail,
    };
    let (status, body) = crate::http::get(&format!("{url}/status"), Duration::from_secs(5))
        .map_err(|e| fail(e.to_string()))?;
    if status != 200 {
        return Err(fail(format!("HTTP {status}")));
    }
    let json: serde_json::Value = serde_json::from_str(&body).map_err(|e| fail(e.to_string()))?;
    let field = |name: &str| {
        json.get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| fail(format!("no `{name}` in the JSON")))
    };
    let public_key = field("public_key")?
        .parse()
        .map_err(|_| fail("`public_key` is not a hex key".into()))?;
    Ok(NodeInfo {
        mix_address: field("mix_address")?,
        public_key,
        role: field("role").ok(),
    })
}

/// A small xorshift generator for exponential delays (not for secrets).
struct Xorshift(u64);

impl Xorshift {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn exponential(&mut self, mean: Duration) -> Duration {
        if mean.is_zero() {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-mean.as_secs_f64() * (1.0 - self.next_f64()).ln())
    }
}

/// What the destination has seen so far.
struct Arrivals {
    /// Per sequence number: nanoseconds after `start` when it was sent (0 = not yet).
    sent_at: Vec<AtomicU64>,
    latencies: Mutex<Vec<Duration>>,
    seen: Mutex<Vec<bool>>,
    delivered: AtomicU64,
    duplicates: AtomicU64,
    foreign: AtomicU64,
    last_arrival_nanos: AtomicU64,
}

/// This host's address on the route towards `address` (a UDP "connect"
/// sends nothing; it only picks the source address), so the exit node can
/// reach the destination without relying on DNS for this host's name.
fn local_ip_towards(address: &str) -> Option<String> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect(address).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then(|| ip.to_string())
}

fn is_local(url: &str) -> bool {
    let host = url
        .trim_start_matches("http://")
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Runs one measurement end to end.
pub fn run(args: &Args) -> Result<Report, LoadgenError> {
    let nodes = args
        .nodes
        .iter()
        .map(|u| fetch_node(u))
        .collect::<Result<Vec<_>, _>>()?;
    // The route follows --nodes, so its last mix delivers: it must be an exit.
    if let (Some(last), Some(url)) = (nodes.last(), args.nodes.last()) {
        match last.role.as_deref() {
            Some("exit") | None => {}
            Some(role) => {
                return Err(LoadgenError::LastNotExit {
                    url: url.clone(),
                    role: role.to_string(),
                })
            }
        }
    }
    // Drop counters before the run, so a loss can be explained by the nodes.
    let counters: Vec<(String, String, drops::Counters)> = args
        .nodes
        .iter()
        .zip(&nodes)
        .map(|(url, node)| {
            let role = node.role.clone().unwrap_or_else(|| "node".into());
            (url.clone(), role, drops::read(url).unwrap_or_default())
        })
        .collect();
    let local = args.nodes.iter().all(|u| is_local(u));
    let listen = args.listen.unwrap_or_else(|| {
        if local {
            SocketAddr::from(([127, 0, 0, 1], 0))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 0))
        }
    });
    let listener = TcpListener::bind(listen).map_err(|source| LoadgenError::Listen {
        addr: listen,
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| LoadgenError::Listen {
            addr: listen,
            source,
        })?
        .port();
    let advertise = args.advertise.clone().unwrap_or_else(|| {
        let host = if local {
            "127.0.0.1".to_string()
        } else {
            local_ip_towards(&nodes[0].mix_address).unwrap_or_else(crate::config::hostname)
        };
        format!("{host}:{port}")
    });
    let key = SecretKey::generate();
    let destination = RouteHop {
        address: advertise,
        public_key: key.public_key(),
        delay: Duration::ZERO,
    };
    let run_id = u64::from_le_bytes(
        key.public_key().to_string().as_bytes()[..8]
            .try_into()
            .unwrap_or([7; 8]),
    );

    let generation_started = Instant::now();
    let chunks = generate::spawn(&nodes, &destination, args.packets, run_id, args.mean_delay);
    let mut prebuilt = std::collections::VecDeque::new();
    if args.packets <= generate::PREBUILD {
        for _ in 0..generate::chunks(args.packets) {
            let chunk = chunks
                .recv()
                .map_err(|_| LoadgenError::Build("builder thread panicked".into()))?;
            prebuilt.push_back(chunk.map_err(LoadgenError::Build)?);
        }
    }
    let generation = generation_started.elapsed();

    let arrivals = Arc::new(Arrivals {
        sent_at: (0..args.packets).map(|_| AtomicU64::new(0)).collect(),
        latencies: Mutex::new(Vec::with_capacity(args.packets)),
        seen: Mutex::new(vec![false; args.packets]),
        delivered: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        foreign: AtomicU64::new(0),
        last_arrival_nanos: AtomicU64::new(0),
    });
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (arrivals, stop, key) = (arrivals.clone(), stop.clone(), key.clone());
        listener.set_nonblocking(true).ok();
        std::thread::spawn(move || accept_deliveries(listener, key, run_id, start, arrivals, stop));
    }

    let entry = &nodes[0].mix_address;
    let send_error = |source| LoadgenError::Send {
        addr: entry.clone(),
        source,
    };
    let addr = std::net::ToSocketAddrs::to_socket_addrs(entry.as_str())
        .map_err(send_error)?
        .next()
        .ok_or_else(|| send_error(std::io::ErrorKind::NotFound.into()))?;
    let mut stream = TcpStream::connect_timeout(&addr, args.timeout.max(Duration::from_millis(1)))
        .map_err(send_error)?;
    stream.set_nodelay(true).ok();
    // A write blocked longer than --timeout (the node stopped reading) fails.
    stream
        .set_write_timeout(Some(args.timeout.max(Duration::from_millis(1))))
        .map_err(send_error)?;
    let group = 32;
    let mut sent = 0usize;
    let mut bytes = Vec::with_capacity(group * PACKET_LEN);
    for _ in 0..generate::chunks(args.packets) {
        let chunk = match prebuilt.pop_front() {
            Some(chunk) => chunk,
            None => chunks
                .recv()
                .map_err(|_| LoadgenError::Build("builder thread panicked".into()))?
                .map_err(LoadgenError::Build)?,
        };
        for (offset, packets) in chunk.packets.chunks(group).enumerate() {
            if let Some(rate) = args.rate {
                let due = start + Duration::from_secs_f64(sent as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            let first = chunk.first + offset * group;
            let now = start.elapsed().as_nanos().max(1) as u64;
            for i in 0..packets.len() {
                arrivals.sent_at[first + i].store(now, Relaxed);
            }
            bytes.clear();
            for packet in packets {
                bytes.extend_from_slice(packet);
            }
            stream.write_all(&bytes).map_err(send_error)?;
            sent += packets.len();
        }
    }
    stream.flush().map_err(send_error)?;
    let send_time = start.elapsed();

    let deadline = Instant::now() + args.timeout;
    while arrivals.delivered.load(Relaxed) < args.packets as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Relaxed);
    drop(stream);

    let delivered = arrivals.delivered.load(Relaxed);
    let last = Duration::from_nanos(arrivals.last_arrival_nanos.load(Relaxed));
    let latencies =
        std::mem::take(&mut *arrivals.latencies.lock().unwrap_or_else(|e| e.into_inner()));
    let dropped = if delivered < args.packets as u64 {
        explain_loss(&counters, args.packets as u64 - delivered)
    } else {
        Vec::new()
    };
    Ok(Report::new(
        args.packets as u64,
        delivered,
        arrivals.duplicates.load(Relaxed),
        arrivals.foreign.load(Relaxed),
        generation,
        send_time,
        last,
        latencies,
    )
    .with_drops(dropped))
}

/// The nodes' drops during the run; counters are read again for up to a
/// second until they account for the `lost` packets (a node counts a drop
/// when it happens, which can be just after loadgen's deadline).
fn explain_loss(counters: &[(String, String, drops::Counters)], lost: u64) -> Vec<drops::Drop> {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let after: Vec<Option<drops::Counters>> = counters
            .iter()
            .map(|(url, _, _)| drops::read(url))
            .collect();
        let found = drops::during(counters, &after);
        let counted: u64 = found.iter().map(|d| d.packets).sum();
        if counted >= lost || Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn accept_deliveries(
    listener: TcpListener,
    key: SecretKey,
    run_id: u64,
    start: Instant,
    arrivals: Arc<Arrivals>,
    stop: Arc<AtomicBool>,
) {
    // Readers only read and timestamp frames; unwrapping happens on other
    // threads so a slow unwrap never pushes back on the exit node.
    let (to_unwrap, frames) = std::sync::mpsc::channel::<(Vec<u8>, Duration)>();
    let frames = Arc::new(Mutex::new(frames));
    let unwrappers = std::thread::available_parallelism().map_or(1, |n| n.get());
    for _ in 0..unwrappers {
        let (frames, key, arrivals) = (frames.clone(), key.clone(), arrivals.clone());
        std::thread::spawn(move || loop {
            let next = frames.lock().unwrap_or_else(|e| e.into_inner()).recv();
            match next {
                Ok((frame, arrived)) => record(&frame, arrived, &key, run_id, &arrivals),
                Err(_) => return,
            }
        });
    }
    while !stop.load(Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let (to_unwrap, stop) = (to_unwrap.clone(), stop.clone());
                std::thread::spawn(move || read_frames(stream, start, &to_unwrap, &stop));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn read_frames(
    mut stream: TcpStream,
    start: Instant,
    to_unwrap: &std::sync::mpsc::Sender<(Vec<u8>, Duration)>,
    stop: &AtomicBool,
) {
    stream.set_nonblocking(false).ok();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok();
    let mut buf = vec![0u8; PACKET_LEN * 64];
    let mut filled = 0;
    while !stop.load(Relaxed) {
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return,
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        let arrived = start.elapsed();
        let whole = filled / PACKET_LEN * PACKET_LEN;
        for frame in buf[..whole].chunks_exact(PACKET_LEN) {
            if to_unwrap.send((frame.to_vec(), arrived)).is_err() {
                return;
            }
        }
        buf.copy_within(whole..filled, 0);
        filled -= whole;
    }
}

/// Unwraps one delivered frame and records its latency.
fn record(frame: &[u8], arrived: Duration, key: &SecretKey, run_id: u64, arrivals: &Arrivals) {
    let seq = match unwrap_packet(key, frame) {
        Ok(unwrapped) => match unwrapped.action {
            Action::Final { payload } if payload.len() >= 20 && &payload[..4] == MAGIC => {
                let id = u64::from_le_bytes(payload[4..12].try_into().unwrap_or_default());
                let seq = u64::from_le_bytes(payload[12..20].try_into().unwrap_or_default());
                (id == run_id).then_some(seq as usize)
            }
            _ => None,
        },
        Err(_) => None,
    };
    let Some(seq) = seq.filter(|s| *s < arrivals.sent_at.len()) else {
        arrivals.foreign.fetch_add(1, Relaxed);
        return;
    };
    {
        let mut seen = arrivals.seen.lock().unwrap_or_else(|e| e.into_inner());
        if std::mem::replace(&mut seen[seq], true) {
            arrivals.duplicates.fetch_add(1, Relaxed);
            return;
        }
    }
    let sent = Duration::from_nanos(arrivals.sent_at[seq].load(Relaxed));
    arrivals
        .latencies
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(arrived.saturating_sub(sent));
    arrivals
        .last_arrival_nanos
        .fetch_max(arrived.as_nanos() as u64, Relaxed);
    arrivals.delivered.fetch_add(1, Relaxed);
}
