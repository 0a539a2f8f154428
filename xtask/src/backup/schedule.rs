//! `backup schedule`: backups that happen without anyone remembering them. It
//! prints (or with `--install` writes to `/etc/systemd/system` and enables) a
//! systemd `fog-backup.service` + `fog-backup.timer` pair that runs `backup
//! all` (optionally `--to s3://...`), then `backup prune` with the chosen
//! retention, and a crontab line that does the same for hosts without
//! systemd. The units use this very binary and repository (`FOG_ROOT`), so
//! what runs at night is what was tested by hand. With `--wal` the nightly
//! run also takes a base backup (`backup base`, uploaded with `--to`), and a
//! second pair, `fog-backup-wal.service` + `.timer`, runs `backup wal` (with
//! `--to`: ships the WAL archive) every minute: a oneshot on a timer rather
//! than a long-running loop, so a crash, a full disk or a slow bucket costs
//! one run, systemd logs each, and nothing stays resident between runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::process::Runner;

/// The schedule's choices.
#[derive(clap::Args, Debug, Clone)]
pub struct ScheduleArgs {
    /// Write the units to /etc/systemd/system and enable the timer (root).
    #[arg(long)]
    pub install: bool,
    /// systemd OnCalendar= expression (`daily`, `*-*-* 03:17:00`, ...).
    #[arg(long, value_name = "WHEN", default_value = "*-*-* 03:17:00")]
    pub on_calendar: String,
    /// Also upload each backup to this bucket (`backup all --to`).
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub to: Option<String>,
    /// Encrypt each backup and shipped WAL file to this age recipient
    /// (`backup all --encrypt-to`, `backup wal --encrypt-to`).
    #[arg(long, value_name = "RECIPIENT")]
    pub encrypt_to: Option<String>,
    /// The endpoint for --to [default: $FOG_S3_ENDPOINT at run time].
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Point-in-time recovery: a nightly `backup base` too, and a
    /// `fog-backup-wal.timer` running `backup wal` (shipping to --to) every minute.
    #[arg(long)]
    pub wal: bool,
    /// Retention passed to `backup prune` (and `prune --from` with --to).
    #[arg(long, value_name = "N")]
    pub keep: Option<usize>,
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<usize>,
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<usize>,
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<usize>,
}

/// The rendered schedule.
#[derive(Debug, serde::Serialize)]
pub struct Rendered {
    pub service: String,
    pub timer: String,
    /// `None` when OnCalendar= has no crontab equivalent.
    pub cron: Option<String>,
    /// With --wal: the every-minute `backup wal` service, timer and cron line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_service: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_timer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal_cron: Option<String>,
}

fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@+,".contains(c))
    {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

fn line(args: &[String]) -> String {
    args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
}

/// The `backup all` and `backup prune` command lines.
pub fn commands(args: &ScheduleArgs, exe: &Path, dir: &Path) -> Vec<Vec<String>> {
    let exe = exe.to_string_lossy().into_owned();
    let dir = dir.to_string_lossy().into_owned();
    let mut all = vec![
        exe.clone(),
        "backup".into(),
        "all".into(),
        "--dir".into(),
        dir.clone(),
    ];
    let remote: Vec<String> = match &args.to {
        Some(to) => {
            let mut r = vec![to.clone()];
            if let Some(e) = &args.endpoint {
                r.extend(["--endpoint".into(), e.clone()]);
            }
            r
        }
        None => Vec::new(),
    };
    if !remote.is_empty() {
        all.push("--to".into());
        all.extend(remote.iter().cloned());
    }
    if let Some(r) = &args.encrypt_to {
        all.extend(["--encrypt-to".into(), r.clone()]);
    }
    let mut out = vec![all];
    if args.wal {
        let mut base = vec![
            exe.clone(),
            "backup".into(),
            "base".into(),
            "--dir".into(),
            dir.clone(),
        ];
        if !remote.is_empty() {
            base.push("--to".into());
            base.extend(remote.iter().cloned());
        }
        if let Some(r) = &args.encrypt_to {
            base.extend(["--encrypt-to".into(), r.clone()]);
        }
        out.push(base);
    }
    let mut policy = Vec::new();
    for (flag, value) in [
        ("--keep", args.keep),
        ("--keep-last", args.keep_last),
        ("--keep-daily", args.keep_daily),
        ("--keep-weekly", args.keep_weekly),
        ("--keep-monthly", args.keep_monthly),
    ] {
        if let Some(v) = value {
            policy.extend([flag.to_string(), v.to_string()]);
        }
    }
    if !policy.is_empty() {
        let mut prune = vec![
            exe.clone(),
            "backup".into(),
            "prune".into(),
            "--dir".into(),
            dir,
        ];
        prune.extend(policy.iter().cloned());
        out.push(prune);
        if !remote.is_empty() {
            let mut prune = vec![exe, "backup".into(), "prune".into(), "--from".into()];
            prune.extend(remote);
            prune.extend(policy);
            out.push(prune);
        }
    }
    out
}

/// The every-minute `backup wal` command line (with --wal).
pub fn wal_command(args: &ScheduleArgs, exe: &Path, dir: &Path) -> Vec<String> {
    let mut cmd = vec![
        exe.to_string_lossy().into_owned(),
        "backup".into(),
        "wal".into(),
        "--dir".into(),
        dir.to_string_lossy().into_owned(),
    ];
    if let Some(to) = &args.to {
        cmd.extend(["--to".into(), to.clone()]);
        if let Some(e) = &args.endpoint {
            cmd.extend(["--endpoint".into(), e.clone()]);
        }
        if let Some(r) = &args.encrypt_to {
            cmd.extend(["--encrypt-to".into(), r.clone()]);
        }
    }
    cmd
}

/// `*-*-* HH:MM[:SS]`, `daily` or `hourly` as a crontab schedule.
pub fn cron_schedule(on_calendar: &str) -> Option<String> {
    match on_calendar.trim() {
        "daily" => return Some("0 0 * * *".into()),
        "hourly" => return Some("0 * * * *".into()),
        _ => {}
    }
    let time = on_calendar.trim().strip_prefix("*-*-* ")?;
    let mut parts = time.split(':');
    let h: u8 = parts.next()?.parse().ok()?;
    let m: u8 = parts.next()?.parse().ok()?;
    if let Some(s) = parts.next() {
        if s.parse::<u8>().ok()? != 0 {
            return None;
        }
    }
    (h < 24 && m < 60 && parts.next().is_none()).then(|| format!("{m} {h} * * *"))
}

/// Render the units and the cron line for `root` (the repository).
pub fn render(args: &ScheduleArgs, exe: &Path, root: &Path, dir: &Path) -> Rendered {
    let cmds = commands(args, exe, dir);
    let root_s = root.to_string_lossy();
    let mut service = format!(
        "[Unit]\nDescription=fog-compute backups (backup all, then prune)\n\
         Wants=docker.service network-online.target\nAfter=docker.service network-online.target\n\n\
         [Service]\nType=oneshot\nWorkingDirectory={root_s}\nEnvironment=FOG_ROOT={root_s}\n\
         # S3 credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, FOG_S3_ENDPOINT) go here:\n\
         EnvironmentFile=-/etc/fog-backup.env\n"
    );
    for c in &cmds {
        service.push_str(&format!("ExecStart={}\n", line(c)));
    }
    service.push_str("Nice=10\nIOSchedulingClass=idle\n");
    let timer = format!(
        "[Unit]\nDescription=fog-compute backups on a schedule\n\n\
         [Timer]\nOnCalendar={}\nPersistent=true\nRandomizedDelaySec=5min\n\n\
         [Install]\nWantedBy=timers.target\n",
        args.on_calendar
    );
    let cron = cron_schedule(&args.on_calendar).map(|when| {
        let chain = cmds
            .iter()
            .map(|c| line(c))
            .collect::<Vec<_>>()
            .join(" && ");
        format!(
            "{when} cd {} && FOG_ROOT={} {chain}",
            quote(&root_s),
            quote(&root_s)
        )
    });
    let wal = args.wal.then(|| wal_command(args, exe, dir));
    Rendered {
        service,
        timer,
        cron,
        wal_service: wal.as_ref().map(|c| {
            format!(
                "[Unit]\nDescription=fog-compute WAL archive: metrics and shipping (backup wal)\n\
                 Wants=docker.service network-online.target\nAfter=docker.service network-online.target\n\n\
                 [Service]\nType=oneshot\nWorkingDirectory={root_s}\nEnvironment=FOG_ROOT={root_s}\n\
                 EnvironmentFile=-/etc/fog-backup.env\nExecStart={}\nNice=5\n",
                line(c)
            )
        }),
        wal_timer: args.wal.then(|| {
            "[Unit]\nDescription=fog-compute WAL shipping every minute\n\n\
             [Timer]\nOnBootSec=1min\nOnUnitActiveSec=1min\nAccuracySec=5s\n\n\
             [Install]\nWantedBy=timers.target\n"
                .to_string()
        }),
        wal_cron: wal.as_ref().map(|c| {
            format!(
                "* * * * * cd {} && FOG_ROOT={} {}",
                quote(&root_s),
                quote(&root_s),
                line(c)
            )
        }),
    }
}

/// `backup schedule`: print, or install and enable.
pub fn run(args: &ScheduleArgs, dir: &Path, runner: &Runner, json: bool) -> Result<()> {
    if let Some(to) = &args.to {
        if let Some(l) = crate::s3::Location::parse(to) {
            l?;
        } else {
            crate::usage_bail!("--to `{to}`: expected s3://BUCKET/PREFIX");
        }
    }
    if let Some(r) = &args.encrypt_to {
        super::encrypt::parse_recipient(r)?;
    }
    let exe = std::env::current_exe().context("finding this program's path")?;
    let root = crate::project_root();
    let r = render(args, &exe, &root, dir);
    if !args.install {
        if json {
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!("# /etc/systemd/system/fog-backup.service\n{}", r.service);
            println!("# /etc/systemd/system/fog-backup.timer\n{}", r.timer);
            match &r.cron {
                Some(c) => println!("# or, without systemd, this crontab line (crontab -e):\n{c}"),
                None => println!(
                    "# no crontab equivalent for OnCalendar={}; use the timer",
                    args.on_calendar
                ),
            }
            if let (Some(s), Some(t), Some(c)) = (&r.wal_service, &r.wal_timer, &r.wal_cron) {
                println!("# /etc/systemd/system/fog-backup-wal.service\n{s}");
                println!("# /etc/systemd/system/fog-backup-wal.timer\n{t}");
                println!("# or this crontab line:\n{c}");
            }
        }
        return Ok(());
    }
    let units = PathBuf::from("/etc/systemd/system");
    let sh = xshell::Shell::new()?;
    if runner.dry_run {
        println!(
            "# write {}/fog-backup.service and fog-backup.timer",
            units.display()
        );
    } else {
        super::archive::write_atomic(&units.join("fog-backup.service"), r.service.as_bytes())
            .context(
                "installing the systemd units needs root (or run without --install and copy them)",
            )?;
        super::archive::write_atomic(&units.join("fog-backup.timer"), r.timer.as_bytes())?;
        if let (Some(s), Some(t)) = (&r.wal_service, &r.wal_timer) {
            super::archive::write_atomic(&units.join("fog-backup-wal.service"), s.as_bytes())?;
            super::archive::write_atomic(&units.join("fog-backup-wal.timer"), t.as_bytes())?;
        }
        use std::os::unix::fs::PermissionsExt;
        for unit in [
            "fog-backup.service",
            "fog-backup.timer",
            "fog-backup-wal.service",
            "fog-backup-wal.timer",
        ] {
            if units.join(unit).exists() {
                std::fs::set_permissions(units.join(unit), std::fs::Permissions::from_mode(0o644))?;
            }
        }
    }
    runner.run(xshell::cmd!(sh, "systemctl daemon-reload"))?;
    runner.run(xshell::cmd!(sh, "systemctl enable --now fog-backup.timer"))?;
    if args.wal {
        runner.run(xshell::cmd!(
            sh,
            "systemctl enable --now fog-backup-wal.timer"
        ))?;
    }
    if !runner.dry_run {
        println!("installed and enabled fog-backup.timer ({}); see `systemctl list-timers fog-backup.timer`", args.on_calendar);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ScheduleArgs {
        ScheduleArgs {
            install: false,
            on_calendar: "*-*-* 03:17:00".into(),
            to: None,
            endpoint: None,
            encrypt_to: None,
            wal: false,
            keep: None,
            keep_last: None,
            keep_daily: None,
            keep_weekly: None,
            keep_monthly: None,
        }
    }

    #[test]
    fn schedule_renders_units_and_cron() {
        let mut a = args();
        a.keep_daily = Some(7);
        a.keep_weekly = Some(4);
        a.to = Some("s3://fog-backups/prod".into());
        a.endpoint = Some("https://s3.example.net".into());
        let r = render(
            &a,
            Path::new("/opt/fog/xtask"),
            Path::new("/srv/fog compute"),
            Path::new("/srv/backups"),
        );
        assert!(r.service.contains("Type=oneshot\n"));
        assert!(r.service.contains("WorkingDirectory=/srv/fog compute\n"));
        assert!(r.service.contains(
            "ExecStart=/opt/fog/xtask backup all --dir /srv/backups --to s3://fog-backups/prod --endpoint https://s3.example.net\n"
        ));
        assert!(r.service.contains(
            "ExecStart=/opt/fog/xtask backup prune --dir /srv/backups --keep-daily 7 --keep-weekly 4\n"
        ));
        assert!(r.service.contains(
            "ExecStart=/opt/fog/xtask backup prune --from s3://fog-backups/prod --endpoint https://s3.example.net --keep-daily 7 --keep-weekly 4\n"
        ));
        assert!(r
            .timer
            .contains("OnCalendar=*-*-* 03:17:00\nPersistent=true\n"));
        assert!(r.timer.contains("WantedBy=timers.target"));
        let cron = r.cron.unwrap();
        assert!(cron.starts_with("17 3 * * * cd '/srv/fog compute' && FOG_ROOT='/srv/fog compute' /opt/fog/xtask backup all"), "{cron}");
        assert!(cron.contains(" && /opt/fog/xtask backup prune --dir /srv/backups --keep-daily 7"));

        assert!(r.wal_service.is_none() && r.wal_timer.is_none());

        // --wal: a nightly base backup and the every-minute shipper.
        a.wal = true;
        a.encrypt_to = Some("age1xyz".into());
        let w = render(&a, Path::new("/x"), Path::new("/r"), Path::new("/b"));
        assert!(w.service.contains(
            "ExecStart=/x backup base --dir /b --to s3://fog-backups/prod --endpoint https://s3.example.net --encrypt-to age1xyz\n"
        ));
        assert!(w.wal_service.unwrap().contains(
            "ExecStart=/x backup wal --dir /b --to s3://fog-backups/prod --endpoint https://s3.example.net --encrypt-to age1xyz\n"
        ));
        assert!(w.service.contains(
            "ExecStart=/x backup all --dir /b --to s3://fog-backups/prod --endpoint https://s3.example.net --encrypt-to age1xyz\n"
        ));
        assert!(w.wal_timer.unwrap().contains("OnUnitActiveSec=1min\n"));
        assert!(w
            .wal_cron
            .unwrap()
            .starts_with("* * * * * cd /r && FOG_ROOT=/r /x backup wal"));

        // No policy: no prune line.
        let plain = render(&args(), Path::new("/x"), Path::new("/r"), Path::new("/b"));
        assert_eq!(plain.service.matches("ExecStart=").count(), 1);
    }

    #[test]
    fn cron_equivalents() {
        assert_eq!(
            cron_schedule("*-*-* 03:17:00").as_deref(),
            Some("17 3 * * *")
        );
        assert_eq!(cron_schedule("*-*-* 23:05").as_deref(), Some("5 23 * * *"));
        assert_eq!(cron_schedule("daily").as_deref(), Some("0 0 * * *"));
        assert_eq!(cron_schedule("Mon *-*-* 03:00"), None);
        assert_eq!(cron_schedule("*-*-* 03:17:30"), None);
        assert_eq!(cron_schedule("*-*-* 25:00"), None);
    }
}
