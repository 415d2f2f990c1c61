//! The test engine: a pool, a state directory, a configuration and recorded events.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use engine::{
    CloneRequest, CloneState, CloneView, Engine, EngineConfig, EngineDeps, MinFreeSpace, Pool,
    RecordedEvents,
};
use test_support::{PoolKind, TestPool, free_port_range};
use tokio_postgres::{Client, NoTls};

pub(crate) const PASSWORD: &str = "Sc1on-test-pass!";
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct TestEngine {
    pub(crate) engine: Engine,
    pub(crate) events: Arc<RecordedEvents>,
    pub(crate) config: EngineConfig,
    pub(crate) state_dir: PathBuf,
    pub(crate) min_free: MinFreeSpace,
    // Dropped last: it stops the servers inside the pool and detaches it.
    pub(crate) pool: TestPool,
}

pub(crate) fn config(ports: u16) -> EngineConfig {
    let mut config = EngineConfig::default();
    let range = free_port_range(ports);
    config.cloning.port_from = *range.start();
    config.cloning.port_to = *range.end();
    config.cloning.max_idle_minutes = 0.0;
    config
}

impl TestEngine {
    pub(crate) async fn start(config: EngineConfig) -> TestEngine {
        TestEngine::start_on(PoolKind::Btrfs, config).await
    }

    /// An engine on a pool of `kind`.
    pub(crate) async fn start_on(kind: PoolKind, config: EngineConfig) -> TestEngine {
        TestEngine::start_sized(kind, 1024, MinFreeSpace::default(), config).await
    }

    /// An engine on a pool of `kind` and `size_mib` that keeps `min_free` free.
    pub(crate) async fn start_sized(
        kind: PoolKind,
        size_mib: u64,
        min_free: MinFreeSpace,
        config: EngineConfig,
    ) -> TestEngine {
        let pool = TestPool::new(kind, size_mib).await;
        let state_dir = pool.scratch("state");
        let (engine, events) = start_engine(&pool, &state_dir, min_free, config.clone()).await;
        TestEngine { engine, events, config, state_dir, min_free, pool }
    }

    /// Stops this engine (its clone servers keep running) and starts a new one on the same
    /// pool and state directory, as after an engine restart.
    pub(crate) async fn restart(&mut self) {
        self.engine.shutdown(Duration::from_secs(30)).await;
        let (engine, events) =
            start_engine(&self.pool, &self.state_dir, self.min_free, self.config.clone()).await;
        self.engine = engine;
        self.events = events;
    }

    pub(crate) async fn create(&self, id: &str) -> CloneView {
        self.engine.create_clone(request(id)).await.expect("create clone");
        self.ready(id).await
    }

    pub(crate) async fn ready(&self, id: &str) -> CloneView {
        let view = self
            .engine
            .wait_settled(id, READY_TIMEOUT)
            .await
            .expect("wait for clone")
            .expect("the clone exists");
        assert_eq!(view.record.state, CloneState::Ok, "{}", view.record.state_message);
        view
    }

    /// Stops every server and the engine, then destroys `clone`'s dataset behind its back.
    pub(crate) async fn lose_dataset(&mut self, clone: &CloneView) {
        test_support::stop_postmasters_under(self.pool.mountpoint());
        self.engine.shutdown(Duration::from_secs(10)).await;
        let storage = self.pool.open().await;
        storage::ThinStorage::destroy_dataset(
            &storage,
            &storage::DatasetName::new(clone.record.dataset.clone()).unwrap(),
            storage::DestroyMode::Refuse,
        )
        .await
        .unwrap();
    }

    pub(crate) async fn wait_gone(&self, id: &str) {
        let gone = self.engine.wait_settled(id, READY_TIMEOUT).await.expect("wait for clone");
        assert!(gone.is_none(), "clone {id} still exists: {gone:?}");
    }
}

async fn start_engine(
    pool: &TestPool,
    state_dir: &std::path::Path,
    min_free: MinFreeSpace,
    config: EngineConfig,
) -> (Engine, Arc<RecordedEvents>) {
    let events = Arc::new(RecordedEvents::default());
    let deps = EngineDeps {
        pool: Pool::new("test_pool", pool.open().await).unwrap().with_min_free(min_free),
        state_dir: state_dir.to_path_buf(),
        events: events.clone(),
        version: "test".to_owned(),
    };
    (Engine::start(config, deps).await.expect("start the engine"), events)
}

pub(crate) fn request(id: &str) -> CloneRequest {
    CloneRequest {
        id: Some(id.to_owned()),
        username: "tester".to_owned(),
        password: PASSWORD.to_owned(),
        ..CloneRequest::default()
    }
}

/// The `psql` of the default major (a sandboxed clone sees it at the same path as the host).
pub(crate) fn psql() -> PathBuf {
    let binaries = postgres::BinarySearch::default()
        .locate(postgres::PgMajor::new(EngineConfig::default().clone.initdb_major).unwrap())
        .unwrap();
    binaries.tool("psql").unwrap()
}

/// Connects to a clone over TCP with its user's password.
pub(crate) async fn connect(
    view: &CloneView,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    connect_as(view, &view.record.username, password).await
}

/// Connects to a clone over TCP as another role than the clone's user.
pub(crate) async fn connect_as(
    view: &CloneView,
    user: &str,
    password: &str,
) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(view.record.port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}
