//! `images ls`: the images an environment needs (from its compose files'
//! `image:` values, interpolated against `.env`), whether each is present in
//! the engine, where it comes from, and its offline stand-in, as a table or
//! as JSON for scripts.

use anyhow::Result;
use serde::Serialize;
use xshell::Shell;

use crate::image::{catalog, docker, offline, Source, ALL_ENV};
use crate::output::Format;
use crate::{environments::Environment, process::Runner, project_root};

#[derive(clap::Args)]
#[command(after_help = "Examples:
  cargo xtask images ls
  cargo xtask images ls --env dev+betanet --format json")]
pub struct Args {
    /// Environment whose images to list, e.g. dev+betanet.
    #[arg(long, default_value = ALL_ENV)]
    env: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Serialize)]
struct Row {
    variable: Option<String>,
    image: String,
    services: Vec<String>,
    present: bool,
    source: &'static str,
    offline_image: Option<String>,
}

pub fn run(sh: &Shell, runner: &Runner, args: Args) -> Result<()> {
    let env: Environment = args.env.parse()?;
    let versions = offline::base_versions(sh, runner, &offline::base_image())?;
    let rows: Vec<Row> = catalog::needed(&env, &project_root())?
        .into_iter()
        .map(|n| -> Result<Row> {
            Ok(Row {
                present: docker::image_exists(sh, runner, &n.image),
                variable: n.var,
                source: match &n.source {
                    Source::Project(_) => "build",
                    Source::Upstream(Some(s)) if s.is_its_image(&n.image) => "offline",
                    Source::Upstream(_) => "pull",
                },
                offline_image: match n.source {
                    Source::Upstream(Some(s)) => {
                        Some(offline::service_image(s, versions.as_ref())?)
                    }
                    _ => None,
                },
                image: n.image,
                services: n.services,
            })
        })
        .collect::<Result<_>>()?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => print!("{}", table(&rows)),
    }
    Ok(())
}

fn table(rows: &[Row]) -> String {
    let header = [
        "VARIABLE", "IMAGE", "PRESENT", "SOURCE", "OFFLINE", "SERVICES",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.variable.as_deref().unwrap_or("-").to_string(),
                r.image.clone(),
                if r.present { "yes" } else { "no" }.to_string(),
                r.source.to_string(),
                r.offline_image.clone().unwrap_or_else(|| "-".into()),
                r.services.join(","),
            ]
        })
        .collect();
    crate::table::render(&header, &[], &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = [Row {
            variable: Some("POSTGRES_IMAGE".into()),
            image: "postgres:15.8-alpine".into(),
            services: vec!["postgres".into()],
            present: false,
            source: "pull",
            offline_image: Some("fog-offline/postgres:15.14-bookworm".into()),
        }];
        let text = table(&rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0].find("IMAGE"),
            lines[1].find("postgres:15.8-alpine")
        );
        assert!(lines[1].contains(" no "), "{text}");
    }
}
