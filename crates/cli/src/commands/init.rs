//! `scion init`: saves the server URL and token in the CLI's configuration file (mode 0600).
//!
//! The token comes from `--token-stdin`, `--token`, `SCION_TOKEN` or `DBLAB_VERIFICATION_TOKEN`;
//! `--token` exists because DBLab's `init` has it, but its value stays in the shell history, so
//! the others are preferred. The URL comes from `--url`, `SCION_URL` or `DBLAB_INSTANCE_URL`.

use std::io::BufRead;

use super::{Failure, emit};
use crate::args::{GlobalArgs, InitArgs, Output};
use crate::config::{self, ConfigFile};
use crate::connection::Connection;
use anyhow::Context as _;

pub(super) async fn run(global: &GlobalArgs, args: &InitArgs) -> Result<(), Failure> {
    let path = config::path(global.config.as_deref()).map_err(Failure::Usage)?;
    let mut file = ConfigFile::load(&path).map_err(Failure::Usage)?;
    let Some(url) =
        config::urls(global.url.as_deref()).into_iter().flatten().find(|url| !url.is_empty())
    else {
        return Err(Failure::Usage(anyhow::anyhow!(
            "give the server URL with --url or SCION_URL, e.g. `scion init --url http://127.0.0.1:2345`"
        )));
    };
    if args.token_stdin && global.token.is_some() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "give the token with --token or --token-stdin, not both"
        )));
    }
    let token = if args.token_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("read the token from stdin")
            .map_err(Failure::Usage)?;
        Some(line.trim().to_owned()).filter(|token| !token.is_empty())
    } else {
        config::tokens(global.token.as_deref())
            .into_iter()
            .flatten()
            .find(|token| !token.is_empty())
    };
    if args.check {
        let connection = Connection::resolve(&global.connection)?;
        let (client, _tunnel) =
            connection.client(&url, token.clone(), connection.local_port).await?;
        client.with_timeout(global.request_timeout).status().await?;
    }
    let mut environment = file.active().map_err(Failure::Usage)?;
    environment.url = Some(url.clone());
    if token.is_some() {
        environment.token = token;
    }
    let has_token = environment.token.is_some();
    file.set_active(environment);
    file.save(&path).map_err(Failure::Operation)?;
    let summary = serde_json::json!({
        "config": path.display().to_string(),
        "url": url,
        "token": has_token,
    });
    match global.output {
        Output::Json => emit(&crate::output::json(&summary)),
        Output::Table => emit(&format!(
            "Saved {} (url {url}, token {})\n",
            path.display(),
            if has_token { "set" } else { "not set" }
        )),
    }
    Ok(())
}
