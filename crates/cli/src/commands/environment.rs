//! `scion config create|update|view|list|switch|remove`: named environments in the CLI's
//! configuration file (DBLab's `config`), each a server URL, token and current branch. The token
//! is never printed; a file without named environments keeps working as the unnamed one.

use anyhow::anyhow;

use super::{Failure, emit};
use crate::args::{ConfigCommand, GlobalArgs, Output};
use crate::config::{self, ConfigFile, Environment};
use crate::output;

pub(super) fn run(global: &GlobalArgs, command: ConfigCommand) -> Result<(), Failure> {
    let path = config::path(global.config.as_deref()).map_err(Failure::Usage)?;
    let mut file = ConfigFile::load(&path).map_err(Failure::Usage)?;
    let url = config::urls(global.url.as_deref()).into_iter().flatten().find(|url| !url.is_empty());
    let token = config::tokens(global.token.as_deref())
        .into_iter()
        .flatten()
        .find(|token| !token.is_empty());
    let (id, changed) = match command {
        // Not an environment: the dispatcher sends it to `import_dblab` before the file is read.
        ConfigCommand::ImportDblab(args) => return super::import_dblab(&args),
        ConfigCommand::Create(arg) => {
            let id = checked_id(&arg.environment_id)?;
            if file.environments.contains_key(&id) {
                return Err(usage(format!(
                    "environment {id:?} exists; change it with `scion config update {id}`"
                )));
            }
            let Some(url) = url else {
                return Err(usage(format!(
                    "give the server URL with --url, e.g. `scion config create {id} --url http://127.0.0.1:2345`"
                )));
            };
            file.environments
                .insert(id.clone(), Environment { url: Some(url), token, current_branch: None });
            file.current_environment = Some(id.clone());
            (id, true)
        }
        ConfigCommand::Update(arg) => {
            let id = known(&file, &arg.environment_id)?;
            if url.is_none() && token.is_none() {
                return Err(usage("give --url or a token (--token, SCION_TOKEN) to change"));
            }
            if let Some(environment) = file.environments.get_mut(&id) {
                environment.url = url.or(environment.url.take());
                environment.token = token.or(environment.token.take());
            }
            (id, true)
        }
        ConfigCommand::View(arg) => {
            let id = match arg.environment_id {
                Some(id) => known(&file, &id)?,
                None => file.current_environment.clone().ok_or_else(|| {
                    usage("no environment is current; `scion config create` or `switch` one")
                })?,
            };
            (known(&file, &id)?, false)
        }
        ConfigCommand::List => {
            let rows = views(&file);
            match global.output {
                Output::Json => emit(&output::json(&rows)),
                Output::Table => emit(&output::environment_list(&rows)),
            }
            return Ok(());
        }
        ConfigCommand::Switch(arg) => {
            let id = known(&file, &arg.environment_id)?;
            file.current_environment = Some(id.clone());
            (id, true)
        }
        ConfigCommand::Remove(arg) => {
            let id = known(&file, &arg.environment_id)?;
            if file.current_environment.as_deref() == Some(id.as_str()) {
                return Err(Failure::operation(format!(
                    "cannot remove the current environment {id:?}; `scion config switch` to another one first"
                )));
            }
            file.environments.remove(&id);
            file.save(&path).map_err(Failure::Operation)?;
            match global.output {
                Output::Json => emit(&output::json(&serde_json::json!({"removed": id}))),
                Output::Table => emit(&format!("Removed environment {id}\n")),
            }
            return Ok(());
        }
    };
    if changed {
        file.save(&path).map_err(Failure::Operation)?;
    }
    let view = views(&file).into_iter().find(|view| view.id == id);
    match global.output {
        Output::Json => emit(&output::json(&view)),
        Output::Table => emit(&view.map(|view| output::environment(&view)).unwrap_or_default()),
    }
    Ok(())
}

/// An environment as printed: never its token, only whether it has one.
#[derive(Debug, serde::Serialize)]
pub(crate) struct EnvironmentView {
    pub id: String,
    pub url: Option<String>,
    pub token: bool,
    #[serde(rename = "currentBranch")]
    pub current_branch: String,
    pub current: bool,
}

fn views(file: &ConfigFile) -> Vec<EnvironmentView> {
    file.environments
        .iter()
        .map(|(id, environment)| EnvironmentView {
            id: id.clone(),
            url: environment.url.clone(),
            token: environment.token.is_some(),
            current_branch: environment.current_branch().to_owned(),
            current: file.current_environment.as_deref() == Some(id.as_str()),
        })
        .collect()
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(anyhow!(message.into()))
}

/// `id` when it is a usable environment ID.
fn checked_id(id: &str) -> Result<String, Failure> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(id.to_owned())
    } else {
        Err(usage(format!("environment ID {id:?}: use 1 to 64 letters, digits, '-', '_' or '.'")))
    }
}

/// `id` when the file has that environment.
fn known(file: &ConfigFile, id: &str) -> Result<String, Failure> {
    if file.environments.contains_key(id) {
        return Ok(id.to_owned());
    }
    let ids: Vec<&str> = file.environments.keys().map(String::as_str).collect();
    Err(Failure::operation(format!(
        "no environment {id:?} (there are: {})",
        if ids.is_empty() { "none".to_owned() } else { ids.join(", ") }
    )))
}
