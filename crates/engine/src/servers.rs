//! Clone servers: the one component that knows how a clone's Postgres server is specified,
//! started, adopted, stopped and administered.
//!
//! It owns the binaries of every major, the OS user servers run as, each server's socket
//! directory and log file under the state directory, the running [`Instance`] handles of
//! user clones, admin sessions and the clones' roles. [`Servers::spec`] is the only place in
//! the engine that builds an [`InstanceSpec`], so that whatever a clone's server runs with
//! (its settings, its isolation from other clones) is decided at one spot. Storage is not its
//! business: callers make and destroy datasets and hand it data directories.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use postgres::{
    Admin, BinarySearch, HbaSettings, HbaTls, HostAuth, Instance, InstanceSpec, OsUser, PgBinaries,
    PgMajor, RoleKind, ServerSettings,
};
use tracing::{info, warn};

use crate::config::{CloneServerConfig, EngineConfig, HostAuthMethod};
use crate::error::{Error, Result};
use crate::model::{CloneRecord, WarmRecord};
use crate::quota::{CloneLimits, Quotas};
use crate::sync::lock;
use crate::tls::Tls;

/// How long a server gets to stop cleanly before it is stopped harder.
const STOP_STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The state directory's empty directory that every clone's private root is built on, inside
/// the clone's own mount namespace only.
pub(crate) const SANDBOX_ROOT: &str = "sandbox";

/// Settings every clone starts with unless the configuration or the request says otherwise.
///
/// No logical replication apply workers: a clone of a subscriber must not pull changes from the
/// source's publishers (nor advance their slots), and without workers the launcher process is
/// not started at all, which saves a process and about 2 ms of CPU per start.
const CLONE_DEFAULT_SETTINGS: &[(&str, &str)] = &[("max_logical_replication_workers", "0")];

static NO_SETTINGS: BTreeMap<String, String> = BTreeMap::new();

/// The sync instance's name for its socket directory and log file.
const SYNC_NAME: &str = "sync";
/// The port number the sync instance's socket file is named after: it listens on no TCP port
/// and its socket directory is its own, so the number only has to be valid.
const SYNC_PORT: u16 = 5432;

/// Which server: its port, the name its log file takes, and its own settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Server<'a> {
    port: u16,
    log_name: &'a str,
    extra_conf: &'a BTreeMap<String, String>,
    /// The clone's own limits, over the configuration's.
    limits: CloneLimits,
    /// The port its control group is named after: the clone's own, whichever port its server
    /// listens on, so that its usage and its removal follow the clone.
    group_port: u16,
    /// The engine holds the clone's TCP port (scale to zero, `wake.rs`): the server listens on
    /// its private port ([`CloneRecord::server_port`]) on the loopback address only, and the
    /// engine carries the clone port's connections to it.
    fronted: bool,
}

impl<'a> Server<'a> {
    /// A user clone's server: always derived from its record, so a restart after a reboot
    /// gets the same port, socket and settings. A claimed warm clone's server keeps its own
    /// port ([`CloneRecord::server_port`]).
    pub(crate) fn of_clone(record: &'a CloneRecord) -> Server<'a> {
        Server {
            port: record.socket_port(),
            log_name: &record.id,
            extra_conf: &record.extra_conf,
            limits: record.limits,
            group_port: record.port,
            fronted: false,
        }
    }

    /// The server's own limits (the configuration's apply over them: `Servers::limits_of`).
    pub(crate) fn own_limits(&self) -> CloneLimits {
        self.limits
    }

    /// The same server behind the engine's listener on the clone's port: TCP on the loopback
    /// address only, on its private port.
    pub(crate) fn fronted(self) -> Server<'a> {
        Server { fronted: true, ..self }
    }

    /// A warm clone's server, with no settings of its own.
    pub(crate) fn of_warm(record: &'a WarmRecord) -> Server<'a> {
        Server {
            port: record.port,
            log_name: &record.id,
            extra_conf: &NO_SETTINGS,
            limits: CloneLimits::default(),
            group_port: record.port,
            fronted: false,
        }
    }
}

/// Where a fronted server listens (its private port): loopback only, so that nothing but this
/// host reaches it, and the TLS handshake the engine carries there is the server's own.
pub(crate) const FRONTED_LISTEN_ADDRESS: &str = "127.0.0.1";

/// Where a connection the engine accepts on a clone's port is carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CarryTarget {
    /// The server's TCP port: the client's TLS handshake goes through to the server.
    Tcp(std::net::SocketAddr),
    /// The server's unix socket, which offers no TLS.
    Socket(PathBuf),
}

impl std::fmt::Display for CarryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CarryTarget::Tcp(address) => write!(f, "{address}"),
            CarryTarget::Socket(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The extensions one installed major offers, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MajorExtensions {
    /// The major.
    pub major: PgMajor,
    /// The server binaries' directory the engine uses for it.
    pub bin_dir: PathBuf,
    /// The extensions it can create, sorted.
    pub extensions: Vec<String>,
}

/// The clone servers.
#[derive(Debug)]
pub(crate) struct Servers {
    /// Replaced whole by a configuration reload: the next start of any server renders it.
    config: RwLock<Arc<CloneServerConfig>>,
    keep_user_passwords: AtomicBool,
    binaries: BinarySearch,
    os_user: OsUser,
    state_dir: PathBuf,
    /// The servers of user clones, by clone ID (warm clones hold their own).
    running: Mutex<HashMap<String, Instance>>,
    /// What each installed major offers, as the last [`Servers::refresh_extensions`] read it.
    extensions: RwLock<Vec<MajorExtensions>>,
    /// The control groups limited servers run in.
    quotas: Quotas,
    /// The CA and the servers' certificates.
    tls: Tls,
}

impl Servers {
    /// Looks up the OS user and the binaries' directories from the configuration; sockets
    /// and logs go under `state_dir`.
    pub(crate) fn new(config: &EngineConfig, state_dir: &Path) -> Result<Servers> {
        let os_user = OsUser::lookup(&config.clone.os_user)?;
        let mut binaries = BinarySearch::default();
        let bin_dirs =
            config.clone.bin_dirs().map_err(|error| Error::InvalidInput(error.to_string()))?;
        for (major, dir) in bin_dirs {
            binaries.bin_dirs.push((major, dir));
        }
        let tls = Tls::new(&config.tls, &config.cloning.access_host, state_dir, os_user.clone());
        Ok(Servers {
            config: RwLock::new(Arc::new(config.clone.clone())),
            keep_user_passwords: AtomicBool::new(config.cloning.keep_user_passwords),
            binaries,
            os_user,
            state_dir: state_dir.to_path_buf(),
            running: Mutex::new(HashMap::new()),
            extensions: RwLock::new(Vec::new()),
            quotas: Quotas::new(state_dir),
            tls,
        })
    }

    /// Re-reads the extensions each installed major can create (its extension directory), for
    /// `/status`; called at start and by the collector loop, so a package installed while the
    /// engine runs shows up without a restart.
    pub(crate) fn refresh_extensions(&self) {
        let found = self
            .binaries
            .installed()
            .into_iter()
            .map(|binaries| {
                let extensions = binaries.available_extensions().unwrap_or_else(|error| {
                    warn!(major = %binaries.major(), %error, "cannot list the extensions");
                    Default::default()
                });
                MajorExtensions {
                    major: binaries.major(),
                    bin_dir: binaries.bin_dir().to_path_buf(),
                    extensions: extensions.into_iter().collect(),
                }
            })
            .collect();
        *crate::sync::write(&self.extensions) = found;
    }

    /// The extensions of every installed major, as last read.
    pub(crate) fn extensions(&self) -> Vec<MajorExtensions> {
        crate::sync::read(&self.extensions).clone()
    }

    /// Takes the settings of a reloaded configuration, for the next server started. The OS
    /// user and the binaries' directories stay those of the start (the reload keeps them).
    pub(crate) fn reconfigure(&self, config: &EngineConfig) {
        *crate::sync::write(&self.config) = Arc::new(config.clone.clone());
        self.keep_user_passwords.store(config.cloning.keep_user_passwords, Ordering::Relaxed);
        self.tls.set_access_host(&config.cloning.access_host);
    }

    /// The CA and the servers' certificates.
    pub(crate) fn tls(&self) -> &Tls {
        &self.tls
    }

    fn config(&self) -> Arc<CloneServerConfig> {
        crate::sync::read(&self.config).clone()
    }

    /// The log file of the server named `log_name` (a clone's ID, `sync`).
    pub(crate) fn log_path(&self, log_name: &str) -> PathBuf {
        self.log_file(log_name)
    }

    /// Where every major's binaries are looked up.
    pub(crate) fn binaries(&self) -> &BinarySearch {
        &self.binaries
    }

    /// The control groups of limited clones.
    pub(crate) fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// What `server` runs with: its own limits over the configuration's (as checked when the
    /// configuration was loaded).
    pub(crate) fn limits_of(&self, own: CloneLimits) -> CloneLimits {
        own.over(self.config().default_limits().unwrap_or_default())
    }

    /// The OS user servers (and retrieval's tools) run as.
    pub(crate) fn os_user(&self) -> &OsUser {
        &self.os_user
    }

    /// Makes an empty cluster of `major` in `pgdata`, owned by the servers' user.
    pub(crate) async fn initdb(&self, pgdata: &Path, major: PgMajor) -> Result<()> {
        let binaries = self.binaries.locate(major)?;
        let mut options = postgres::InitDbOptions::new(&self.config().admin_role);
        options.sync = true;
        postgres::initdb(&binaries, pgdata, &self.os_user, &options).await?;
        Ok(())
    }

    fn socket_dir(&self, port: u16) -> PathBuf {
        self.state_dir.join("sockets").join(port.to_string())
    }

    /// The unix socket a clone's server on `port` listens on.
    pub(crate) fn socket_path(&self, port: u16) -> PathBuf {
        ServerSettings::new(port, self.socket_dir(port)).socket_path()
    }

    /// Where the engine carries the connections it accepts on the port of clone `id`: its
    /// running server's port on the address its first listen address is reached at from this
    /// host (`wake::carry_address`), or its unix socket when it listens on no TCP address (a
    /// server a version before TLS-through-the-carry started behind the engine). `None` when
    /// the engine holds no running server of the clone.
    pub(crate) fn carry_target(&self, id: &str) -> Option<CarryTarget> {
        let running = lock(&self.running);
        let instance = running.get(id)?;
        let port = instance.spec().settings.port;
        Some(match instance.listen_address().and_then(crate::wake::carry_address) {
            Some(address) => CarryTarget::Tcp(std::net::SocketAddr::new(address, port)),
            None => CarryTarget::Socket(self.socket_path(port)),
        })
    }

    /// The addresses clone servers listen on (`[clone] listen_addresses`), which the engine
    /// binds instead while it holds a clone's port.
    pub(crate) fn listen_addresses(&self) -> String {
        self.config().listen_addresses.clone()
    }

    /// Whether the engine holds a running server's handle for clone `id`.
    pub(crate) fn is_running(&self, clone_id: &str) -> bool {
        lock(&self.running).contains_key(clone_id)
    }

    fn log_file(&self, log_name: &str) -> PathBuf {
        self.state_dir.join("logs").join(format!("{log_name}.log"))
    }

    /// The spec of `server` on `pgdata`: the only place a spec is built.
    fn spec(&self, server: Server<'_>, pgdata: &Path) -> InstanceSpec {
        let config = self.config();
        let mut settings = ServerSettings::new(server.port, self.socket_dir(server.port));
        settings.listen_addresses = if server.fronted {
            FRONTED_LISTEN_ADDRESS.to_owned()
        } else {
            config.listen_addresses.clone()
        };
        settings.shared_buffers = config.shared_buffers.clone();
        settings.max_connections = config.max_connections;
        // Later entries win: Scion's defaults, then the configuration, then the request's.
        settings.extra = CLONE_DEFAULT_SETTINGS
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .chain(
                config
                    .settings
                    .iter()
                    .chain(server.extra_conf)
                    .map(|(name, value)| (name.clone(), value.clone())),
            )
            .collect();
        let mut spec = InstanceSpec::new(
            pgdata.to_path_buf(),
            settings,
            &config.admin_role,
            self.log_file(server.log_name),
            self.os_user.clone(),
        );
        spec.hba = HbaSettings {
            host_auth: match config.host_auth {
                HostAuthMethod::ScramSha256 => HostAuth::ScramSha256,
                HostAuthMethod::Md5 => HostAuth::Md5,
                HostAuthMethod::Trust => HostAuth::Trust,
            },
            ..HbaSettings::new(&config.admin_role)
        };
        spec.start_timeout = config.start_timeout;
        // A wake's client is carried to the server as soon as it accepts connections: a
        // confirming admin connection first would only make it wait for that one's login.
        spec.confirm_start = !server.fronted;
        // Each clone in namespaces of its own (docs/adr/0002-clone-isolation.md).
        spec.sandbox_root = Some(self.state_dir.join(SANDBOX_ROOT));
        if self.tls.enabled() {
            // Its own certificate only, read-only: the CA's key is nowhere in its view.
            spec.settings.tls = Some(self.tls.server_files(server.port));
            spec.hba.tls = Some(HbaTls { plain: self.tls.allow_plain() });
            spec.read_only_dirs.push(self.tls.server_dir(server.port));
        }
        spec
    }

    /// The sync instance's spec on `pgdata`: a clone's (sandboxed, the admin path over a
    /// private socket) with no TCP at all, no login but the engine's, the settings a standby
    /// needs at least as high as its primary's (`minimums`, from pg_control), then the sync
    /// instance's own `configs`. Nothing of the clones' settings: it is not a clone. Its
    /// sandbox shows the replication password files and `restore_dirs` (what its
    /// `restore_command` reads: a WAL archive, a backup tool's configuration and repository),
    /// read-only.
    fn sync_spec(
        &self,
        pgdata: &Path,
        configs: &BTreeMap<String, String>,
        minimums: &[(&str, u64)],
        restore_dirs: &[PathBuf],
    ) -> InstanceSpec {
        let server = Server {
            port: SYNC_PORT,
            log_name: SYNC_NAME,
            extra_conf: &NO_SETTINGS,
            limits: CloneLimits::default(),
            group_port: SYNC_PORT,
            fronted: false,
        };
        let mut spec = self.spec(server, pgdata);
        spec.settings.socket_dir = self.state_dir.join("sockets").join(SYNC_NAME);
        spec.settings.listen_addresses = String::new();
        let mut extra = Vec::new();
        for (name, value) in minimums {
            if *name == "max_connections" {
                let value = u32::try_from(*value).unwrap_or(u32::MAX);
                spec.settings.max_connections = spec.settings.max_connections.max(value);
            } else {
                extra.push(((*name).to_owned(), value.to_string()));
            }
        }
        extra.extend(configs.iter().map(|(name, value)| (name.clone(), value.clone())));
        spec.settings.extra = extra;
        spec.hba.host_auth = HostAuth::Reject;
        spec.hba.host_networks = Vec::new();
        // No TCP, so no TLS: its view holds no certificate.
        spec.settings.tls = None;
        spec.hba.tls = None;
        // The walreceiver reads the replication password file named in primary_conninfo.
        spec.read_only_dirs = vec![self.state_dir.join(crate::physical::PASSFILE_DIR)];
        spec.read_only_dirs.extend(restore_dirs.iter().cloned());
        spec
    }

    /// The sync instance's log file.
    pub(crate) fn sync_log_file(&self) -> PathBuf {
        self.log_file(SYNC_NAME)
    }

    /// Starts the sync instance on `pgdata` (a standby's data directory) with `configs`,
    /// showing it `restore_dirs`.
    pub(crate) async fn start_sync(
        &self,
        pgdata: &Path,
        configs: &BTreeMap<String, String>,
        restore_dirs: &[PathBuf],
    ) -> Result<Instance> {
        let binaries = self.binaries_for(pgdata)?;
        let control = postgres::read_control_data(&self.binaries, pgdata).await?;
        let raised = postgres::standby::raise_to_primary(pgdata, &control, &self.os_user)?;
        if !raised.is_empty() {
            info!(settings = ?raised, "the standby's settings follow the primary's new minimums");
        }
        let spec = self.sync_spec(pgdata, configs, &control.hot_standby_minimums(), restore_dirs);
        Ok(Instance::start(&binaries, spec).await?)
    }

    /// Adopts the sync instance running on `pgdata`, if one runs.
    pub(crate) async fn adopt_sync(&self, pgdata: &Path) -> Option<Instance> {
        if !postgres::datadir::has_postmaster_pid(pgdata) {
            return None;
        }
        let adopted = match self.binaries_for(pgdata) {
            Ok(binaries) => {
                Instance::adopt(&binaries, self.sync_spec(pgdata, &NO_SETTINGS, &[], &[]))
                    .await
                    .map_err(Error::from)
            }
            Err(error) => Err(error),
        };
        match adopted {
            Ok(instance) => Some(instance),
            Err(error) => {
                info!(data_dir = %pgdata.display(), error = %error, "no running sync instance to adopt");
                None
            }
        }
    }

    /// Stops the sync instance cleanly (a standby's fast shutdown writes a restartpoint).
    pub(crate) async fn stop_sync(&self, instance: Instance) -> Result<()> {
        instance.stop(postgres::StopMode::Fast, STOP_STEP_TIMEOUT).await?;
        Ok(())
    }

    /// Stops at once a server that an interrupted operation left running on `pgdata` (a
    /// promotion's or a restore's temporary server: no record owns it), so that its dataset can
    /// go. Returns whether one ran.
    pub(crate) async fn stop_leftover(&self, pgdata: &Path) -> bool {
        if !postgres::datadir::has_postmaster_pid(pgdata) {
            return false;
        }
        let found = match self.binaries_for(pgdata) {
            Ok(binaries) => {
                Instance::find_leftover(&binaries, self.sync_spec(pgdata, &NO_SETTINGS, &[], &[]))
                    .map_err(Error::from)
            }
            Err(error) => Err(error),
        };
        match found {
            Ok(Some(instance)) => {
                let pid = instance.pid();
                match instance.stop(postgres::StopMode::Immediate, STOP_STEP_TIMEOUT).await {
                    Ok(_) => {
                        info!(data_dir = %pgdata.display(), pid, "stopped a server an interrupted operation left")
                    }
                    Err(error) => {
                        warn!(data_dir = %pgdata.display(), error = %error, "failed to stop a server an interrupted operation left")
                    }
                }
                true
            }
            Ok(None) => false,
            Err(error) => {
                warn!(data_dir = %pgdata.display(), error = %error, "failed to look for a server an interrupted operation left");
                false
            }
        }
    }

    /// The binaries of the major the data directory was made with.
    fn binaries_for(&self, pgdata: &Path) -> Result<PgBinaries> {
        Ok(self.binaries.locate(PgMajor::of_data_dir(pgdata)?)?)
    }

    /// Starts `server` on `pgdata`, in a control group with its limits when it has any.
    pub(crate) async fn start(&self, server: Server<'_>, pgdata: &Path) -> Result<Instance> {
        let binaries = self.binaries_for(pgdata)?;
        if self.tls.enabled() {
            self.tls.ensure_server(server.port)?;
        }
        let mut spec = self.spec(server, pgdata);
        spec.cgroup = self.quotas.prepare(server.group_port, &self.limits_of(server.limits))?;
        Ok(Instance::start(&binaries, spec).await?)
    }

    /// Adopts `server` running on `pgdata` (started by an earlier run of the engine).
    pub(crate) async fn adopt(&self, server: Server<'_>, pgdata: &Path) -> Result<Instance> {
        let binaries = self.binaries_for(pgdata)?;
        Ok(Instance::adopt(&binaries, self.spec(server, pgdata)).await?)
    }

    /// Adopts `server` on `pgdata` when something may run there (a `postmaster.pid` is
    /// present) and it can be adopted; `None` when nothing runs.
    pub(crate) async fn adopt_if_running(
        &self,
        server: Server<'_>,
        pgdata: &Path,
    ) -> Option<Instance> {
        if !postgres::datadir::has_postmaster_pid(pgdata) {
            return None;
        }
        match self.adopt(server, pgdata).await {
            Ok(instance) => Some(instance),
            Err(error) => {
                info!(data_dir = %pgdata.display(), error = %error, "no running server to adopt");
                None
            }
        }
    }

    /// Keeps the handle of a user clone's running server.
    pub(crate) fn insert(&self, clone_id: &str, instance: Instance) {
        lock(&self.running).insert(clone_id.to_owned(), instance);
    }

    /// The postmaster of every user clone's server, by clone ID, for usage accounting (which
    /// finds their children in one pass over `/proc`, outside this lock).
    pub(crate) fn postmasters(&self) -> Vec<(String, u32)> {
        lock(&self.running).iter().map(|(id, instance)| (id.clone(), instance.pid())).collect()
    }

    /// Stops a user clone's server (the handle held, or the server found on `pgdata` when the
    /// handle is gone: a failed adoption, a crash mid-operation) whose data is about to be
    /// discarded (a reset, a destroy): at once, without the shutdown checkpoint, which would only write what is thrown away
    /// (thousands of buffers after a large delete). The immediate stop returns once every
    /// process of the server has exited (it escalates to SIGKILL if needed), so the dataset
    /// can go. A commit of the clone is unharmed: its CHECKPOINT has written what it promises
    /// before its atomic storage snapshot, so a snapshot taken before or after the server quits
    /// holds the same committed data.
    pub(crate) async fn discard(&self, record: &CloneRecord, pgdata: &Path) -> Result<()> {
        self.stop_clone(record, pgdata, postgres::StopMode::Immediate).await
    }

    /// Stops a user clone's server whose data stays (scale to zero, `wake.rs`): a fast
    /// shutdown, whose checkpoint spares the next start a crash recovery.
    pub(crate) async fn stop(&self, record: &CloneRecord, pgdata: &Path) -> Result<()> {
        self.stop_clone(record, pgdata, postgres::StopMode::Fast).await
    }

    /// Stops a user clone's server in `mode`: the handle held, or the server found on `pgdata`
    /// when the handle is gone (a failed adoption, a crash mid-operation).
    async fn stop_clone(
        &self,
        record: &CloneRecord,
        pgdata: &Path,
        mode: postgres::StopMode,
    ) -> Result<()> {
        let held = lock(&self.running).remove(&record.id);
        let instance = match held {
            Some(instance) => instance,
            None => match self.adopt_if_running(Server::of_clone(record), pgdata).await {
                Some(instance) => instance,
                None => return Ok(()),
            },
        };
        instance.stop(mode, STOP_STEP_TIMEOUT).await?;
        Ok(())
    }

    /// Stops a server given up on after a failed step at once: nothing in it is anyone's yet.
    pub(crate) async fn stop_now(&self, instance: Instance) {
        let data_dir = instance.spec().data_dir.clone();
        if let Err(error) = instance.stop(postgres::StopMode::Immediate, STOP_STEP_TIMEOUT).await {
            warn!(error = %error, data_dir = %data_dir.display(), "failed to stop a server given up on");
        }
    }

    /// Removes a gone clone's socket directory and certificate.
    pub(crate) fn remove_socket_dir(&self, port: u16) {
        self.tls.remove_server(port);
        let socket_dir = self.socket_dir(port);
        if let Err(error) = std::fs::remove_dir_all(&socket_dir)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            warn!(error = %error, dir = %socket_dir.display(), "failed to remove socket directory");
        }
    }

    /// Gives a claimed warm clone's log the clone's name. The server keeps writing to the file
    /// it has open; only the name is off when this fails.
    pub(crate) fn rename_log(&self, from: &str, to: &str) {
        let (from, to) = (self.log_file(from), self.log_file(to));
        if from != to
            && let Err(error) = std::fs::rename(&from, &to)
        {
            warn!(error = %error, from = %from.display(), "failed to rename a warm clone's log");
        }
    }

    /// Removes a discarded warm clone's log.
    pub(crate) fn remove_log(&self, log_name: &str) {
        let log = self.log_file(log_name);
        if let Err(error) = std::fs::remove_file(&log)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            warn!(error = %error, log = %log.display(), "failed to remove a warm clone's log");
        }
    }

    /// A new admin session to a running clone, over its private socket, in database
    /// `postgres`: for work beside the clone's lifecycle (activity checks, commits).
    pub(crate) async fn admin_session(
        &self,
        record: &CloneRecord,
    ) -> Result<Admin, postgres::Error> {
        self.admin_session_in(record, "postgres").await
    }

    /// A new admin session to a running clone in `database` (an observation reads the
    /// statistics of the database it watches).
    pub(crate) async fn admin_session_in(
        &self,
        record: &CloneRecord,
        database: &str,
    ) -> Result<Admin, postgres::Error> {
        Admin::connect(
            &self.socket_dir(record.socket_port()),
            record.socket_port(),
            &self.config().admin_role,
            database,
        )
        .await
    }

    /// A user clone's log file.
    pub(crate) fn clone_log_file(&self, record: &CloneRecord) -> PathBuf {
        self.log_file(&record.id)
    }

    /// What every new server gets whoever it is for: the source's passwords removed (unless
    /// kept), except `keep`'s.
    pub(crate) async fn reset_passwords(&self, admin: &Admin, keep: &[&str]) -> Result<()> {
        if !self.keep_user_passwords.load(Ordering::Relaxed) {
            admin.reset_passwords(keep).await?;
        }
        Ok(())
    }

    /// Removes the source's passwords unless kept, and sets up the clone's login role.
    pub(crate) async fn configure_roles(&self, admin: &Admin, record: &CloneRecord) -> Result<()> {
        self.reset_passwords(admin, &[record.username.as_str()]).await?;
        self.create_clone_role(admin, record).await
    }

    /// Creates the clone's login role, or replaces it, from the record's verifier.
    ///
    /// The commit does not wait for the clone's WAL to reach the disk: on a pool whose flushes
    /// go through a loop device that wait is the slowest step of a warm clone's claim. The
    /// store holds the verifier durably, and a clone started again after a crash gets its role
    /// back if the crash lost it ([`Servers::restore_missing_role`]).
    pub(crate) async fn create_clone_role(
        &self,
        admin: &Admin,
        record: &CloneRecord,
    ) -> Result<()> {
        admin.commit_without_waiting().await?;
        let kind = if record.restricted { RoleKind::Restricted } else { RoleKind::Superuser };
        admin
            .create_or_replace_role_with_verifier(&record.username, &record.password_verifier, kind)
            .await?;
        admin.set_cert_login(&record.username, record.cert_login && self.tls.enabled()).await?;
        Ok(())
    }

    /// Reissues the certificates of servers that need it (`[tls] renew_before`, a new access
    /// host) and has each running one read its files again, without a restart. A server that
    /// does not run (a stopped clone's) reads them at its next start.
    pub(crate) async fn renew_certificates(&self) {
        if !self.tls.enabled() {
            return;
        }
        let admin_role = self.config().admin_role.clone();
        for port in self.tls.renew(&self.tls.server_ports()) {
            let socket_dir = self.socket_dir(port);
            if !self.socket_path(port).exists() {
                continue;
            }
            let reloaded = match Admin::connect(&socket_dir, port, &admin_role, "postgres").await {
                Ok(admin) => admin.reload_conf().await,
                Err(error) => Err(error),
            };
            match reloaded {
                Ok(()) => info!(port, "renewed a server certificate; the server reloaded it"),
                Err(error) => {
                    warn!(port, %error, "renewed a server certificate, but its server did not reload")
                }
            }
        }
    }

    /// Sets the clone's role up again when it is missing: its creation commits without
    /// waiting for the disk, so a host crash right after a create can lose it. Returns whether
    /// it was missing.
    pub(crate) async fn restore_missing_role(
        &self,
        instance: &mut Instance,
        record: &CloneRecord,
    ) -> Result<bool> {
        let admin = instance.admin().await?;
        if admin.role_exists(&record.username).await? {
            return Ok(false);
        }
        self.create_clone_role(&admin, record).await?;
        Ok(true)
    }
}
