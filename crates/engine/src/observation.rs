//! Observation sessions (DBLab's `/observation/*`): the component that owns every session and
//! its loop, and the engine's use cases on it.
//!
//! A session watches one clone for dangerous locks every `observation_interval` through the
//! [`observer`](crate::observer), and at stop collects the artifacts, decides the verdict with
//! [`verdict::verdict`] and writes the summary. Unlike DBLab, whose sessions live in memory
//! only, each session's record is written to the store (first) and then to the component's
//! memory at every change, and its files live under `<state>/observations/<clone>/<session>/`,
//! so a restart resumes running sessions (their intervals so far kept) and keeps stopped ones'
//! summaries and artifacts until the clone is destroyed. While a stop collects the artifacts
//! the clone is `EXPORTING`, as in DBLab, and other operations on it are refused.

mod verdict;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use api_types::{
    ARTIFACT_TYPES, Checklist, ObservationConfig, ObservationInterval, StartObservationRequest,
    SummaryArtifact, SummaryDbSize, SummaryDuration, SummaryLocks,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::Engine;
use crate::error::{Error, Result};
use crate::model::{CloneRecord, CloneState};
use crate::observer;
use crate::state::not_found;
use crate::store::Store;
use crate::sync::lock;

/// The state directory's subdirectory of sessions' files.
const OBSERVATIONS_DIR: &str = "observations";
/// The store's `meta` key of the last session ID given, so that IDs are never reused.
const LAST_SESSION_KEY: &str = "observation_last_session";
/// The database observed when neither the request nor the clone names one.
const DEFAULT_DB_NAME: &str = "postgres";
/// The summary's file name in a session's directory.
const SUMMARY_FILE: &str = "summary.json";

/// An observation session as the engine keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservationRecord {
    /// The session's ID, unique on this engine and never reused.
    pub session_id: u64,
    /// The observed clone.
    pub clone_id: String,
    /// The database statistics are read from.
    pub db_name: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it stopped.
    pub finished_at: Option<DateTime<Utc>>,
    /// The settings, defaults filled in.
    pub config: ObservationConfig,
    /// The start request's tags.
    pub tags: BTreeMap<String, String>,
    /// Every interval observed so far, oldest first.
    pub intervals: Vec<ObservationInterval>,
    /// The database's size at the start.
    pub initial_db_size: i64,
    /// The length of the clone's log at the start: errors are read from there on.
    pub log_offset: u64,
    /// A stop has begun and not finished (a restart finishes it).
    pub stopping: bool,
    /// The stop request's verdict on the observed work.
    pub overall_error: bool,
    /// The artifact types collected at stop.
    pub artifacts: Vec<String>,
    /// The verdict, once stopped.
    pub result: Option<SessionResult>,
}

/// A stopped session's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionResult {
    /// `passed` or `failed`.
    pub status: String,
    /// The checks.
    pub checklist: Checklist,
    /// Seconds from start to stop.
    pub total_duration: f64,
}

impl ObservationRecord {
    /// A session just started, with no intervals yet.
    pub fn new(
        session_id: u64,
        clone_id: &str,
        db_name: &str,
        config: ObservationConfig,
    ) -> ObservationRecord {
        ObservationRecord {
            session_id,
            clone_id: clone_id.to_owned(),
            db_name: db_name.to_owned(),
            started_at: Utc::now(),
            finished_at: None,
            config,
            tags: BTreeMap::new(),
            intervals: Vec::new(),
            initial_db_size: 0,
            log_offset: 0,
            stopping: false,
            overall_error: false,
            artifacts: Vec::new(),
            result: None,
        }
    }

    /// How many intervals saw a dangerous lock.
    pub fn warning_intervals(&self) -> u64 {
        self.intervals.iter().filter(|interval| !interval.warning.is_empty()).count() as u64
    }
}

/// A running session's loop, as its stop reaches it.
#[derive(Debug)]
struct Runner {
    session_id: u64,
    stop: CancellationToken,
    /// Fires when the loop has recorded its last interval.
    done: oneshot::Receiver<()>,
}

/// Every observation session and the running sessions' loops.
#[derive(Debug, Default)]
pub(crate) struct Observations {
    /// Every recorded session by ID: the store's copy, changed only after the store.
    sessions: Mutex<BTreeMap<u64, ObservationRecord>>,
    /// The loops of running sessions, by clone ID: at most one per clone.
    running: Mutex<HashMap<String, Runner>>,
}

impl Observations {
    /// Writes `record` to the store, then to memory.
    fn save(&self, store: &Store, record: ObservationRecord) -> Result<()> {
        let mut sessions = lock(&self.sessions);
        store.upsert_observation(&record)?;
        sessions.insert(record.session_id, record);
        Ok(())
    }

    /// Changes a recorded session, store first; a session forgotten meanwhile (its clone was
    /// destroyed) is left alone.
    fn update(
        &self,
        store: &Store,
        session_id: u64,
        change: impl FnOnce(&mut ObservationRecord),
    ) -> Result<Option<ObservationRecord>> {
        let mut sessions = lock(&self.sessions);
        let Some(current) = sessions.get(&session_id) else { return Ok(None) };
        let mut changed = current.clone();
        change(&mut changed);
        store.upsert_observation(&changed)?;
        sessions.insert(session_id, changed.clone());
        Ok(Some(changed))
    }

    fn get(&self, session_id: u64) -> Option<ObservationRecord> {
        lock(&self.sessions).get(&session_id).cloned()
    }

    /// The clone's session that has not finished, if any.
    fn unfinished(&self, clone_id: &str) -> Option<ObservationRecord> {
        lock(&self.sessions)
            .values()
            .find(|record| record.clone_id == clone_id && record.finished_at.is_none())
            .cloned()
    }

    /// The clone's sessions, newest first.
    fn of_clone(&self, clone_id: &str) -> Vec<ObservationRecord> {
        lock(&self.sessions)
            .values()
            .rev()
            .filter(|record| record.clone_id == clone_id)
            .cloned()
            .collect()
    }

    /// Every session that has not finished.
    fn all_unfinished(&self) -> Vec<ObservationRecord> {
        lock(&self.sessions)
            .values()
            .filter(|record| record.finished_at.is_none())
            .cloned()
            .collect()
    }

    /// Takes the clone's loop slot for a session being started, so that a second start is
    /// refused meanwhile; refused when the clone has a session running or being stopped.
    fn reserve(&self, clone_id: &str, runner: Runner) -> Result<()> {
        let mut running = lock(&self.running);
        if let Some(runner) = running.get(clone_id) {
            return Err(Error::Refused(format!(
                "clone {clone_id:?} has a running observation session ({}); stop it first",
                runner.session_id
            )));
        }
        if self.unfinished(clone_id).is_some() {
            return Err(Error::Refused(format!(
                "clone {clone_id:?} has an observation session being stopped; stop it again"
            )));
        }
        running.insert(clone_id.to_owned(), runner);
        Ok(())
    }

    /// Gives a session resumed at start its loop slot.
    fn resume(&self, clone_id: &str, runner: Runner) {
        lock(&self.running).insert(clone_id.to_owned(), runner);
    }

    /// Names the session a reserved slot runs.
    fn started(&self, clone_id: &str, session_id: u64) {
        if let Some(runner) = lock(&self.running).get_mut(clone_id) {
            runner.session_id = session_id;
        }
    }

    /// Frees a reserved slot whose start failed.
    fn release(&self, clone_id: &str) {
        lock(&self.running).remove(clone_id);
    }

    /// Takes the loop of `session_id`, for its stop.
    fn take_runner(&self, clone_id: &str, session_id: u64) -> Option<Runner> {
        let mut running = lock(&self.running);
        match running.get(clone_id) {
            Some(runner) if runner.session_id == session_id => running.remove(clone_id),
            _ => None,
        }
    }

    /// Memory takes the store's sessions, at start.
    fn load(&self, records: Vec<ObservationRecord>) {
        let mut sessions = lock(&self.sessions);
        for record in records {
            sessions.insert(record.session_id, record);
        }
    }

    /// Stops the clone's loop and forgets its sessions, store first.
    fn forget(&self, store: &Store, clone_id: &str) -> Result<()> {
        if let Some(runner) = lock(&self.running).remove(clone_id) {
            runner.stop.cancel();
        }
        let mut sessions = lock(&self.sessions);
        store.delete_observations(clone_id)?;
        sessions.retain(|_, record| record.clone_id != clone_id);
        Ok(())
    }
}

impl Engine {
    fn observations_dir(&self) -> PathBuf {
        self.inner.state_dir.join(OBSERVATIONS_DIR)
    }

    fn session_dir(&self, clone_id: &str, session_id: u64) -> PathBuf {
        self.observations_dir().join(clone_id).join(session_id.to_string())
    }

    fn clone_record(&self, id: &str) -> Result<CloneRecord> {
        let state = self.read_state();
        state.clones.get(id).map(|entry| entry.record.clone()).ok_or_else(|| not_found(id))
    }

    /// Starts observing a clone that is `OK`: resets its statistics, records the session and
    /// starts its loop. A clone has at most one running session.
    pub async fn start_observation(
        &self,
        request: StartObservationRequest,
    ) -> Result<ObservationRecord> {
        let clone = self.clone_record(&request.clone_id)?;
        if clone.state != CloneState::Ok {
            return Err(Error::Refused(format!(
                "clone {:?} is {}; observation needs it OK",
                clone.id,
                clone.state.code()
            )));
        }
        // Observing a stopped clone (scale to zero) means using it: it is started first, and
        // its sessions go to the port its server now listens on.
        let clone = self.wake(&clone.id).await?;
        let config = verdict::with_defaults(request.config);
        let db_name = [request.db_name.as_str(), clone.db_name.as_deref().unwrap_or_default()]
            .into_iter()
            .find(|name| !name.is_empty())
            .unwrap_or(DEFAULT_DB_NAME)
            .to_owned();
        let observations = &self.inner.observations;
        let stop = self.inner.cancel.child_token();
        let (done_tx, done_rx) = oneshot::channel();
        observations
            .reserve(&clone.id, Runner { session_id: 0, stop: stop.clone(), done: done_rx })?;
        match self.begin_session(&clone, &db_name, config, request.tags).await {
            Ok(record) => {
                observations.started(&clone.id, record.session_id);
                info!(clone_id = %clone.id, session_id = record.session_id, "observation started");
                self.spawn_session_loop(&record, stop, done_tx);
                Ok(record)
            }
            Err(error) => {
                observations.release(&clone.id);
                Err(error)
            }
        }
    }

    /// The start's work: statistics reset, the log's length, the record and its directory.
    async fn begin_session(
        &self,
        clone: &CloneRecord,
        db_name: &str,
        config: ObservationConfig,
        tags: BTreeMap<String, String>,
    ) -> Result<ObservationRecord> {
        let admin = match self.inner.servers.admin_session_in(clone, db_name).await {
            Err(error) if error.is_missing_database() => {
                return Err(Error::InvalidInput(format!(
                    "clone {:?} has no database {db_name:?} to observe",
                    clone.id
                )));
            }
            admin => admin?,
        };
        let initial_db_size = observer::begin(&admin).await?;
        let log = self.inner.servers.clone_log_file(clone);
        let log_offset = std::fs::metadata(&log).map_or(0, |metadata| metadata.len());
        let store = &self.inner.store;
        let last: u64 = store.meta(LAST_SESSION_KEY)?.and_then(|id| id.parse().ok()).unwrap_or(0);
        let session_id = last + 1;
        store.set_meta(LAST_SESSION_KEY, &session_id.to_string())?;
        let dir = self.session_dir(&clone.id, session_id).join("artifacts");
        std::fs::create_dir_all(&dir).map_err(|error| Error::Io {
            what: "create observation directory",
            path: dir.clone(),
            error,
        })?;
        let mut record = ObservationRecord::new(session_id, &clone.id, db_name, config);
        record.tags = tags;
        record.initial_db_size = initial_db_size;
        record.log_offset = log_offset;
        self.inner.observations.save(store, record.clone())?;
        Ok(record)
    }

    fn spawn_session_loop(
        &self,
        record: &ObservationRecord,
        stop: CancellationToken,
        done: oneshot::Sender<()>,
    ) {
        let engine = self.clone();
        let span =
            info_span!("observation", clone_id = %record.clone_id, session_id = record.session_id);
        let (session_id, clone_id) = (record.session_id, record.clone_id.clone());
        let since = record
            .intervals
            .last()
            .and_then(|last| {
                let end = last.started_at?
                    + chrono::Duration::milliseconds((last.duration * 1000.0) as i64);
                Some(end)
            })
            .unwrap_or(record.started_at);
        let config = record.config;
        self.inner.tasks.spawn(
            async move {
                engine.run_session(session_id, &clone_id, config, since, stop).await;
                let _ = done.send(());
            }
            .instrument(span),
        );
    }

    /// The session's loop: one lock check per interval, recorded as it ends, until the stop
    /// (which gets a last interval) or the engine's shutdown (which leaves the session running
    /// for the next start).
    async fn run_session(
        &self,
        session_id: u64,
        clone_id: &str,
        config: ObservationConfig,
        mut since: DateTime<Utc>,
        stop: CancellationToken,
    ) {
        let period = Duration::from_secs(config.observation_interval);
        let mut admin = None;
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(period) => false,
                () = stop.cancelled() => true,
            };
            if stopping && self.inner.cancel.is_cancelled() {
                return;
            }
            let warning = match self.check_locks(&mut admin, clone_id, session_id, &config).await {
                Ok(warning) => warning,
                // An interval whose locks could not be seen is not counted as clean.
                Err(error) => {
                    warn!(error = %error, "failed to check the clone's locks");
                    serde_json::json!({ "error": format!("the locks could not be checked: {error}") })
                        .to_string()
                }
            };
            let now = Utc::now();
            let interval = ObservationInterval {
                started_at: Some(since),
                duration: (now - since).num_milliseconds() as f64 / 1000.0,
                warning,
            };
            since = now;
            let updated = self
                .inner
                .observations
                .update(&self.inner.store, session_id, |record| record.intervals.push(interval));
            match updated {
                Ok(Some(_)) => {}
                Ok(None) => return,
                Err(error) => warn!(error = %error, "failed to record an observation interval"),
            }
            if stopping {
                return;
            }
        }
    }

    async fn check_locks(
        &self,
        admin: &mut Option<postgres::Admin>,
        clone_id: &str,
        session_id: u64,
        config: &ObservationConfig,
    ) -> Result<String> {
        if admin.as_ref().is_none_or(|admin| admin.is_closed()) {
            let clone = self.clone_record(clone_id)?;
            let db_name = self
                .inner
                .observations
                .get(session_id)
                .map_or_else(|| DEFAULT_DB_NAME.to_owned(), |record| record.db_name);
            *admin = Some(self.inner.servers.admin_session_in(&clone, &db_name).await?);
        }
        match admin {
            Some(session) => observer::dangerous_locks(session, config.max_lock_duration).await,
            None => Err(Error::NotFound(format!("no admin session to clone {clone_id:?}"))),
        }
    }

    /// Stops the clone's running session: a last interval, the artifacts and the summary,
    /// collected while the clone is `EXPORTING`. A stop that failed half-way can be asked again.
    pub async fn stop_observation(
        &self,
        clone_id: &str,
        overall_error: bool,
    ) -> Result<ObservationRecord> {
        self.clone_record(clone_id)?;
        let session = self.inner.observations.unfinished(clone_id).ok_or_else(|| {
            Error::NotFound(format!("clone {clone_id:?} has no running observation session"))
        })?;
        self.transition(clone_id, &[CloneState::Ok], |record| {
            record.state = CloneState::Exporting;
            record.state_message = "Exporting observation artifacts.".to_owned();
            Ok(())
        })?;
        let finished = self.finish_session(session.session_id, overall_error).await;
        let ready = self.transition(clone_id, &[CloneState::Exporting], |record| {
            record.state = CloneState::Ok;
            record.state_message = "Clone is ready to accept Postgres connections.".to_owned();
            Ok(())
        });
        if let Err(error) = ready {
            warn!(clone_id, error = %error, "failed to make an exporting clone OK again");
        }
        finished
    }

    async fn finish_session(
        &self,
        session_id: u64,
        overall_error: bool,
    ) -> Result<ObservationRecord> {
        let store = &self.inner.store;
        let observations = &self.inner.observations;
        let marked = observations.update(store, session_id, |record| {
            record.stopping = true;
            record.overall_error = overall_error;
        })?;
        let Some(record) = marked else {
            return Err(Error::NotFound(format!("observation session {session_id} is gone")));
        };
        crate::failpoint::hit("observation.exporting");
        if let Some(runner) = observations.take_runner(&record.clone_id, session_id) {
            runner.stop.cancel();
            let _ = runner.done.await;
        }
        let record = observations
            .get(session_id)
            .ok_or_else(|| Error::NotFound(format!("observation session {session_id} is gone")))?;
        let clone = self.clone_record(&record.clone_id)?;
        let dir = self.session_dir(&clone.id, session_id);
        let artifacts_dir = dir.join("artifacts");
        // The log is read first, so that nothing the collection itself might log counts.
        let log_text = self.read_log_since(&clone, record.log_offset);
        let admin = self.inner.servers.admin_session_in(&clone, &record.db_name).await?;
        let mut collected = observer::collect(&admin, &artifacts_dir).await?;
        drop(admin);
        let log_errors = observer::log_errors(&log_text);
        let log_json = serde_json::to_vec(&log_errors).unwrap_or_else(|_| b"[]".to_vec());
        observer::write_artifact(&artifacts_dir, "log_errors", &log_json)?;
        collected.artifacts.push("log_errors".to_owned());
        let finished_at = Utc::now();
        let total_duration = (finished_at - record.started_at).num_milliseconds() as f64 / 1000.0;
        let warnings = record.warning_intervals();
        let decided = verdict::verdict(&record.config, total_duration, warnings, overall_error);
        let summary = SummaryArtifact {
            session_id,
            clone_id: clone.id.clone(),
            duration: SummaryDuration {
                total: verdict::go_duration(total_duration.max(0.0).trunc() as u64 * 1000),
                started_at: Some(record.started_at),
                finished_at: Some(finished_at),
                query_duration_longest: verdict::go_duration(collected.longest_query_ms),
            },
            db_size: SummaryDbSize {
                total: verdict::iec_bytes(collected.db_size),
                diff: verdict::iec_bytes(collected.db_size - record.initial_db_size),
                objects_stat: collected.objects,
            },
            locks: SummaryLocks {
                total_interval: record.intervals.len() as u64,
                warning_interval: warnings,
            },
            log_errors: observer::log_error_summary(&log_errors),
            artifact_types: collected.artifacts.clone(),
        };
        let summary_json = serde_json::to_vec(&summary).map_err(|error| {
            Error::InvalidInput(format!("the observation summary cannot be written: {error}"))
        })?;
        let summary_path = dir.join(SUMMARY_FILE);
        std::fs::write(&summary_path, summary_json).map_err(|error| Error::Io {
            what: "write observation summary",
            path: summary_path,
            error,
        })?;
        let finished = observations.update(store, session_id, |record| {
            record.stopping = false;
            record.finished_at = Some(finished_at);
            record.artifacts = collected.artifacts;
            record.result = Some(SessionResult {
                status: decided.status.to_owned(),
                checklist: decided.checklist,
                total_duration,
            });
        })?;
        let finished = finished
            .ok_or_else(|| Error::NotFound(format!("observation session {session_id} is gone")))?;
        info!(clone_id = %clone.id, session_id, status = decided.status, "observation stopped");
        Ok(finished)
    }

    /// The clone's log from `offset` on; a log that shrank (rotated away) is read whole, and an
    /// unreadable one gives nothing, logged.
    fn read_log_since(&self, clone: &CloneRecord, offset: u64) -> String {
        let path = self.inner.servers.clone_log_file(clone);
        let read = || -> std::io::Result<String> {
            let mut file = std::fs::File::open(&path)?;
            let length = file.metadata()?.len();
            file.seek(std::io::SeekFrom::Start(if offset <= length { offset } else { 0 }))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        };
        read().unwrap_or_else(|error| {
            warn!(clone_id = %clone.id, error = %error, "failed to read the clone's log");
            String::new()
        })
    }

    /// The clone's observation sessions, running and stopped, newest first, from memory.
    pub fn observation_sessions(&self, clone_id: &str) -> Result<Vec<ObservationRecord>> {
        self.clone_record(clone_id)?;
        Ok(self.inner.observations.of_clone(clone_id))
    }

    /// A stopped session of the clone.
    fn finished_session(&self, clone_id: &str, session_id: u64) -> Result<ObservationRecord> {
        self.inner
            .observations
            .get(session_id)
            .filter(|record| record.clone_id == clone_id && record.finished_at.is_some())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no artifacts of observation session {session_id} of clone {clone_id:?}"
                ))
            })
    }

    /// The summary artifact of a stopped session, as JSON.
    pub fn observation_summary(&self, clone_id: &str, session_id: u64) -> Result<Vec<u8>> {
        self.finished_session(clone_id, session_id)?;
        let path = self.session_dir(clone_id, session_id).join(SUMMARY_FILE);
        std::fs::read(&path).map_err(|error| Error::Io {
            what: "read observation summary",
            path,
            error,
        })
    }

    /// One artifact of a stopped session, as JSON; its type must be one of DBLab's.
    pub fn observation_artifact(
        &self,
        clone_id: &str,
        session_id: u64,
        artifact_type: &str,
    ) -> Result<Vec<u8>> {
        if !ARTIFACT_TYPES.contains(&artifact_type) {
            return Err(Error::InvalidInput(format!(
                "unknown artifact type {artifact_type:?}; expected one of {}",
                ARTIFACT_TYPES.join(", ")
            )));
        }
        let record = self.finished_session(clone_id, session_id)?;
        if !record.artifacts.iter().any(|kind| kind == artifact_type) {
            return Err(Error::NotFound(format!(
                "observation session {session_id} has no {artifact_type} artifact"
            )));
        }
        let path = self
            .session_dir(clone_id, session_id)
            .join("artifacts")
            .join(format!("{artifact_type}.json"));
        std::fs::read(&path).map_err(|error| Error::Io {
            what: "read observation artifact",
            path,
            error,
        })
    }

    /// Loads the recorded sessions at start: sessions of clones that are gone are forgotten,
    /// running ones resume their loop, and a stop a restart interrupted is finished.
    pub(crate) fn resume_observations(&self) -> Result<()> {
        let observations = &self.inner.observations;
        let (kept, gone): (Vec<_>, Vec<_>) = self
            .inner
            .store
            .observations()?
            .into_iter()
            .partition(|record| self.read_state().clones.contains_key(&record.clone_id));
        observations.load(kept);
        let mut gone: Vec<String> = gone.into_iter().map(|record| record.clone_id).collect();
        gone.dedup();
        for clone_id in gone {
            self.forget_observations(&clone_id);
        }
        for record in observations.all_unfinished() {
            if record.stopping {
                info!(clone_id = %record.clone_id, session_id = record.session_id, "finishing an interrupted observation stop");
                let engine = self.clone();
                let span = info_span!("observation", clone_id = %record.clone_id, session_id = record.session_id);
                self.inner.tasks.spawn(
                    async move {
                        if let Err(error) =
                            engine.stop_observation(&record.clone_id, record.overall_error).await
                        {
                            warn!(error = %error, "failed to finish an interrupted observation stop");
                        }
                    }
                    .instrument(span),
                );
                continue;
            }
            info!(clone_id = %record.clone_id, session_id = record.session_id, "resuming an observation session");
            let stop = self.inner.cancel.child_token();
            let (done_tx, done_rx) = oneshot::channel();
            let runner =
                Runner { session_id: record.session_id, stop: stop.clone(), done: done_rx };
            observations.resume(&record.clone_id, runner);
            self.spawn_session_loop(&record, stop, done_tx);
        }
        Ok(())
    }

    /// Forgets a destroyed clone's sessions: their loop, records and files.
    pub(crate) fn forget_observations(&self, clone_id: &str) {
        if let Err(error) = self.inner.observations.forget(&self.inner.store, clone_id) {
            warn!(clone_id, error = %error, "failed to forget a clone's observation sessions");
            return;
        }
        let dir = self.observations_dir().join(clone_id);
        if let Err(error) = std::fs::remove_dir_all(&dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            warn!(clone_id, error = %error, dir = %dir.display(), "failed to remove observation files");
        }
    }
}
