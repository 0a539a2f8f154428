//! E2E: a real `prod` bring-up through the xtask on the offline images with
//! their real healthchecks: the secret files are written (the value of the
//! env file's variable, no trailing newline, mode 0644 inside a 0700
//! `secrets/`, as ARCHITECTURE.md's invariant says and compose/prod.yml
//! explains), Postgres reads its password from the file (not from its
//! environment, which holds none) and answers `psql` with it, the resource
//! limits reach the containers, and nothing is published on the host. Own
//! project, networks and ports (see `real_support`); the secret files the test
//! created are removed again (a developer's existing ones are left alone).

mod common;
mod real_support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::*;
use real_support::*;

/// Removes the repository's `secrets/` files this test created, on drop.
struct CreatedSecrets {
    dir: std::path::PathBuf,
    files_before: Vec<std::path::PathBuf>,
    dir_existed: bool,
}

impl Drop for CreatedSecrets {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if !self.files_before.contains(&entry.path()) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        if !self.dir_existed {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

#[test]
fn prod_comes_up_with_secret_files_limits_and_no_published_ports() {
    if !engine_or_skip("prod_comes_up_with_secret_files_limits_and_no_published_ports") {
        return;
    }
    let secrets = crate_dir().parent().unwrap().join("secrets");
    let _created = CreatedSecrets {
        files_before: std::fs::read_dir(&secrets)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect(),
        dir_existed: secrets.exists(),
        dir: secrets.clone(),
    };
    let stack = RealStack::new("prod", &[]);
    stack.xtask_ok(&["prod", "--timeout", "300"]);
    assert_eq!(
        stack.services(),
        ["postgres", "prometheus"],
        "Grafana and Loki have no Debian package and are left out offline"
    );

    // The secret file: 0644 in a 0700 directory, the env file's value (unless
    // a developer's file was already there: existing files are never overwritten).
    let file = secrets.join("postgres_password");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&secrets), 0o700, "{}", secrets.display());
    assert_eq!(mode(&file), 0o644, "{}", file.display());
    let password = std::fs::read_to_string(&file).unwrap();
    if !_created.files_before.contains(&file) {
        assert_eq!(
            password, POSTGRES_PASSWORD,
            "the file holds the env file's value, no newline"
        );
    }

    // Postgres got the password from the file: its environment holds none.
    let env = stack.inspect("postgres", "{{json .Config.Env}}");
    assert!(env.contains("\"POSTGRES_PASSWORD=\""), "{env}");
    assert!(
        env.contains("POSTGRES_PASSWORD_FILE=/run/secrets/postgres_password"),
        "{env}"
    );
    assert!(
        !env.contains(POSTGRES_PASSWORD) && !env.contains(password.as_str()),
        "{env}"
    );
    let postgres = stack.container("postgres");
    let query = |pw: &str| {
        Command::new("docker")
            .args(["exec", "-e", &format!("PGPASSWORD={pw}"), &postgres])
            .args([
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "fog",
                "-d",
                "fog",
                "-tAc",
                "select 6 * 7",
            ])
            .output()
            .unwrap()
    };
    let out = query(&password);
    assert!(
        out.status.success(),
        "psql with the secret file's password: {}",
        text(&out)
    );
    assert_eq!(stdout(&out).trim(), "42");
    assert!(
        !query("not-the-password").status.success(),
        "a wrong password is refused"
    );

    // prod.yml's limits reach the containers; nothing is published.
    for service in ["postgres", "prometheus"] {
        assert_eq!(
            stack.inspect(service, "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}"),
            "1073741824 1000000000",
            "{service}: 1G memory, 1.0 CPU"
        );
        let bindings = stack.inspect(service, "{{json .NetworkSettings.Ports}}");
        assert!(
            !bindings.contains("HostPort"),
            "{service} publishes {bindings}"
        );
    }
    assert_eq!(
        stack.inspect("postgres", "{{.State.Health.Status}}"),
        "healthy"
    );

    stack.xtask_ok(&["down", "--volumes", "--yes"]);
    assert!(
        stack.leftovers().is_empty(),
        "left after down: {:?}",
        stack.leftovers()
    );
}
