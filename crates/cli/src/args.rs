//! The command line as plain data (clap derive): nouns, then verbs, then flags. Checking and
//! resolving values (the server URL, the token, `--protected`) happens elsewhere.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands::{ci, observation};
use crate::protection::Protection;

/// Scion's command-line client: thin, writable PostgreSQL clones in milliseconds.
///
/// The server URL and token come from the flags, then `SCION_URL` / `SCION_TOKEN`, then DBLab's
/// `DBLAB_INSTANCE_URL` / `DBLAB_VERIFICATION_TOKEN`, then the file `scion init` writes. Exit codes: 0 done, 1 the operation failed, 2 usage or configuration error.
#[derive(Debug, Parser)]
#[command(name = "scion", version, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The server's URL, e.g. http://127.0.0.1:2345 (a path prefix such as /api is kept);
    /// DBLAB_INSTANCE_URL is read too.
    #[arg(long, global = true, env = "SCION_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The API token. Prefer SCION_TOKEN (or DBLAB_VERIFICATION_TOKEN), `scion init` or, for
    /// init, --token-stdin: a flag value stays in the shell history and shows in `ps`.
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// How to print results: a human table, or the API's JSON unchanged.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// How long one request may take (e.g. 30s, 2m); a clone's creation may take this long too.
    #[arg(
        long,
        global = true,
        env = "SCION_REQUEST_TIMEOUT",
        value_name = "DURATION",
        default_value = "60s",
        value_parser = humantime::parse_duration
    )]
    pub request_timeout: Duration,
    /// The CLI's configuration file [default: $XDG_CONFIG_HOME/scion/config.toml].
    #[arg(long, global = true, env = "SCION_CLI_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// How to reach the server: TLS checking, SSH forwarding and debug output (DBLab's flags). The
/// environment variables are read after the flags: Scion's first, then DBLab's.
#[derive(Debug, Args)]
pub(crate) struct ConnectionArgs {
    /// Accept the server's TLS certificate even if it does not verify (self-signed); the
    /// connection stays encrypted. Also SCION_INSECURE or DBLAB_INSECURE_SKIP_VERIFY=true.
    #[arg(long, short = 'k', global = true)]
    pub insecure: bool,
    /// Log each request and answer (status, time; the token masked) and the SSH tunnel's steps
    /// to stderr. Also SCION_DEBUG or DBLAB_CLI_DEBUG=true.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Reach the API through an SSH tunnel via this server, ssh://user@host[:port]; the URL's
    /// host and port are then as seen from there. Also SCION_FORWARDING_SERVER_URL or
    /// DBLAB_CLI_FORWARDING_SERVER_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub forwarding_server_url: Option<String>,
    /// The local port of the API tunnel (of the clone's with `port-forward CLONE_ID`)
    /// [default: any free port]. Also SCION_FORWARDING_LOCAL_PORT or DBLAB_CLI_FORWARDING_LOCAL_PORT.
    #[arg(long, global = true, value_name = "PORT")]
    pub forwarding_local_port: Option<u16>,
    /// The SSH private key (OpenSSH format, no passphrase) [default: ssh-agent's keys when
    /// SSH_AUTH_SOCK is set, else ~/.ssh/id_ed25519, id_ecdsa or id_rsa]. Also SCION_IDENTITY_FILE
    /// or DBLAB_CLI_IDENTITY_FILE.
    #[arg(long, global = true, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// Aligned text for people.
    Table,
    /// The API's JSON, unchanged, for scripts.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Save the server URL (--url or SCION_URL) and token for later commands (file mode 0600).
    Init(InitArgs),
    /// Create, inspect, protect, reset and destroy clones.
    #[command(subcommand)]
    Clone(CloneCommand),
    /// List, create and destroy snapshots.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// List, create, protect and delete branches (DBLab's `branch` verb), or use the
    /// subcommands `create`, `list`, `log` and `delete`.
    Branch(BranchArgs),
    /// Make another branch the current one (kept in the CLI's configuration file).
    Switch(SwitchArgs),
    /// Commit a clone: snapshot its data as the new head of its branch.
    Commit(CommitArgs),
    /// A branch's history, head first (default: the current branch).
    Log(LogArgs),
    /// The server itself.
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Start a full refresh of the data from the source (POST /full-refresh).
    FullRefresh,
    /// Named environments, as DBLab's `config`: each a server URL, token and current branch,
    /// one of them current.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Forward a local port through the SSH server of --forwarding-server-url, to a clone's
    /// Postgres port (or, without CLONE_ID, to the API), until Ctrl-C.
    PortForward(PortForwardArgs),
    /// Print a shell completion script (e.g. `scion completions bash > /etc/bash_completion.d/scion`).
    Completions(CompletionsArgs),
    /// Checks for CI: a migration on a fresh clone, observed for dangerous locks.
    #[command(subcommand)]
    Ci(ci::CiCommand),
    /// The Teleport sidecar: registers clones as Teleport databases (DBLab's `teleport serve`).
    #[command(subcommand)]
    Teleport(crate::teleport::TeleportCommand),
    /// Refresh the data from an RDS snapshot through a temporary instance that is deleted
    /// afterwards (DBLab's `rds-refresh`); `rds-refresh cleanup` deletes what crashed runs left.
    RdsRefresh(crate::rds::RdsRefreshArgs),
    /// Masking of personal data ([retrieval.masking] on the server).
    #[command(subcommand)]
    Masking(MaskingCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum MaskingCommand {
    /// List the columns that look personal and have no masking rule, and what is wrong with the
    /// rules, from a temporary clone of the newest snapshot; exit 1 when anything is found.
    Check(MaskingCheckArgs),
}

#[derive(Debug, Args)]
pub(crate) struct MaskingCheckArgs {
    /// Print the API's JSON (as `--output json`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Add an environment with --url (and --token, SCION_TOKEN or DBLAB_VERIFICATION_TOKEN) and
    /// make it current.
    Create(EnvironmentArg),
    /// Change an environment's URL (--url) or token (--token, SCION_TOKEN, ...).
    Update(EnvironmentArg),
    /// Show an environment (default: the current one); the token is never printed.
    View(OptionalEnvironmentArg),
    /// List the environments; the current one is starred.
    List,
    /// Make another environment the current one.
    Switch(EnvironmentArg),
    /// Remove an environment (not the current one).
    Remove(EnvironmentArg),
    /// Turn DBLab Engine's server.yml into Scion's configuration (TOML, on stdout or --out),
    /// naming on stderr every key it cannot carry over and why.
    ImportDblab(ImportDblabArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ImportDblabArgs {
    /// DBLab's configuration file (`~/.dblab/engine/configs/server.yml`).
    pub file: std::path::PathBuf,
    /// Write Scion's configuration here (refused if the file exists) instead of stdout.
    #[arg(long, value_name = "PATH")]
    pub out: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct EnvironmentArg {
    /// The environment's ID (letters, digits, `-`, `_` and `.`).
    pub environment_id: String,
}

#[derive(Debug, Args)]
pub(crate) struct OptionalEnvironmentArg {
    /// The environment's ID (default: the current one).
    pub environment_id: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Read the token from the first line of standard input.
    #[arg(long)]
    pub token_stdin: bool,
    /// Check that the server answers and accepts the token before saving (GET /status).
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CloneCommand {
    /// Create a clone and wait until it accepts connections (unless --async).
    Create(CloneCreateArgs),
    /// List clones, newest first.
    List,
    /// Show one clone.
    Status(CloneIdArg),
    /// Set or lift a clone's protection; without --protected, protection is lifted (as in DBLab).
    Update(CloneUpdateArgs),
    /// Reset a clone to its snapshot, another snapshot, or the latest one.
    Reset(CloneResetArgs),
    /// Destroy a clone and wait until it is gone (unless --async).
    Destroy(CloneDestroyArgs),
    /// Stop a clone's server to save its memory; the first connection starts it again (Scion's).
    Stop(CloneIdArg),
    /// Start a stopped clone's server and wait until it accepts connections (Scion's).
    Start(CloneIdArg),
    /// Start watching a clone for dangerous locks while a migration runs.
    StartObservation(observation::StartArgs),
    /// Stop the clone's observation session and print its verdict.
    StopObservation(observation::StopArgs),
    /// Print a stopped observation session's summary (JSON).
    SummaryObservation(observation::SummaryArgs),
    /// Download an artifact of a stopped observation session.
    DownloadArtifact(observation::DownloadArgs),
    /// Print a clone's Postgres log (Scion's); --follow keeps printing what it writes next.
    Logs(CloneLogsArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CloneLogsArgs {
    /// The clone's ID.
    pub clone_id: String,
    /// Keep printing what the server writes next, until the clone is gone or Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
}

#[derive(Debug, Args)]
pub(crate) struct CloneIdArg {
    /// The clone's ID.
    pub clone_id: String,
}

#[derive(Debug, Args)]
pub(crate) struct CloneCreateArgs {
    /// The database user to create in the clone.
    #[arg(long)]
    pub username: String,
    /// Its password; prefer SCION_CLONE_PASSWORD (a flag value stays in the shell history).
    #[arg(long, env = "SCION_CLONE_PASSWORD", hide_env_values = true)]
    pub password: String,
    /// Make the user a non-superuser that owns the database objects.
    #[arg(long)]
    pub restricted: bool,
    /// The database the restricted user works in.
    #[arg(long)]
    pub db_name: Option<String>,
    /// The clone's ID (default: generated by the server).
    #[arg(long)]
    pub id: Option<String>,
    /// Clone this snapshot (wins over --branch).
    #[arg(long)]
    pub snapshot_id: Option<String>,
    /// Clone the head of this branch (default: main).
    #[arg(long)]
    pub branch: Option<String>,
    /// Protect the clone from deletion: true (the server's default lease), false, or a lease in
    /// minutes (120) or with a unit (30m, 2h, 7d); 0 means as long as the server allows.
    #[arg(
        long,
        short = 'p',
        value_name = "VALUE",
        allow_hyphen_values = true,
        value_parser = Protection::parse_arg
    )]
    pub protected: Option<Protection>,
    /// Return at once, while the clone is still being created.
    #[arg(long = "async", short = 'a')]
    pub no_wait: bool,
    /// An extra Postgres setting for the clone, as name=value (repeatable).
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub extra_config: Vec<(String, String)>,
    /// The clone's CPU limit in cores (0.5, 2), over the server's `[clone] cpu` (Scion's).
    #[arg(long, value_name = "CORES")]
    pub cpu: Option<f64>,
    /// The clone's memory limit (512MB, 2GB; binary units), over `[clone] memory` (Scion's).
    #[arg(long, value_name = "SIZE", value_parser = api_types::parse_bytes)]
    pub memory: Option<u64>,
    /// The clone's disk quota (20GB: the most its data may refer to, the snapshot's included),
    /// over `[clone] disk`; btrfs and ZFS pools only (Scion's).
    #[arg(long, value_name = "SIZE", value_parser = api_types::parse_bytes)]
    pub disk: Option<u64>,
    /// Ask for a client certificate for the user and write it into DIR (made if missing) as
    /// libpq names them: postgresql.crt, postgresql.key and root.crt, mode 0600. The server
    /// keeps no copy of the key.
    #[arg(long, value_name = "DIR")]
    pub client_cert: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CloneUpdateArgs {
    /// The clone's ID.
    pub clone_id: String,
    /// true (the server's default lease), false, or a lease in minutes (120) or with a unit
    /// (30m, 2h, 7d); 0 means as long as the server allows. Omitted: protection is lifted.
    #[arg(
        long,
        short = 'p',
        value_name = "VALUE",
        allow_hyphen_values = true,
        value_parser = Protection::parse_arg
    )]
    pub protected: Option<Protection>,
}

#[derive(Debug, Args)]
pub(crate) struct CloneResetArgs {
    /// The clone's ID.
    pub clone_id: String,
    /// Reset to this snapshot.
    #[arg(long, conflicts_with = "latest")]
    pub snapshot_id: Option<String>,
    /// Reset to the newest snapshot.
    #[arg(long)]
    pub latest: bool,
    /// Return at once, while the clone is still being reset.
    #[arg(long = "async", short = 'a')]
    pub no_wait: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CloneDestroyArgs {
    /// The clone's ID.
    pub clone_id: String,
    /// Return at once, while the clone is still being destroyed.
    #[arg(long = "async", short = 'a')]
    pub no_wait: bool,
}

/// `scion branch`: DBLab's flag forms (`scion branch`, `scion branch NAME`, `scion branch -d NAME`,
/// `scion branch NAME -p VALUE`) next to subcommands. A subcommand's name wins over a branch
/// of the same name: `scion branch create list` makes a branch called `list`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BranchArgs {
    #[command(subcommand)]
    pub command: Option<BranchCommand>,
    /// Create this branch and switch to it; with --protected, change its protection instead.
    pub name: Option<String>,
    #[command(flatten)]
    pub base: BranchBase,
    /// Delete this branch with its snapshots (not the current branch); then switch to main.
    #[arg(long, short = 'd', value_name = "NAME", conflicts_with_all = ["name", "parent_branch", "snapshot_id", "protected"])]
    pub delete: Option<String>,
    /// Protect the branch NAME: true (forever), false (lift), or a lease in minutes (120) or with
    /// a unit (30m, 2h, 7d).
    #[arg(
        long,
        short = 'p',
        value_name = "VALUE",
        allow_hyphen_values = true,
        requires = "name",
        conflicts_with_all = ["parent_branch", "snapshot_id"],
        value_parser = Protection::parse_arg
    )]
    pub protected: Option<Protection>,
}

/// What a new branch forks from.
#[derive(Debug, Args)]
pub(crate) struct BranchBase {
    /// Fork from the head of this branch (default: the current branch).
    #[arg(long, conflicts_with = "snapshot_id")]
    pub parent_branch: Option<String>,
    /// Fork from this snapshot.
    #[arg(long)]
    pub snapshot_id: Option<String>,
    /// Physical mode: fork from the data as it was at this moment of the WAL window, an RFC
    /// 3339 time (2026-12-02T10:00:00Z) or a WAL location (0/3000148).
    #[arg(long, value_name = "TIME|LSN", conflicts_with_all = ["parent_branch", "snapshot_id"])]
    pub at: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum BranchCommand {
    /// Create a branch and switch to it.
    Create(BranchCreateArgs),
    /// List branches; the current one is starred.
    List,
    /// A branch's history, head first (default: the current branch).
    Log(LogArgs),
    /// Delete a branch with its snapshots (not the current branch); then switch to main.
    Delete(BranchNameArg),
}

#[derive(Debug, Args)]
pub(crate) struct BranchCreateArgs {
    /// The new branch's name.
    pub name: String,
    #[command(flatten)]
    pub base: BranchBase,
}

#[derive(Debug, Args)]
pub(crate) struct BranchNameArg {
    /// The branch.
    pub name: String,
}

#[derive(Debug, Args)]
pub(crate) struct SwitchArgs {
    /// The branch to work on.
    pub name: String,
}

#[derive(Debug, Args)]
pub(crate) struct CommitArgs {
    /// The clone to commit.
    #[arg(long)]
    pub clone_id: String,
    /// The commit message.
    #[arg(long, short = 'm')]
    pub message: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// The branch (default: the current branch).
    pub branch: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// List snapshots, newest first.
    List(SnapshotListArgs),
    /// Snapshot the pool now.
    Create(SnapshotCreateArgs),
    /// Destroy a snapshot (DBLab's `snapshot delete` works too).
    #[command(visible_alias = "delete")]
    Destroy(SnapshotDestroyArgs),
    /// Protect a snapshot or lift its protection.
    Update(SnapshotUpdateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotUpdateArgs {
    /// The snapshot's ID (`<dataset>@<name>`).
    pub snapshot_id: String,
    /// true (forever), false (lift), or a lease in minutes (120) or with a unit (30m, 2h, 7d).
    #[arg(
        long,
        short = 'p',
        value_name = "VALUE",
        allow_hyphen_values = true,
        value_parser = Protection::parse_arg
    )]
    pub protected: Protection,
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotListArgs {
    /// Only this branch's snapshots.
    #[arg(long)]
    pub branch: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotCreateArgs {
    /// The pool to snapshot (default: the active pool).
    #[arg(long, conflicts_with = "clone_id")]
    pub pool: Option<String>,
    /// Snapshot this clone's data instead (POST /snapshot/clone); its branch's head stays.
    #[arg(long)]
    pub clone_id: Option<String>,
    /// A message for the clone's snapshot (the API ignores it, as DBLab's does).
    #[arg(long, short = 'm', requires = "clone_id")]
    pub message: Option<String>,
    /// Physical mode: the data as it was at this moment of the WAL window, an RFC 3339 time
    /// (2026-12-02T10:00:00Z) or a WAL location (0/3000148).
    #[arg(long, value_name = "TIME|LSN", conflicts_with = "clone_id")]
    pub at: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct SnapshotDestroyArgs {
    /// The snapshot's ID (`<dataset>@<name>`).
    pub snapshot_id: String,
    /// Also destroy the clones made from it.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum InstanceCommand {
    /// The server's state: engine, pools, clones, retrieval (GET /status).
    Status,
    /// The server's version and edition (GET /healthz, which needs no token).
    Version,
    /// Start a full refresh of the data from the source (DBLab's `instance full-refresh`; the
    /// same as `scion full-refresh`).
    FullRefresh,
}

#[derive(Debug, Args)]
pub(crate) struct PortForwardArgs {
    /// The clone whose port to forward (default: forward the API).
    pub clone_id: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn extra_config_is_name_equals_value() {
        assert_eq!(parse_key_value("work_mem=64MB").unwrap(), ("work_mem".into(), "64MB".into()));
        assert_eq!(parse_key_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }
}
