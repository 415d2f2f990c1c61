//! Admin SQL with hostile role names and passwords, checked by logging in over TCP.

use postgres::{Instance, PgMajor, RoleKind, StopMode};

use crate::support::{
    ADMIN, STEP, Sandbox, assert_login, assert_login_refused, binaries, per_major, tcp_connect,
};

/// Names and passwords that break naive quoting.
const HOSTILE: &[(&str, &str, RoleKind)] = &[
    ("a\"b", "pa'ss\"word", RoleKind::Superuser),
    ("x'; DROP ROLE postgres; --", r"back\slash \' and spaces ", RoleKind::Restricted),
    ("ünïcødé 名前 ✓", "pässwörd ✓ 🔑", RoleKind::Superuser),
    ("Mixed Case$", "$$ dollar $q$ quotes $$", RoleKind::Restricted),
];

async fn hostile_roles(major: PgMajor) {
    let sandbox = Sandbox::new();
    let spec = sandbox.cluster(major, "data").await;
    let port = spec.settings.port;
    let mut instance = Instance::start(&binaries(major), spec.clone()).await.unwrap();
    let admin = instance.admin().await.unwrap();

    for (name, password, kind) in HOSTILE {
        admin.create_or_replace_role(name, password, *kind).await.unwrap();
        assert_login(port, name, password).await;
        assert_login_refused(port, name, "wrong").await;
        let client = tcp_connect(port, name, password).await.unwrap();
        let row = client
            .query_one(
                "SELECT rolsuper, (SELECT datdba::regrole::text FROM pg_database WHERE datname = 'postgres') \
                 FROM pg_roles WHERE rolname = current_user",
                &[],
            )
            .await
            .unwrap();
        let superuser: bool = row.get(0);
        assert_eq!(superuser, *kind == RoleKind::Superuser, "{name:?}");
        if *kind == RoleKind::Restricted {
            let owner: String = row.get(1);
            assert_eq!(owner, postgres::sql::quote_ident(name), "{name:?} owns the database");
            // Owner of the database and its schema privileges: it can create and use tables.
            client.batch_execute("CREATE TABLE IF NOT EXISTS restricted_ok (n int)").await.unwrap();
            assert!(client.batch_execute("CREATE ROLE sneaky SUPERUSER").await.is_err());
        }
    }
    // The injection attempt did nothing: the admin role is still there.
    let row = admin
        .client()
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&ADMIN])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);

    // Replacing a role changes its password (and may change its kind).
    let (name, old_password, _) = HOSTILE[0];
    admin.create_or_replace_role(name, "new 'password'", RoleKind::Restricted).await.unwrap();
    assert_login_refused(port, name, old_password).await;
    assert_login(port, name, "new 'password'").await;

    // The admin role itself is not a clone role.
    assert!(admin.create_or_replace_role(ADMIN, "x", RoleKind::Superuser).await.is_err());
    // Names Postgres would truncate are refused rather than silently shortened.
    assert!(admin.create_or_replace_role(&"n".repeat(64), "x", RoleKind::Superuser).await.is_err());

    // Every other login role loses its password; the kept one still logs in.
    let (kept, kept_password, _) = HOSTILE[2];
    let mut reset = admin.reset_passwords(&[kept]).await.unwrap();
    reset.sort();
    let mut expected: Vec<String> =
        HOSTILE.iter().map(|(name, _, _)| (*name).to_owned()).filter(|name| name != kept).collect();
    expected.sort();
    assert_eq!(reset, expected);
    assert_login(port, kept, kept_password).await;
    assert_login_refused(port, HOSTILE[1].0, HOSTILE[1].1).await;
    drop(admin);
    instance.stop(StopMode::Fast, STEP).await.unwrap();
}
per_major!(hostile_roles);

async fn sessions_activity_and_checkpoint(major: PgMajor) {
    let sandbox = Sandbox::new();
    let spec = sandbox.cluster(major, "data").await;
    let port = spec.settings.port;
    let mut instance = Instance::start(&binaries(major), spec.clone()).await.unwrap();
    let admin = instance.admin().await.unwrap();

    // The engine's own session does not count.
    let quiet = admin.activity().await.unwrap();
    assert_eq!((quiet.sessions, quiet.busy_sessions), (0, 0));
    assert_eq!(quiet.last_activity, None);

    admin.create_or_replace_role("user1", "pw1", RoleKind::Superuser).await.unwrap();
    let idle = tcp_connect(port, "user1", "pw1").await.unwrap();
    let busy = tcp_connect(port, "user1", "pw1").await.unwrap();
    busy.batch_execute("BEGIN; SELECT 1").await.unwrap();
    let activity = admin.activity().await.unwrap();
    assert_eq!(activity.sessions, 2);
    assert_eq!(activity.busy_sessions, 1, "idle in transaction is not idle");
    let last = activity.last_activity.expect("sessions have activity");
    let age = std::time::SystemTime::now().duration_since(last).unwrap_or_default();
    assert!(age < std::time::Duration::from_secs(3600), "last activity {last:?} is not recent");

    admin.checkpoint().await.unwrap();
    assert_eq!(admin.terminate_sessions().await.unwrap(), 2);
    assert!(idle.simple_query("SELECT 1").await.is_err());
    assert!(busy.simple_query("SELECT 1").await.is_err());
    // The admin session survived its own termination sweep.
    admin.client().simple_query("SELECT 1").await.unwrap();
    drop(admin);
    instance.stop(StopMode::Fast, STEP).await.unwrap();
}
per_major!(sessions_activity_and_checkpoint);
