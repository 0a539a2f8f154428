//! The `mixnode` binary. Without arguments it runs a node configured by the
//! environment (see `mixnode --help`); `mixnode healthcheck` GETs
//! `http://127.0.0.1:$NODE_PORT/health` and exits 0 on 200, 1 otherwise (the
//! image has no shell or curl). Exit codes: 0 clean stop, 1 runtime failure,
//! 2 bad configuration or usage.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use mixnode::config::Config;

const HELP: &str = "\
mixnode: a betanet mix node (layered encryption, one X25519 per hop)

USAGE:
    mixnode                run a node configured by the environment
    mixnode healthcheck    exit 0 if http://127.0.0.1:$NODE_PORT/health answers 200
    mixnode --version

ENVIRONMENT:
    NODE_TYPE           entry | middle | exit (required)
    NODE_PORT           HTTP port for /health, /metrics, /status (8080)
    MIX_PORT            TCP port for packets (1789)
    BIND_ADDR           address both ports bind to (0.0.0.0)
    MIX_ADVERTISE_ADDR  host:port other nodes use to reach MIX_PORT (<hostname>:<MIX_PORT>)
    DATA_DIR            where node.key lives, mode 0600 (/data)
    NODE_ID             id in /status and the topology table (<role>-<key prefix>)
    RUST_LOG            log filter (info)
    PIPELINE_WORKERS    unwrap threads (4)
    BATCH_SIZE          frames read and unwrapped per batch (128)
    POOL_SIZE           packets buffered per next hop, one connection each (1024)
    MAX_QUEUE_DEPTH     packets queued inside the node before overload drops (10000)
    TARGET_THROUGHPUT   admission rate in packets/s, 0 = unlimited (25000)
    DATABASE_URL        optional postgres:// URL: register in mixnode_topology

EXAMPLE:
    NODE_TYPE=entry NODE_PORT=9001 MIX_PORT=1789 DATA_DIR=./data mixnode
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => run(),
        Some("healthcheck") => healthcheck(),
        Some("-h" | "--help" | "help") => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!(
                "mixnode {} ({})",
                mixnode::node::VERSION,
                mixnode::node::REVISION
            );
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("error: unknown argument `{other}`; try `mixnode --help`");
            ExitCode::from(2)
        }
    }
}

fn run() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&config.log_filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(mixnode::node::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        // A key file that cannot be used is a configuration problem.
        Err(e @ mixnode::node::NodeError::Key(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn healthcheck() -> ExitCode {
    let port = std::env::var("NODE_PORT").unwrap_or_else(|_| "8080".into());
    let Ok(port) = port.trim().parse::<u16>() else {
        eprintln!("error: NODE_PORT={port}: expected a TCP port number 1-65535");
        return ExitCode::from(2);
    };
    let url = format!("http://127.0.0.1:{port}/health");
    match mixnode::http::get(&url, Duration::from_secs(3)) {
        Ok((200, _)) => ExitCode::SUCCESS,
        Ok((status, _)) => {
            eprintln!("unhealthy: {url} answered {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}
