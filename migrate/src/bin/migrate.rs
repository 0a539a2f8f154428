//! The `migrate` binary, the entry point of the `fog-compute/migrate` image
//! and of the one-shot `migrate` compose service: `up`, `status`, `verify`
//! and `list` over the embedded migrations (or `--dir DIR`), against the
//! database of `DATABASE_URL` / `DATABASE_URL_FILE` / `DATABASE_PASSWORD_FILE`.
//! Exit 0 on success, 1 on an error or a failed check, 2 on a usage error.

use std::{process::ExitCode, time::Duration};

use migrate::{config, db, files, plan, Error, Migration};

const USAGE: &str = "\
usage: migrate [--dbname NAME] [--dir DIR] [--lock-timeout SECS] COMMAND
commands:
  up [--dry-run]   apply pending migrations (--dry-run: print the SQL and the lock/transaction plan)
  status [--json]  one line per version: version, name, applied_at, state
  verify           exit 1 unless every file is applied with its checksum
  list             the migrations in this binary (no database needed)
database: DATABASE_URL or DATABASE_URL_FILE, plus DATABASE_PASSWORD_FILE for a password-less URL";

struct Args {
    command: String,
    dry_run: bool,
    json: bool,
    dbname: Option<String>,
    dir: Option<String>,
    lock_timeout: Duration,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut args = Args {
        command: String::new(),
        dry_run: false,
        json: false,
        dbname: None,
        dir: None,
        lock_timeout: Duration::from_secs(300),
    };
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--dry-run" => args.dry_run = true,
            "--json" => args.json = true,
            "--dbname" => args.dbname = Some(value("--dbname")?),
            "--dir" => args.dir = Some(value("--dir")?),
            "--lock-timeout" => {
                let v = value("--lock-timeout")?;
                let secs = v
                    .parse()
                    .map_err(|_| format!("--lock-timeout {v}: not a number of seconds"))?;
                args.lock_timeout = Duration::from_secs(secs);
            }
            "-h" | "--help" => return Err(String::new()),
            "up" | "status" | "verify" | "list" if args.command.is_empty() => args.command = arg,
            other => return Err(format!("unexpected argument `{other}`")),
        }
    }
    if args.command.is_empty() {
        return Err("no command given".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("migrate: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("migrate: error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<ExitCode, Error> {
    let files = match &args.dir {
        Some(dir) => files::load_dir(std::path::Path::new(dir))?,
        None => migrate::embedded()?,
    };
    if args.command == "list" {
        for m in &files {
            let tx = if m.no_transaction {
                "no-transaction"
            } else {
                "transaction"
            };
            println!(
                "{:>6}  {:<40} {}  {tx}",
                m.version,
                m.file,
                &m.checksum[..12]
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = config::from_env(|k| std::env::var(k).ok(), |p| std::fs::read_to_string(p))?;
    if let Some(name) = &args.dbname {
        config.dbname(name);
    }
    let database = config.get_dbname().unwrap_or_default().to_string();
    let client = db::connect(&config, db::CONNECT_TIMEOUT).await?;
    match args.command.as_str() {
        "up" if args.dry_run => {
            let history = db::history(&client).await?;
            let todo = plan::pending(&files, &history)?;
            print_plan(&database, &todo, args.lock_timeout);
            Ok(ExitCode::SUCCESS)
        }
        "up" => {
            let done = db::up(&client, &files, args.lock_timeout, |o| {
                println!("applied {} in {} ms", o.file, o.execution_ms)
            })
            .await?;
            if done.is_empty() {
                println!(
                    "database {database} is up to date ({} migrations)",
                    files.len()
                );
            } else {
                println!("database {database}: applied {} migration(s)", done.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        "status" => {
            let rows = plan::status(&files, &db::history(&client).await?);
            if args.json {
                println!("{}", status_json(&database, &rows));
            } else {
                print_status(&rows);
            }
            Ok(ExitCode::SUCCESS)
        }
        _ => {
            let history = db::history(&client).await?;
            let rows = plan::status(&files, &history);
            let bad: Vec<_> = rows
                .iter()
                .filter(|r| r.state != plan::State::Applied)
                .collect();
            if bad.is_empty() {
                println!(
                    "database {database}: all {} migrations applied, checksums match",
                    rows.len()
                );
                return Ok(ExitCode::SUCCESS);
            }
            if let Err(e) = plan::pending(&files, &history) {
                eprintln!("migrate: {e}");
            }
            for r in bad {
                let file = r
                    .file
                    .clone()
                    .unwrap_or_else(|| format!("V{:04}__{}.sql", r.version, r.name));
                eprintln!("migrate: {file}: {}", r.state.as_str());
            }
            eprintln!("migrate: database {database} does not match migrations/ (pending files: run `cargo xtask migrate up`)");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn print_plan(database: &str, todo: &[&Migration], lock_timeout: Duration) {
    println!(
        "-- database {database}: {} pending migration(s)",
        todo.len()
    );
    if todo.is_empty() {
        return;
    }
    println!(
        "-- lock: SELECT pg_try_advisory_lock({}) every 200 ms for up to {} s (released at the end)",
        db::LOCK_KEY,
        lock_timeout.as_secs()
    );
    println!("{};", db::create_history_sql());
    for m in todo {
        if m.no_transaction {
            println!(
                "-- {}: no transaction, statement by statement, then its history row",
                m.file
            );
        } else {
            println!("-- {}: BEGIN; the file; its history row; COMMIT", m.file);
            println!("BEGIN;");
        }
        println!("{}", m.sql.trim_end());
        println!(
            "INSERT INTO {} (version, name, checksum, execution_ms, success) VALUES ({}, '{}', '{}', <ms>, true);",
            migrate::HISTORY_TABLE,
            m.version,
            m.name,
            m.checksum
        );
        if !m.no_transaction {
            println!("COMMIT;");
        }
    }
    println!("SELECT pg_advisory_unlock({});", db::LOCK_KEY);
}

fn print_status(rows: &[plan::Row]) {
    println!(
        "{:>7}  {:<28} {:<20}  {:<8}  CHECKSUM",
        "VERSION", "NAME", "APPLIED_AT", "STATE"
    );
    for r in rows {
        println!(
            "{:>7}  {:<28} {:<20}  {:<8}  {}",
            r.version,
            r.name,
            r.applied_at.as_deref().unwrap_or("-"),
            r.state.as_str(),
            &r.checksum[..r.checksum.len().min(12)]
        );
    }
}

fn status_json(database: &str, rows: &[plan::Row]) -> String {
    let items: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "version": r.version,
                "name": r.name,
                "file": r.file,
                "applied_at": r.applied_at,
                "execution_ms": r.execution_ms,
                "checksum": r.checksum,
                "state": r.state.as_str(),
            })
        })
        .collect();
    serde_json::json!({ "database": database, "migrations": items }).to_string()
}
