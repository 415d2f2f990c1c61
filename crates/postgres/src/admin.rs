//! Admin SQL on one instance: the clone's login role, other roles' passwords, sessions,
//! activity for idle detection, and CHECKPOINT.
//!
//! The engine connects as its admin role over the instance's private unix socket (trusted in
//! pg_hba.conf), with `application_name` [`ENGINE_APPLICATION_NAME`] so its own sessions are left
//! out of activity and termination. Passwords are turned into SCRAM-SHA-256 verifiers here, so
//! the plaintext never crosses the wire nor reaches the server's log.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_postgres::{Client, Config, NoTls};
use tracing::debug;

use crate::error::{Error, Result};
use crate::sql::{check_role_name, quote_ident, quote_literal};

/// The `application_name` of the engine's own sessions.
pub const ENGINE_APPLICATION_NAME: &str = "scion-engine";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The SCRAM-SHA-256 verifier of `password`, with a fresh random salt: what Postgres stores,
/// and all the engine keeps. It lets a server check the password but cannot be used to log in.
pub fn password_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

/// What the clone's login role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// A superuser (DBLab's default).
    Superuser,
    /// Not a superuser: may create databases, owns every non-template database, and has all
    /// privileges on the objects in their non-system schemas.
    Restricted,
}

/// Sessions on the instance, for idle detection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activity {
    /// The latest session start or state change of a client session (not the engine's); `None`
    /// when there has been none since the server started.
    pub last_activity: Option<SystemTime>,
    /// Client sessions, the engine's excluded.
    pub sessions: u64,
    /// Of those, the ones not idle (running a query or inside a transaction).
    pub busy_sessions: u64,
}

/// An admin session on one instance.
#[derive(Debug)]
pub struct Admin {
    client: Client,
    socket_dir: PathBuf,
    port: u16,
    role: String,
}

impl Admin {
    /// Connects as `role` to `database` over the unix socket in `socket_dir`.
    pub async fn connect(
        socket_dir: &Path,
        port: u16,
        role: &str,
        database: &str,
    ) -> Result<Admin> {
        let client_config = Self::config(socket_dir, port, role, database);
        let (client, connection) =
            client_config.connect(NoTls).await.map_err(Error::sql("connect as admin"))?;
        // The task ends by itself once the client is dropped: it sends Terminate and closes.
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "admin connection ended");
            }
        });
        Ok(Admin { client, socket_dir: socket_dir.to_path_buf(), port, role: role.to_owned() })
    }

    fn config(socket_dir: &Path, port: u16, role: &str, database: &str) -> Config {
        let mut config = Config::new();
        config
            .host_path(socket_dir)
            .port(port)
            .user(role)
            .dbname(database)
            .application_name(ENGINE_APPLICATION_NAME)
            .connect_timeout(CONNECT_TIMEOUT);
        config
    }

    /// True when the connection has ended (the server stopped, say).
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The underlying client, for statements this module does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates the clone's login role, or updates it if it exists: its password, its kind,
    /// LOGIN, and no expiry. The password is sent as a SCRAM-SHA-256 verifier.
    pub async fn create_or_replace_role(
        &self,
        name: &str,
        password: &str,
        kind: RoleKind,
    ) -> Result<()> {
        self.create_or_replace_role_with_verifier(name, &password_verifier(password), kind).await
    }

    /// Like [`Admin::create_or_replace_role`], from a verifier made earlier by
    /// [`password_verifier`]: the engine keeps only verifiers, and reapplies them when a clone is
    /// reset or rebuilt.
    pub async fn create_or_replace_role_with_verifier(
        &self,
        name: &str,
        verifier: &str,
        kind: RoleKind,
    ) -> Result<()> {
        check_role_name(name)?;
        if !verifier.starts_with("SCRAM-SHA-256$") {
            return Err(Error::InvalidRoleName {
                name: name.to_owned(),
                reason: "the password verifier is not a SCRAM-SHA-256 verifier".to_owned(),
            });
        }
        if name == self.role {
            return Err(Error::InvalidRoleName {
                name: name.to_owned(),
                reason: "this is the engine's admin role".to_owned(),
            });
        }
        let exists = self.role_exists(name).await?;
        let attributes = match kind {
            RoleKind::Superuser => "LOGIN SUPERUSER",
            RoleKind::Restricted => {
                "LOGIN NOSUPERUSER CREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
            }
        };
        let verb = if exists { "ALTER" } else { "CREATE" };
        let role = quote_ident(name);
        let statement = format!(
            "{verb} ROLE {role} {attributes} VALID UNTIL 'infinity' PASSWORD {}",
            quote_literal(verifier)
        );
        if kind == RoleKind::Superuser {
            return self.client.batch_execute(&statement).await.map_err(Error::sql("create role"));
        }
        let databases: Vec<String> = self
            .client
            .query("SELECT datname FROM pg_catalog.pg_database WHERE NOT datistemplate AND datallowconn", &[])
            .await
            .map_err(Error::sql("list databases"))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut batch = format!("BEGIN;\n{statement};\n");
        for database in &databases {
            batch.push_str(&format!("ALTER DATABASE {} OWNER TO {role};\n", quote_ident(database)));
        }
        batch.push_str("COMMIT;");
        self.client.batch_execute(&batch).await.map_err(Error::sql("create restricted role"))?;
        for database in &databases {
            self.grant_schemas(database, &role).await?;
        }
        Ok(())
    }

    async fn grant_schemas(&self, database: &str, role: &str) -> Result<()> {
        let admin = Admin::connect(&self.socket_dir, self.port, &self.role, database).await?;
        let schemas: Vec<String> = admin
            .client
            .query(
                "SELECT nspname FROM pg_catalog.pg_namespace \
                 WHERE nspname NOT IN ('pg_catalog', 'information_schema') \
                 AND nspname NOT LIKE 'pg\\_toast%' AND nspname NOT LIKE 'pg\\_temp\\_%'",
                &[],
            )
            .await
            .map_err(Error::sql("list schemas"))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut batch = String::from("BEGIN;\n");
        for schema in &schemas {
            let schema = quote_ident(schema);
            batch.push_str(&format!(
                "GRANT ALL ON SCHEMA {schema} TO {role};\n\
                 GRANT ALL ON ALL TABLES IN SCHEMA {schema} TO {role};\n\
                 GRANT ALL ON ALL SEQUENCES IN SCHEMA {schema} TO {role};\n\
                 GRANT ALL ON ALL FUNCTIONS IN SCHEMA {schema} TO {role};\n"
            ));
        }
        batch.push_str("COMMIT;");
        admin.client.batch_execute(&batch).await.map_err(Error::sql("grant on schemas"))
    }

    /// Removes the password of every login role except those in `keep`, so that no password
    /// carried over from the source works on this instance; returns the roles changed.
    ///
    /// `PASSWORD NULL` rather than a random password: the effect is the same (no password
    /// matches), and there is no secret to generate, hash or forget. The admin role keeps
    /// working through the trusted unix socket.
    pub async fn reset_passwords(&self, keep: &[&str]) -> Result<Vec<String>> {
        let keep: Vec<String> = keep.iter().map(|name| (*name).to_owned()).collect();
        let roles: Vec<String> = self
            .client
            .query(
                "SELECT rolname FROM pg_catalog.pg_authid \
                 WHERE rolcanlogin AND rolpassword IS NOT NULL AND NOT rolname = ANY($1)",
                &[&keep],
            )
            .await
            .map_err(Error::sql("list login roles"))?
            .iter()
            .map(|row| row.get(0))
            .collect();
        if roles.is_empty() {
            return Ok(roles);
        }
        let mut batch = String::from("BEGIN;\n");
        for role in &roles {
            batch.push_str(&format!("ALTER ROLE {} PASSWORD NULL;\n", quote_ident(role)));
        }
        batch.push_str("COMMIT;");
        self.client.batch_execute(&batch).await.map_err(Error::sql("reset passwords"))?;
        Ok(roles)
    }

    /// Terminates every client session except the engine's own; returns how many.
    pub async fn terminate_sessions(&self) -> Result<u64> {
        let row = self
            .client
            .query_one(
                "SELECT count(pg_catalog.pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid() \
                 AND NOT (application_name = $1 AND usename = $2)",
                &[&ENGINE_APPLICATION_NAME, &self.role],
            )
            .await
            .map_err(Error::sql("terminate sessions"))?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }

    /// The instance's client sessions, the engine's excluded, for idle detection.
    pub async fn activity(&self) -> Result<Activity> {
        let row = self
            .client
            .query_one(
                "SELECT extract(epoch FROM max(greatest(backend_start, state_change)))::float8, \
                        count(*), count(*) FILTER (WHERE state IS DISTINCT FROM 'idle') \
                 FROM pg_catalog.pg_stat_activity \
                 WHERE backend_type = 'client backend' AND pid <> pg_catalog.pg_backend_pid() \
                 AND NOT (application_name = $1 AND usename = $2)",
                &[&ENGINE_APPLICATION_NAME, &self.role],
            )
            .await
            .map_err(Error::sql("read activity"))?;
        let last: Option<f64> = row.get(0);
        let last_activity = last
            .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
            .map(|seconds| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds));
        let count = |index: usize| u64::try_from(row.get::<_, i64>(index)).unwrap_or(0);
        Ok(Activity { last_activity, sessions: count(1), busy_sessions: count(2) })
    }

    /// Whether a role named `name` exists.
    pub async fn role_exists(&self, name: &str) -> Result<bool> {
        let row = self
            .client
            .query_opt("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1", &[&name])
            .await
            .map_err(Error::sql("look up role"))?;
        Ok(row.is_some())
    }

    /// Commits this session's later transactions without waiting for their WAL to reach the
    /// disk (`synchronous_commit = off`): the WAL writer flushes it within a few hundred
    /// milliseconds, and a crash before that loses those transactions whole, never half. For
    /// changes the caller can make again after a crash.
    pub async fn commit_without_waiting(&self) -> Result<()> {
        self.client
            .batch_execute("SET synchronous_commit = off")
            .await
            .map_err(Error::sql("set synchronous_commit"))
    }

    /// Makes `name` log in over TLS with a client certificate instead of a password (a member
    /// of [`crate::conf::CERT_LOGIN_ROLE`], which pg_hba.conf's `cert` rule names), or no
    /// longer. The group is created when missing; a role carried in a snapshot from a clone
    /// that had a certificate loses the membership when its new clone has none.
    pub async fn set_cert_login(&self, name: &str, on: bool) -> Result<()> {
        check_role_name(name)?;
        let group = crate::conf::CERT_LOGIN_ROLE;
        let member = self
            .client
            .query_opt(
                "SELECT 1 FROM pg_catalog.pg_auth_members m \
                 JOIN pg_catalog.pg_roles g ON g.oid = m.roleid \
                 JOIN pg_catalog.pg_roles u ON u.oid = m.member \
                 WHERE g.rolname = $1 AND u.rolname = $2",
                &[&group, &name],
            )
            .await
            .map_err(Error::sql("look up certificate login"))?
            .is_some();
        let (group, role) = (quote_ident(group), quote_ident(name));
        let statement = match (on, member) {
            (true, false) => format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {}) \
                 THEN CREATE ROLE {group} NOLOGIN; END IF; END $$;\nGRANT {group} TO {role};",
                quote_literal(crate::conf::CERT_LOGIN_ROLE)
            ),
            (false, true) => format!("REVOKE {group} FROM {role};"),
            _ => return Ok(()),
        };
        self.client.batch_execute(&statement).await.map_err(Error::sql("set certificate login"))
    }

    /// Asks the server to read its configuration files again (`pg_reload_conf()`): pg_hba.conf
    /// and the TLS files among them, without a restart. Returns once the postmaster has been
    /// signalled; it reloads a moment later.
    pub async fn reload_conf(&self) -> Result<()> {
        self.client
            .batch_execute("SELECT pg_catalog.pg_reload_conf()")
            .await
            .map_err(Error::sql("reload the configuration"))
    }

    /// Runs CHECKPOINT, so a snapshot taken next needs little WAL replay.
    pub async fn checkpoint(&self) -> Result<()> {
        self.client.batch_execute("CHECKPOINT").await.map_err(Error::sql("checkpoint"))
    }
}
