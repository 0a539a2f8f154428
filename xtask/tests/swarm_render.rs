//! The Swarm translation without Docker: every key Swarm ignores or rejects
//! is translated or reported with its file and line, secrets and read-only
//! binds become content-named Swarm objects, bridge networks become overlay
//! networks on the same subnets, one-shot services restart on failure only,
//! `--replicas` scales by role, the repository's own environments render
//! to stack files whose services keep their healthchecks and carry their
//! environment's label, and `migrate`'s one-off beside a stack gets the
//! service's network, variables (by name only) and secret files.

mod common;

use std::path::{Path, PathBuf};

use serde_yaml::Value;
use xtask::compose::{EnvSource, Project};
use xtask::selection::Selection;
use xtask::swarm::render::{self, Action, Options, Plan};

const COMPOSE: &str = r#"
services:
  db:
    image: postgres:15
    container_name: the-db
    restart: unless-stopped
    shm_size: 256mb
    volumes:
      - db_data:/var/lib/postgresql/data
    secrets:
      - db_password
    healthcheck:
      test: ["CMD", "pg_isready"]
      interval: 2s
      start_interval: 1s
    networks: [back]
    read_only: true
    tmpfs:
      - /var/run/postgresql
      - /tmp:size=64m,mode=1777
  migrate:
    image: fog/migrate:1
    build: ./migrate
    restart: "no"
    depends_on:
      db:
        condition: service_healthy
    networks: [back]
  web:
    image: fog/web:1
    restart: on-failure:3
    ports:
      - "127.0.0.1:8080:80"
      - "9000:9000"
    volumes:
      - ./conf:/etc/web:ro
      - ./data:/data
    depends_on:
      migrate:
        condition: service_completed_successfully
    healthcheck:
      test: ["CMD", "true"]
    networks: [back]
  mix-1:
    image: fog/mix:1
    environment:
      NODE_TYPE: entry
      PRICE: "$$5"
    networks: [back]
  tool:
    image: fog/tool:1
    profiles: [tools]
networks:
  back:
    name: fogtest-back
    driver: bridge
    ipam:
      config:
        - subnet: 10.238.250.0/24
volumes:
  db_data:
secrets:
  db_password:
    file: ./secrets/db_password
"#;

fn project(dir: &Path) -> Project {
    std::fs::create_dir_all(dir.join("conf/sub")).unwrap();
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::write(dir.join("conf/web.conf"), "listen 80\n").unwrap();
    std::fs::write(dir.join("conf/sub/extra.conf"), "x\n").unwrap();
    std::fs::write(dir.join("secrets/db_password"), "s3cret").unwrap();
    let file = dir.join("compose.yml");
    std::fs::write(&file, COMPOSE).unwrap();
    Project::load(&[file], &EnvSource::empty()).unwrap()
}

fn plan(dir: &Path, opts: Options) -> Plan {
    render::render(&project(dir), &opts).unwrap()
}

fn opts() -> Options {
    Options {
        stack: "fogswarm-t".into(),
        ..Options::default()
    }
}

fn svc<'a>(plan: &'a Plan, name: &str) -> &'a Value {
    &plan.stack["services"][name]
}

fn notes(plan: &Plan, service: &str, key: &str) -> Vec<(Action, String)> {
    plan.notes
        .iter()
        .filter(|n| n.service.as_deref() == Some(service) && n.key == key)
        .map(|n| (n.action, n.message.clone()))
        .collect()
}

fn temp(name: &str) -> (common::Cleanup, PathBuf) {
    let mut guard = common::Cleanup::default();
    let dir = guard.temp_dir(name);
    (guard, dir)
}

#[test]
fn swarm_ignored_keys_are_translated_or_reported_with_their_line() {
    let (_guard, dir) = temp("swarm-render-keys");
    let plan = plan(&dir, opts());
    let db = svc(&plan, "db");
    for dropped in [
        "container_name",
        "restart",
        "shm_size",
        "build",
        "depends_on",
    ] {
        assert!(db.get(dropped).is_none(), "db keeps {dropped}: {db:?}");
    }
    assert_eq!(db["deploy"]["restart_policy"]["condition"], "any");
    assert!(db["healthcheck"].get("start_interval").is_none());
    assert_eq!(db["healthcheck"]["interval"], "2s");
    let (action, message) = &notes(&plan, "db", "container_name")[0];
    assert_eq!(*action, Action::Dropped);
    assert!(message.contains("container_name"), "{message}");
    let at = plan
        .notes
        .iter()
        .find(|n| n.key == "shm_size")
        .and_then(|n| n.at.clone())
        .unwrap();
    assert_eq!(at.line, Some(7), "shm_size is on line 7 of the fixture");
    assert!(!notes(&plan, "migrate", "build").is_empty());
    let waits = notes(&plan, "web", "depends_on");
    assert!(
        waits[0].1.contains("one-shot `migrate`"),
        "a completed-successfully dependency is reported as such: {waits:?}"
    );
    // Profiles: left out, not silently.
    assert!(svc(&plan, "tool").is_null());
    assert_eq!(notes(&plan, "tool", "profiles")[0].0, Action::LeftOut);
    assert!(!plan.services.contains(&"tool".to_string()));
    // `docker stack deploy` ignores `tmpfs`: it becomes tmpfs mounts, so a
    // read-only service keeps its writable directories.
    assert!(db.get("tmpfs").is_none(), "{db:?}");
    assert_eq!(db["read_only"], true);
    let mounts = db["volumes"].as_sequence().unwrap();
    let tmpfs: Vec<&Value> = mounts.iter().filter(|m| m["type"] == "tmpfs").collect();
    assert_eq!(tmpfs.len(), 2, "{mounts:?}");
    assert_eq!(tmpfs[0]["target"], "/var/run/postgresql");
    assert_eq!(tmpfs[1]["target"], "/tmp");
    assert_eq!(tmpfs[1]["tmpfs"]["size"], 64 << 20);
    let translated = notes(&plan, "db", "tmpfs");
    assert_eq!(translated.len(), 2, "{translated:?}");
    assert!(translated.iter().all(|(a, _)| *a == Action::Translated));
    assert!(
        translated[1].1.contains("mode=1777 dropped"),
        "{translated:?}"
    );
    // `$$` stays escaped for `docker stack deploy`'s own interpolation.
    assert_eq!(svc(&plan, "mix-1")["environment"]["PRICE"], "$$5");
}

#[test]
fn one_shot_services_restart_on_failure_only_and_stateful_ones_stop_first() {
    let (_guard, dir) = temp("swarm-render-policies");
    let plan = plan(&dir, opts());
    assert_eq!(plan.one_shots, ["migrate"]);
    let migrate = &svc(&plan, "migrate")["deploy"];
    assert_eq!(migrate["restart_policy"]["condition"], "on-failure");
    assert_eq!(migrate["restart_policy"]["max_attempts"], 5);
    assert_eq!(migrate["labels"]["dev.fog-compute.one-shot"], "true");
    let web = &svc(&plan, "web")["deploy"];
    assert_eq!(web["restart_policy"]["condition"], "on-failure");
    assert_eq!(web["restart_policy"]["max_attempts"], 3);
    // web has a healthcheck and no named volume: start-first; db writes one.
    assert_eq!(web["update_config"]["order"], "start-first");
    assert_eq!(web["update_config"]["failure_action"], "rollback");
    assert_eq!(
        svc(&plan, "db")["deploy"]["update_config"]["order"],
        "stop-first"
    );
    assert_eq!(
        svc(&plan, "db")["deploy"]["rollback_config"]["order"],
        "stop-first"
    );
}

#[test]
fn secrets_configs_networks_and_ports() {
    let (_guard, dir) = temp("swarm-render-objects");
    let plan = plan(&dir, opts());
    // The secret: external, named by content, created from the file.
    assert_eq!(plan.secrets.len(), 1);
    let secret = &plan.secrets[0];
    assert!(secret.name.starts_with("fogswarm-t_db_password_"));
    assert_eq!(secret.file, dir.join("secrets/db_password"));
    assert_eq!(plan.stack["secrets"]["db_password"]["external"], true);
    assert_eq!(
        plan.stack["secrets"]["db_password"]["name"],
        secret.name.as_str()
    );
    // The read-only directory bind: one config per file; the rw bind stays.
    let web = svc(&plan, "web");
    let targets: Vec<&str> = web["configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, ["/etc/web/sub/extra.conf", "/etc/web/web.conf"]);
    let volumes = web["volumes"].as_sequence().unwrap();
    assert_eq!(volumes.len(), 1);
    assert!(volumes[0].as_str().unwrap().ends_with("/data:/data"));
    assert_eq!(plan.configs.len(), 2);
    // The network: an attachable overlay on the configured subnet.
    let net = &plan.stack["networks"]["back"];
    assert_eq!(net["driver"], "overlay");
    assert_eq!(net["attachable"], true);
    assert_eq!(net["name"], "fogtest-back");
    assert_eq!(net["ipam"]["config"][0]["subnet"], "10.238.250.0/24");
    // Ports: the 127.0.0.1 one is left out (Swarm binds every interface).
    let ports = web["ports"].as_sequence().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["published"], 9000);
    assert!(notes(&plan, "web", "ports")[0]
        .1
        .contains("127.0.0.1:8080:80"));
    let published = plan_with(&dir, |o| o.publish = true);
    assert_eq!(
        svc(&published, "web")["ports"].as_sequence().unwrap().len(),
        2
    );
}

fn plan_with(dir: &Path, f: impl FnOnce(&mut Options)) -> Plan {
    let mut o = opts();
    f(&mut o);
    plan(dir, o)
}

#[test]
fn replicas_by_role_name_and_node_type_and_pinned_images() {
    let (_guard, dir) = temp("swarm-render-replicas");
    let plan = plan_with(&dir, |o| {
        o.replicas = vec![("mix".into(), 2), ("web".into(), 3)];
        o.pinned
            .insert("fog/web:1".into(), "reg:5000/fog/web@sha256:ab".into());
        o.left_out.insert("db".into(), "no image".into());
    });
    assert_eq!(svc(&plan, "mix-1")["deploy"]["replicas"], 2);
    assert_eq!(svc(&plan, "web")["deploy"]["replicas"], 3);
    assert_eq!(svc(&plan, "web")["image"], "reg:5000/fog/web@sha256:ab");
    assert!(svc(&plan, "db").is_null());
    assert_eq!(notes(&plan, "db", "image")[0].0, Action::LeftOut);
    let by_type = plan_with(&dir, |o| o.replicas = vec![("entry".into(), 4)]);
    assert_eq!(svc(&by_type, "mix-1")["deploy"]["replicas"], 4);
    let err = render::render(
        &project(&dir),
        &Options {
            replicas: vec![("nosuch".into(), 1)],
            ..opts()
        },
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("no service or role `nosuch`"),
        "{err}"
    );
    let placed = plan_with(&dir, |o| {
        o.placement = vec![("mix".into(), "node.labels.fog.mix == true".into())]
    });
    assert_eq!(
        svc(&placed, "mix-1")["deploy"]["placement"]["constraints"][0],
        "node.labels.fog.mix == true"
    );
    assert!(svc(&placed, "web")["deploy"].get("placement").is_none());
}

#[test]
fn missing_secret_file_names_it() {
    let (_guard, dir) = temp("swarm-render-secret");
    let project = project(&dir);
    std::fs::remove_file(dir.join("secrets/db_password")).unwrap();
    let err = render::render(&project, &opts()).unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("secret `db_password`") && text.contains("is missing"),
        "{text}"
    );
    let lenient = render::render(
        &project,
        &Options {
            lenient: true,
            ..opts()
        },
    )
    .unwrap();
    assert!(lenient
        .notes
        .iter()
        .any(|n| n.message.contains("does not exist yet")));
}

#[test]
fn repository_environments_render_for_swarm() {
    let out = common::xtask(&[
        "deploy",
        "--env",
        "betanet",
        "--print",
        "--env-file",
        "../.env.example",
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let stack: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    for n in 1..=3 {
        let mix = &stack["services"][format!("mixnode-{n}").as_str()];
        assert_eq!(
            mix["deploy"]["update_config"]["order"], "start-first",
            "compose/swarm.yml"
        );
        assert!(mix["healthcheck"]["test"].is_sequence());
        assert!(mix.get("ports").is_none());
    }
    assert!(stack["services"]["postgres"].get("tmpfs").is_none());
    assert_eq!(
        stack["services"]["postgres"]["deploy"]["update_config"]["order"],
        "stop-first"
    );
    assert!(stack["services"].get("loadgen").is_none());
    let err = common::stderr(&out);
    assert!(
        err.contains("swarm left out: service `loadgen` profiles"),
        "{err}"
    );
    // `check --target swarm` reports the same drops as findings.
    let out = common::xtask(&[
        "check", "--env", "betanet", "--target", "swarm", "--format", "json",
    ]);
    assert!(out.status.success(), "{}", common::text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = doc["environments"][0]["findings"].as_array().unwrap();
    assert!(findings.iter().any(
        |f| f["rule"] == "swarm-left-out" && f["message"].as_str().unwrap().contains("loadgen")
    ));
    assert!(findings.iter().any(|f| f["rule"] == "swarm-dropped"
        && f["file"].as_str().unwrap().ends_with("betanet.yml")
        && f["line"].as_u64().is_some()));
    // Every named environment renders (prod's secret files may not exist yet).
    let out = common::xtask(&["check", "--target", "swarm"]);
    assert!(out.status.success(), "{}", common::text(&out));
    assert!(common::stdout(&out).contains("checked 10 environment(s) for swarm: 0 error(s)"));
}

/// The one-off `migrate` beside a stack, for prod+betanet (the password only
/// as the secret file) and betanet (the password inside DATABASE_URL).
#[test]
fn migrate_one_off_beside_a_stack_keeps_credentials_off_the_command_line() {
    let password = "Not-On-The-Command-Line-9";
    let env = EnvSource::from_pairs([
        ("POSTGRES_PASSWORD", password),
        ("GRAFANA_ADMIN_PASSWORD", "x"),
        ("FOG_NETWORK_NAME", "fogswarm-t-fog"),
        ("FOG_SECRETS_DIR", "/srv/fog-secrets"),
    ]);
    let load = |name: &str| {
        Selection::named(name.parse().unwrap(), &env)
            .load()
            .unwrap()
    };
    let line = |cmd: &xtask::process::Cmd| {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let envs = |cmd: &xtask::process::Cmd| -> std::collections::BTreeMap<String, String> {
        cmd.get_envs()
            .filter_map(|(k, v)| Some((k.to_string_lossy().into(), v?.to_string_lossy().into())))
            .collect()
    };

    let prod =
        xtask::migrate::stack_one_off(&load("prod+betanet"), "fogswarm-t", &["status"]).unwrap();
    let text = line(&prod);
    assert!(
        text.starts_with("docker run --rm --network fogswarm-t-fog "),
        "{text}"
    );
    for part in [
        "--label com.docker.stack.namespace=fogswarm-t",
        "--user 10001:10001",
        "--read-only",
        "--cap-drop ALL",
        "-e DATABASE_URL",
        "-e DATABASE_PASSWORD_FILE",
        "-v /srv/fog-secrets/postgres_password:/run/secrets/postgres_password:ro",
    ] {
        assert!(text.contains(part), "{part} in {text}");
    }
    assert!(text.ends_with(" status"), "{text}");
    assert!(!text.contains(password), "{text}");
    let vars = envs(&prod);
    assert_eq!(vars["DATABASE_URL"], "postgres://fog@postgres:5432/fog");
    assert_eq!(
        vars["DATABASE_PASSWORD_FILE"],
        "/run/secrets/postgres_password"
    );

    let betanet = xtask::migrate::stack_one_off(&load("betanet"), "fogswarm-t", &["up"]).unwrap();
    let text = line(&betanet);
    assert!(!text.contains(password) && !text.contains("-v "), "{text}");
    assert!(envs(&betanet)["DATABASE_URL"].contains(password));

    // `deploy` labels every container with the environment.
    let plan = render::render(
        &load("betanet"),
        &Options {
            environment: Some("betanet".into()),
            lenient: true,
            ..opts()
        },
    )
    .unwrap();
    for (name, svc) in plan.stack["services"].as_mapping().unwrap() {
        assert_eq!(
            svc["labels"][xtask::swarm::ENVIRONMENT_LABEL],
            "betanet",
            "{name:?}"
        );
    }
}
