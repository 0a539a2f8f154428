//! The static comparison of two compose layouts, shared by `report` and
//! `adopt`: a spec ([`spec`]: an environment, `REV:ENV` read from git, or a
//! list of compose files) loaded into the one compose model, its declared
//! figures ([`declared`]: services, containers, instances per image
//! repository, ports, networks, volumes, limits, image sizes, check
//! findings), the JSON [`model`] (also the report's schema), [`units`] and the
//! [`markdown`] rendering. [`static_report`] puts two loaded sides together
//! the way `cargo xtask report` without `--live` does.

pub mod declared;
pub mod markdown;
pub mod model;
pub mod spec;
pub mod units;

use xshell::Shell;

use crate::process::Runner;
use model::{Report, SCHEMA};
use spec::Loaded;

/// The static before/after report of two loaded layouts (no Docker needed
/// beyond image sizes of images present locally).
pub fn static_report(sh: &Shell, runner: &Runner, before: &Loaded, after: &Loaded) -> Report {
    let before = declared::side(sh, runner, before);
    let after = declared::side(sh, runner, after);
    Report {
        schema: SCHEMA,
        live: false,
        memory_counting: None,
        delta: model::delta(&before, &after),
        claims: Vec::new(),
        budgets: Vec::new(),
        before,
        after,
    }
}
