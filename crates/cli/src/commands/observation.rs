//! `scion clone start-observation|stop-observation|summary-observation|download-artifact`:
//! DBLab's observation verbs with its flags and environment variables. One difference:
//! `download-artifact` names its file with `--output-file` (`-f`), since `--output`/`-o` is the
//! CLI's global output format.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use api_types::{
    ObservationConfig, ObservationSession, StartObservationRequest, StopObservationRequest,
};
use clap::Args;

use super::{Context, Failure, emit};
use crate::args::parse_key_value;

/// The observer's settings, as DBLab's CLI takes them (seconds; 0 is the server's default).
#[derive(Debug, Args)]
pub(crate) struct ObserverFlags {
    /// Seconds between two lock checks [server default: 10].
    #[arg(long, env = "DBLAB_OBSERVATION_INTERVAL", default_value_t = 0, value_name = "SECONDS")]
    pub observation_interval: u64,
    /// Seconds an ACCESS EXCLUSIVE lock may be held before it fails the session [server default: 10].
    #[arg(long, env = "DBLAB_MAX_LOCK_DURATION", default_value_t = 0, value_name = "SECONDS")]
    pub max_lock_duration: u64,
    /// Seconds the whole session may last and still pass [server default: 3600].
    #[arg(long, env = "DBLAB_MAX_DURATION", default_value_t = 0, value_name = "SECONDS")]
    pub max_duration: u64,
    /// A tag kept with the session, as key=value (repeatable).
    #[arg(long = "tags", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub tags: Vec<(String, String)>,
}

impl ObserverFlags {
    pub(crate) fn config(&self) -> ObservationConfig {
        ObservationConfig {
            observation_interval: self.observation_interval,
            max_lock_duration: self.max_lock_duration,
            max_duration: self.max_duration,
        }
    }

    pub(crate) fn tags(&self) -> BTreeMap<String, String> {
        self.tags.iter().cloned().collect()
    }
}

#[derive(Debug, Args)]
pub(crate) struct StartArgs {
    /// The clone to observe.
    pub clone_id: String,
    #[command(flatten)]
    pub observer: ObserverFlags,
    /// The database whose statistics are collected [default: the clone's].
    #[arg(long)]
    pub db_name: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StopArgs {
    /// The observed clone.
    pub clone_id: String,
    /// Report the observed work as failed (Scion's addition; DBLab's runner sets it itself).
    #[arg(long)]
    pub overall_error: bool,
}

#[derive(Debug, Args)]
pub(crate) struct SummaryArgs {
    /// The observed clone.
    #[arg(long, env = "DBLAB_OBSERVATION_CLONE_ID")]
    pub clone_id: String,
    /// The session.
    #[arg(long, env = "DBLAB_OBSERVATION_SESSION_ID")]
    pub session_id: u64,
}

#[derive(Debug, Args)]
pub(crate) struct DownloadArgs {
    /// The observed clone.
    #[arg(long, env = "DBLAB_OBSERVATION_CLONE_ID")]
    pub clone_id: String,
    /// The session.
    #[arg(long, env = "DBLAB_OBSERVATION_SESSION_ID")]
    pub session_id: u64,
    /// The artifact: pg_stat_statements, pg_stat_database, pg_stat_user_tables, log_errors, …
    #[arg(long)]
    pub artifact_type: String,
    /// Where to write it [default: <artifact-type>.json in the current directory].
    #[arg(long, short = 'f', value_name = "FILE")]
    pub output_file: Option<PathBuf>,
}

/// Key lines of a session for people.
fn session_table(session: &ObservationSession) -> String {
    let mut text = format!("Session   {}\n", session.session_id);
    let started = session.started_at.map_or_else(|| "-".to_owned(), |time| time.to_rfc3339());
    text.push_str(&format!("Started   {started}\n"));
    if let Some(finished) = session.finished_at {
        text.push_str(&format!("Finished  {}\n", finished.to_rfc3339()));
    }
    if let Some(result) = &session.result {
        let summary = &result.summary;
        text.push_str(&format!("Status    {}\n", result.status));
        text.push_str(&format!(
            "Intervals {} ({} with dangerous locks)\nDuration  {:.1}s\n",
            summary.total_intervals, summary.warning_intervals, summary.total_duration
        ));
    }
    if !session.artifacts.is_empty() {
        text.push_str(&format!("Artifacts {}\n", session.artifacts.join(", ")));
    }
    text
}

pub(super) async fn start(context: &Context, args: StartArgs) -> Result<(), Failure> {
    let request = StartObservationRequest {
        clone_id: args.clone_id,
        config: args.observer.config(),
        tags: args.observer.tags(),
        db_name: args.db_name.unwrap_or_default(),
    };
    let session = context.client.start_observation(&request).await?;
    context.print(&session, session_table);
    Ok(())
}

pub(super) async fn stop(context: &Context, args: StopArgs) -> Result<(), Failure> {
    let request =
        StopObservationRequest { clone_id: args.clone_id, overall_error: args.overall_error };
    let session = context.client.stop_observation(&request).await?;
    context.print(&session, session_table);
    Ok(())
}

pub(super) async fn summary(context: &Context, args: &SummaryArgs) -> Result<(), Failure> {
    let summary = context.client.observation_summary(&args.clone_id, args.session_id).await?;
    // DBLab prints the summary as JSON whatever the format.
    emit(&crate::output::json(&summary));
    Ok(())
}

pub(super) async fn download(context: &Context, args: DownloadArgs) -> Result<(), Failure> {
    let artifact = context
        .client
        .download_artifact(&args.clone_id, args.session_id, &args.artifact_type)
        .await?;
    let path =
        args.output_file.unwrap_or_else(|| PathBuf::from(format!("{}.json", args.artifact_type)));
    std::fs::write(&path, artifact)
        .with_context(|| format!("write the artifact to {}", path.display()))
        .map_err(Failure::Operation)?;
    emit(&format!("The artifact has been saved to {}\n", path.display()));
    Ok(())
}
