//! Runs a parsed command: resolves the server URL and token, calls the API through `api-client`,
//! prints the result, and classifies failures into usage/configuration errors (exit 2) and failed
//! operations (exit 1).

mod branch;
pub(crate) mod ci;
mod clone;
mod environment;

pub(crate) use environment::EnvironmentView;
mod init;
mod instance;
mod masking;
pub(crate) mod observation;
mod port_forward;
mod snapshot;

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use api_client::Client;
use clap::CommandFactory;
use indicatif::{ProgressBar, ProgressStyle};

use crate::args::{Cli, Command, ConfigCommand, GlobalArgs, ImportDblabArgs, Output};
use crate::config;
use crate::connection::{Connection, Forwarding};

/// `scion config import-dblab`: DBLab's server.yml as Scion's TOML; the keys left behind go to
/// stderr, one per line with the reason.
pub(super) fn import_dblab(args: &ImportDblabArgs) -> Result<(), Failure> {
    let text = std::fs::read_to_string(&args.file).map_err(|error| {
        Failure::Usage(anyhow::anyhow!("read {}: {error}", args.file.display()))
    })?;
    let imported = crate::import_dblab::convert(&text)
        .map_err(|error| Failure::Usage(anyhow::anyhow!("{}: {error}", args.file.display())))?;
    let header = format!(
        "# Scion's configuration, imported from DBLab's {} by `scion config import-dblab`.\n\
         # Check it with `scion-server --config <this file> --check-config`; every key is in\n\
         # config/example.toml (the package installs it as /usr/share/doc/scion/example.toml).\n\n",
        args.file.display()
    );
    let text = format!("{header}{}", imported.toml);
    match &args.out {
        Some(path) => {
            let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path);
            let mut file = file.map_err(|error| {
                Failure::Usage(anyhow::anyhow!("write {}: {error}", path.display()))
            })?;
            file.write_all(text.as_bytes()).map_err(|error| {
                Failure::Operation(anyhow::anyhow!("write {}: {error}", path.display()))
            })?;
        }
        None => emit(&text),
    }
    let mut stderr = std::io::stderr().lock();
    for (key, why) in &imported.dropped {
        let _ = writeln!(stderr, "not carried over: {key}: {why}");
    }
    let _ = writeln!(
        stderr,
        "{} key(s) of DBLab's configuration not carried over (above)",
        imported.dropped.len()
    );
    Ok(())
}

/// Why a command failed, which decides the exit code.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad input or configuration: exit 2.
    Usage(anyhow::Error),
    /// The operation was tried and failed: exit 1.
    Operation(anyhow::Error),
}

impl Failure {
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Operation(_) => 1,
        }
    }

    pub(crate) fn operation(message: impl fmt::Display) -> Failure {
        Failure::Operation(anyhow::anyhow!("{message}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(error) | Failure::Operation(error) => write!(f, "{error:#}"),
        }
    }
}

impl From<api_client::Error> for Failure {
    fn from(error: api_client::Error) -> Failure {
        use api_client::Error;
        let hint = match &error {
            Error::InvalidUrl { .. } | Error::InvalidId { .. } => {
                return Failure::Usage(error.into());
            }
            Error::Unreachable { reason, .. } if reason.contains("certificate") => Some(
                "the server's TLS certificate does not verify; --insecure (-k) accepts a self-signed one",
            ),
            Error::Unreachable { .. } => Some(
                "is scion-server running there? Set the URL with --url, SCION_URL or `scion init`",
            ),
            Error::Api { status: 401, .. } => {
                Some("set the token with --token, SCION_TOKEN or `scion init`")
            }
            Error::Timeout { .. } => Some("a longer --request-timeout may help"),
            Error::Api { .. } | Error::Decode { .. } => None,
        };
        match hint {
            Some(hint) => Failure::Operation(anyhow::anyhow!("{error}\nhint: {hint}")),
            None => Failure::Operation(error.into()),
        }
    }
}

/// Runs the command.
pub(crate) async fn run(cli: Cli) -> Result<(), Failure> {
    let global = &cli.global;
    match cli.command {
        Command::Init(args) => init::run(global, &args).await,
        Command::Clone(command) => clone::run(&Context::new(global).await?, command).await,
        Command::Snapshot(command) => snapshot::run(&Context::new(global).await?, command).await,
        Command::Branch(args) => branch::run(&Context::new(global).await?, args).await,
        Command::Switch(args) => branch::switch(&Context::new(global).await?, &args.name).await,
        Command::Commit(args) => branch::commit(&Context::new(global).await?, args).await,
        Command::Log(args) => {
            branch::log(&Context::new(global).await?, args.branch.as_deref()).await
        }
        Command::Instance(command) => instance::run(&Context::new(global).await?, &command).await,
        Command::FullRefresh => instance::full_refresh(&Context::new(global).await?).await,
        Command::Config(ConfigCommand::ImportDblab(args)) => import_dblab(&args),
        Command::Config(command) => environment::run(global, command),
        Command::Ci(command) => ci::run(&Context::new(global).await?, command).await,
        Command::Masking(command) => masking::run(&Context::new(global).await?, command).await,
        Command::PortForward(args) => port_forward::run(global, &args).await,
        Command::Teleport(command) => crate::teleport::run(command).await,
        Command::RdsRefresh(args) => crate::rds::run(args).await,
        Command::Completions(args) => {
            let mut text = Vec::new();
            clap_complete::generate(args.shell, &mut Cli::command(), "scion", &mut text);
            emit(&String::from_utf8_lossy(&text));
            Ok(())
        }
    }
}

/// What a command that talks to the server needs.
#[derive(Debug)]
pub(crate) struct Context {
    pub client: Client,
    pub output: Output,
    pub timeout: Duration,
    /// The environment in use from the CLI's configuration file, as loaded, and where the file
    /// lives (for the current branch).
    pub config: config::Environment,
    pub config_path: PathBuf,
    /// The SSH session and API tunnel with `--forwarding-server-url`; the client talks through it.
    pub forwarding: Option<Forwarding>,
}

impl Context {
    async fn new(global: &GlobalArgs) -> Result<Context, Failure> {
        let connection = Connection::resolve(&global.connection)?;
        Context::with_connection(global, &connection, connection.local_port).await
    }

    /// A context whose API tunnel (if any) listens on `api_port` (0: any free port).
    async fn with_connection(
        global: &GlobalArgs,
        connection: &Connection,
        api_port: Option<u16>,
    ) -> Result<Context, Failure> {
        let config_path = config::path(global.config.as_deref()).map_err(Failure::Usage)?;
        let file = config::ConfigFile::load(&config_path)
            .and_then(|file| file.active())
            .map_err(Failure::Usage)?;
        let endpoint = config::resolve(
            &config::urls(global.url.as_deref()),
            &config::tokens(global.token.as_deref()),
            &file,
        );
        let (client, forwarding) =
            connection.client(&endpoint.url, endpoint.token, api_port).await?;
        Ok(Context {
            client: client.with_timeout(global.request_timeout),
            output: global.output,
            timeout: global.request_timeout,
            config: file,
            config_path,
            forwarding,
        })
    }

    /// Prints `value` as the API's JSON or as `table(value)`.
    fn print<T: serde::Serialize>(&self, value: &T, table: impl FnOnce(&T) -> String) {
        match self.output {
            Output::Json => emit(&crate::output::json(value)),
            Output::Table => emit(&table(value)),
        }
    }
}

/// Writes a result to stdout; a closed pipe (`scion clone list | head -1`) is not an error.
pub(crate) fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

/// A spinner on stderr while waiting for the server; drawn only on a terminal. It ticks on its own
/// thread, so the request itself is a single long call, not a polling loop.
pub(crate) fn spinner(message: String) -> ProgressBar {
    let spinner = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
        spinner.set_style(style);
    }
    spinner.set_message(message);
    spinner.enable_steady_tick(Duration::from_millis(100));
    spinner
}
