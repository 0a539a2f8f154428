//! Docker Swarm, shared by `deploy`, `check --target swarm`, `migrate` and
//! the data commands: the merged model rendered for Swarm ([`render`]: every
//! key Swarm ignores or rejects is translated or reported, with the policies
//! of [`policy`]), secrets and configs named by their content ([`assets`]),
//! the convergence wait ([`converge`]), what a Swarm deploy of an environment
//! would drop ([`target`]), stack names and the labels a stack's objects
//! carry.

pub mod assets;
pub mod converge;
mod policy;
pub mod render;
pub mod target;

use anyhow::Result;

use crate::usage_bail;

/// The label `deploy` puts on every container of a stack: the environment
/// (`betanet`, `prod+betanet`) whose model it was rendered from.
pub const ENVIRONMENT_LABEL: &str = "dev.fog-compute.environment";

/// The label marking one-shot services (restart on failure only).
pub const ONE_SHOT_LABEL: &str = "dev.fog-compute.one-shot";

/// A stack name as `--stack` takes it, or a usage error.
pub fn validate_stack(name: &str) -> Result<String> {
    let valid = name.len() <= 40
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        usage_bail!(
            "--stack {name}: use up to 40 lowercase letters, digits, `-` or `_`, starting with a letter or digit"
        );
    }
    Ok(name.to_string())
}
