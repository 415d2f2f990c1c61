//! Live configuration: a reloaded [`EngineConfig`] replaces the running one without restarting
//! the engine or any clone. [`split`] (a pure function) decides which keys take the new value
//! and which keep the running one until a restart; [`Engine::reconfigure`] applies the result.
//!
//! Which keys apply when is documented in `docs/configuration.md`; keep the two together.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tracing::{info, warn};

use crate::Engine;
use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::physical::Retrieval;
use crate::sync::write;

/// What a reload did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconfigured {
    /// Whether anything changed.
    pub changed: bool,
    /// Keys whose new value waits for a restart (the running value is kept), as
    /// `section.key`.
    pub restart_needed: Vec<&'static str>,
}

/// Splits `new` against `running`: the result is `new` with every key that cannot change while
/// the engine runs set back to its running value, and the names of those keys that differed.
///
/// Restart-only: the servers' OS user, the admin role, the binaries' directories, the initdb
/// major (the engine looked them up or made clusters with them at start), the warm pool's size
/// (its loop starts with the engine), and the whole `[retrieval]` section in physical mode or
/// with continuous refresh, which the sync instance runs on (to or from those modes, too).
pub fn split(running: &EngineConfig, new: &EngineConfig) -> (EngineConfig, Vec<&'static str>) {
    let mut applied = new.clone();
    let mut pinned = Vec::new();
    let mut keep = |differs: bool, key: &'static str, reset: &mut dyn FnMut()| {
        if differs {
            pinned.push(key);
            reset();
        }
    };
    keep(running.clone.os_user != new.clone.os_user, "clone.os_user", &mut || {
        applied.clone.os_user = running.clone.os_user.clone();
    });
    keep(running.clone.admin_role != new.clone.admin_role, "clone.admin_role", &mut || {
        applied.clone.admin_role = running.clone.admin_role.clone();
    });
    keep(running.clone.bin_dirs != new.clone.bin_dirs, "clone.bin_dirs", &mut || {
        applied.clone.bin_dirs = running.clone.bin_dirs.clone();
    });
    keep(running.clone.initdb_major != new.clone.initdb_major, "clone.initdb_major", &mut || {
        applied.clone.initdb_major = running.clone.initdb_major;
    });
    keep(
        running.cloning.warm_pool_size != new.cloning.warm_pool_size,
        "cloning.warm_pool_size",
        &mut || applied.cloning.warm_pool_size = running.cloning.warm_pool_size,
    );
    // The CA is loaded at start, and every server's certificate was issued under the section.
    keep(running.tls != new.tls, "tls", &mut || applied.tls = running.tls.clone());
    // Logical retrieval is only settings until its next run, so it may come, change or go;
    // the sync instance of physical mode and of continuous refresh runs on the section all
    // the time.
    let live = |config: &EngineConfig| {
        config
            .retrieval
            .as_ref()
            .is_some_and(|retrieval| retrieval.physical.is_some() || retrieval.continuous.is_some())
    };
    if (live(running) || live(new)) && running.retrieval != new.retrieval {
        pinned.push("retrieval");
        applied.retrieval = running.retrieval.clone();
    }
    (applied, pinned)
}

impl Engine {
    /// Replaces the running configuration with `new`, keeping the running value of every key
    /// [`split`] names, without stopping any clone, warm clone or retrieval.
    ///
    /// At once: leases, idle cleanup, retention, the loops' intervals (from their next pass),
    /// the access host shown in connection strings. For the next clone (and the next start of
    /// any server): the port range (clones keep the ports they hold, inside the new range or
    /// not) and the `[clone]` server settings. For the next refresh: logical retrieval's
    /// settings and timetable.
    ///
    /// Refused, with nothing changed, when `new` is invalid, or when it changes retrieval
    /// while a refresh runs.
    pub fn reconfigure(&self, new: &EngineConfig) -> Result<Reconfigured> {
        new.validate().map_err(|error| Error::InvalidInput(error.to_string()))?;
        let running = self.config();
        let (applied, restart_needed) = split(&running, new);
        for key in &restart_needed {
            warn!(key, "configuration change needs a restart; the running value is kept");
        }
        if applied == *running {
            return Ok(Reconfigured { changed: false, restart_needed });
        }
        if applied.retrieval != running.retrieval {
            self.swap_retrieval(&applied)?;
        }
        self.inner.servers.reconfigure(&applied);
        self.inner.ports.set_range(applied.cloning.port_from..=applied.cloning.port_to);
        *write(&self.inner.config) = Arc::new(applied);
        self.update_next_refresh();
        self.inner.reconfigured.notify_one();
        info!("configuration reloaded");
        Ok(Reconfigured { changed: true, restart_needed })
    }

    /// Builds logical retrieval from `config` and puts it in place of the running one, unless a
    /// refresh runs (it keeps the retrieval it started with; its progress shows in `/status`).
    fn swap_retrieval(&self, config: &EngineConfig) -> Result<()> {
        // Held like a running refresh while the retrieval is replaced, so none starts between
        // the check and the swap.
        if self
            .inner
            .refresh_running
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Err(Error::Refused(
                "retrieval settings cannot change while a refresh runs; try again after it"
                    .to_owned(),
            ));
        }
        let built = match &config.retrieval {
            Some(retrieval) => Retrieval::new(
                retrieval,
                self.inner.servers.binaries(),
                self.inner.servers.os_user(),
            )
            .map(Some),
            None => Ok(None),
        };
        if let Ok(retrieval) = &built {
            *write(&self.inner.retrieval) = retrieval.clone();
        }
        self.inner.refresh_running.store(false, Ordering::SeqCst);
        built.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_keys_apply_and_restart_only_keys_keep_their_running_value() {
        let running = EngineConfig::default();
        let mut new = running.clone();
        new.cloning.port_from = 7000;
        new.cloning.port_to = 7010;
        new.cloning.max_idle_minutes = 5.0;
        new.clone.os_user = "someone".to_owned();
        new.clone.shared_buffers = "64MB".to_owned();
        new.cloning.warm_pool_size = 2;
        let (applied, pinned) = split(&running, &new);
        assert_eq!(applied.cloning.port_from, 7000);
        assert_eq!(applied.cloning.max_idle_minutes, 5.0);
        assert_eq!(applied.clone.shared_buffers, "64MB");
        assert_eq!(applied.clone.os_user, running.clone.os_user);
        assert_eq!(applied.cloning.warm_pool_size, 0);
        assert_eq!(pinned, vec!["clone.os_user", "cloning.warm_pool_size"]);
    }

    #[test]
    fn logical_retrieval_changes_apply_but_physical_mode_waits_for_a_restart() {
        let logical = retrieval::RetrievalConfig::default();
        let running = EngineConfig { retrieval: Some(logical.clone()), ..Default::default() };
        let mut new = running.clone();
        if let Some(retrieval) = new.retrieval.as_mut() {
            retrieval.dump.parallel_jobs = 4;
        }
        assert_eq!(split(&running, &new), (new.clone(), vec![]));
        let none = EngineConfig::default();
        assert_eq!(split(&running, &none), (none.clone(), vec![]));
        assert_eq!(split(&none, &running), (running.clone(), vec![]));
        let mut physical = running.clone();
        if let Some(retrieval) = physical.retrieval.as_mut() {
            retrieval.physical = Some(retrieval::PhysicalConfig::default());
        }
        assert_eq!(split(&running, &physical), (running.clone(), vec!["retrieval"]));
        assert_eq!(split(&physical, &none), (physical.clone(), vec!["retrieval"]));
    }
}
