//! Host ports checked before `compose up`: a port that is already taken is one
//! error naming the port, the service, the `.env` variable that sets it, and
//! the holder where it can be found (a container of another project, or a
//! process from /proc/net/tcp and /proc/<pid>/fd), instead of a half-started stack.

use std::{
    fs,
    io::ErrorKind,
    net::{Ipv4Addr, TcpListener},
};

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

use super::compose::published;
use crate::compose::Service;
use crate::{dotenv::DotEnv, process::Runner};

/// Fail with a clear line if a host port the services publish is taken by
/// anything but the project's own containers (`own` lists their `ip:port->...`).
pub fn check_free(
    sh: &Shell,
    runner: &Runner,
    env: &DotEnv,
    services: &[&Service],
    own: &[String],
) -> Result<()> {
    for service in services {
        for (host_ip, port, _) in published(service) {
            let mine = own.iter().any(|o| {
                o.split("->")
                    .next()
                    .and_then(|hp| hp.rsplit(':').next())
                    .and_then(|port| port.parse::<u16>().ok())
                    == Some(port)
            });
            if mine {
                continue;
            }
            let ip: Ipv4Addr = host_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED);
            let Err(err) = TcpListener::bind((ip, port)) else {
                continue;
            };
            if err.kind() != ErrorKind::AddrInUse {
                continue;
            }
            let holder = holder(sh, runner, port);
            let variable = env
                .file
                .pairs()
                .find(|(k, v)| k.ends_with("_PORT") && v.trim() == port.to_string())
                .map(|(k, _)| format!("set another {k} in {}", env.path.display()))
                .unwrap_or_else(|| "free the port or change it in .env".to_string());
            bail!(
                "port {}:{} for service `{}` is already taken by {holder}: stop it, or {variable}",
                host_ip,
                port,
                service.name
            );
        }
    }
    Ok(())
}

/// Who holds a TCP port: a container, a process, or "an unknown process".
pub fn holder(sh: &Shell, runner: &Runner, port: u16) -> String {
    let filter = format!("publish={port}");
    let format = "{{.Names}}";
    if let Some(names) = runner.probe(cmd!(sh, "docker ps --filter {filter} --format {format}")) {
        if let Some(name) = names.lines().next().filter(|n| !n.is_empty()) {
            return format!("container `{name}`");
        }
    }
    match listening_process(port) {
        Some((pid, comm)) => format!("process {pid} ({comm})"),
        None => "a process this user cannot see (try `sudo ss -ltnp`)".to_string(),
    }
}

/// The pid and command name of the process listening on `port`, from /proc.
pub fn listening_process(port: u16) -> Option<(u32, String)> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    let local_port = f.get(1)?.rsplit(':').next()?;
                    let listening = *f.get(3)? == "0A";
                    (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                        .then(|| f.get(9).map(|s| s.to_string()))
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .filter(|inode| inode != "0")
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for proc_entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = proc_entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                let comm = fs::read_to_string(proc_entry.path().join("comm")).unwrap_or_default();
                return Some((pid, comm.trim().to_string()));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_holding_a_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (pid, _) = listening_process(port).expect("own listener is visible in /proc");
        assert_eq!(pid, std::process::id());
    }
}
