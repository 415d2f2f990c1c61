//! `scion config import-dblab server.yml`: DBLab Engine's configuration file turned into
//! Scion's TOML, with every key that cannot be carried over named with the reason. Every leaf
//! of the YAML is either carried or reported, so nothing is dropped silently.

use std::collections::BTreeSet;

use serde_yaml_ng::Value as Yaml;
use toml::{Table, Value as Toml};

/// What an import made: the TOML, and the keys left behind.
#[derive(Debug)]
pub(crate) struct Imported {
    pub(crate) toml: String,
    pub(crate) dropped: Vec<(String, String)>,
}

/// Converts DBLab's `server.yml` text (anchors and `<<:` merges resolved as DBLab's YAML 1.1
/// parser does) into Scion's configuration.
pub(crate) fn convert(yaml: &str) -> Result<Imported, String> {
    let mut doc: Yaml =
        serde_yaml_ng::from_str(yaml).map_err(|error| format!("not a YAML document: {error}"))?;
    doc.apply_merge().map_err(|error| format!("a `<<:` merge cannot be resolved: {error}"))?;
    if !doc.is_mapping() {
        return Err("not DBLab's server.yml: the document is not a mapping".to_owned());
    }
    let mut import =
        Import { doc: &doc, out: Table::new(), seen: BTreeSet::new(), dropped: vec![] };
    import.server();
    import.pool();
    import.cloning();
    import.retention();
    import.retrieval();
    import.webhooks();
    import.report_the_rest();
    let toml = toml::to_string_pretty(&import.out)
        .map_err(|error| format!("the TOML could not be written: {error}"))?;
    Ok(Imported { toml, dropped: import.dropped })
}

/// DBLab's retrieval jobs.
const JOBS: [&str; 5] =
    ["logicalDump", "logicalRestore", "logicalSnapshot", "physicalRestore", "physicalSnapshot"];

/// DBLab's sections that hold no setting of their own: YAML anchors merged elsewhere.
const ANCHOR_SECTIONS: [&str; 2] = ["databaseContainer", "databaseConfigs"];

struct Import<'a> {
    doc: &'a Yaml,
    out: Table,
    /// The YAML paths carried or reported.
    seen: BTreeSet<String>,
    dropped: Vec<(String, String)>,
}

impl<'a> Import<'a> {
    /// The value at a dotted path, marked as handled.
    fn take(&mut self, path: &str) -> Option<&'a Yaml> {
        let mut node = self.doc;
        for part in path.split('.') {
            node = node.get(part)?;
        }
        mark(node, path, &mut self.seen);
        Some(node)
    }

    /// Sets `key` in the section at `section` (dotted) of the output.
    fn set(&mut self, section: &str, key: &str, value: Toml) {
        let mut table = &mut self.out;
        for part in section.split('.').filter(|part| !part.is_empty()) {
            let entry = table.entry(part.to_owned()).or_insert_with(|| Toml::Table(Table::new()));
            let Toml::Table(inner) = entry else { return };
            table = inner;
        }
        table.insert(key.to_owned(), value);
    }

    /// Carries a scalar from `path` to `key` of `section`; DBLab's empty string means unset.
    fn carry(&mut self, path: &str, section: &str, key: &str) {
        match self.take(path).and_then(scalar) {
            Some(Toml::String(text)) if text.is_empty() => {}
            Some(value) => self.set(section, key, value),
            None => {}
        }
    }

    /// Reports what is under `path` as not carried, for `why`.
    fn drop(&mut self, path: &str, why: &str) {
        if self.take(path).is_some() {
            self.dropped.push((path.to_owned(), why.to_owned()));
        }
    }

    fn server(&mut self) {
        if let Some(host) = self.take("server.host").and_then(Yaml::as_str) {
            // DBLab's empty host listens on every interface.
            let host = if host.is_empty() { "0.0.0.0" } else { host };
            self.set("server", "host", Toml::String(host.to_owned()));
        }
        self.carry("server.port", "server", "port");
        self.carry("server.disableConfigModification", "server", "disable_config_modification");
        self.drop(
            "server.verificationToken",
            "secrets stay out of Scion's file: set SCION_VERIFICATION_TOKEN, or name a file with [server] verification_token_file",
        );
    }

    fn pool(&mut self) {
        if let Some(mount) = self.take("poolManager.mountDir").and_then(Yaml::as_str) {
            let why = format!(
                "DBLab finds its ZFS pools under a mount directory ({mount}); name the pool's dataset instead: [pool] backend = {{ kind = \"zfs\", pool = \"<pool>/<dataset>\" }} (or btrfs), or leave it out for the embedded pool"
            );
            self.dropped.push(("poolManager.mountDir".to_owned(), why));
        }
        for key in ["selectedPool", "dataSubDir", "clonesMountSubDir", "socketSubDir"] {
            self.drop(&format!("poolManager.{key}"), "Scion's pool layout is its own");
        }
        self.drop(
            "poolManager.observerSubDir",
            "observation artifacts live in the state directory",
        );
        self.drop("poolManager.preSnapshotSuffix", "Scion's layout is its own");
    }

    fn cloning(&mut self) {
        self.carry("cloning.accessHost", "cloning", "access_host");
        for (dblab, scion) in [
            ("maxIdleMinutes", "max_idle_minutes"),
            ("protectionLeaseDurationMinutes", "protection_lease_duration_minutes"),
            ("protectionMaxDurationMinutes", "protection_max_duration_minutes"),
            ("protectionExpiryWarningMinutes", "protection_expiry_warning_minutes"),
        ] {
            self.carry(&format!("cloning.{dblab}"), "cloning", scion);
        }
        self.carry("provision.portPool.from", "cloning", "port_from");
        self.carry("provision.portPool.to", "cloning", "port_to");
        self.carry("provision.keepUserPasswords", "cloning", "keep_user_passwords");
        if let Some(addresses) = self.take("provision.cloneAccessAddresses").and_then(Yaml::as_str)
        {
            let addresses = if addresses.trim().is_empty() { "*" } else { addresses };
            self.set("clone", "listen_addresses", Toml::String(addresses.replace(' ', "")));
        }
        self.drop("provision.useSudo", "Scion runs its commands itself, as root");
        self.carry("global.database.username", "clone", "admin_role");
        self.drop(
            "global.database.dbname",
            "Scion manages each clone through its postgres database",
        );
        self.drop("global.engine", "Scion runs PostgreSQL only");
        self.drop("global.debug", "set RUST_LOG=debug in the engine's environment");
        // The image names the PostgreSQL major; Scion runs that major's binaries directly.
        let image = self.take("databaseContainer.dockerImage").and_then(Yaml::as_str);
        match image.and_then(image_major) {
            Some(major) => self.set("clone", "initdb_major", Toml::Integer(major)),
            None => self.dropped.push((
                "databaseContainer.dockerImage".to_owned(),
                "no PostgreSQL major in the image's tag: set [clone] initdb_major and [retrieval] target_major".to_owned(),
            )),
        }
        self.settings("databaseConfigs.configs", "clone.settings");
        for path in ["databaseContainer.containerConfig", "provision.containerConfig"] {
            self.drop(
                path,
                "Docker's options: Scion runs no containers; per-clone CPU and memory limits are [clone] cpu and memory",
            );
        }
        // `<<: *db_container` copies of the anchors above, already read from the anchor.
        self.take("provision.dockerImage");
    }

    fn retention(&mut self) {
        for (dblab, scion) in [
            ("unusedSnapshotMinutes", "unused_snapshot_minutes"),
            ("unusedBranchMinutes", "unused_branch_minutes"),
            ("protectionMaxDurationMinutes", "protection_max_duration_minutes"),
            ("maxDeletionsPerTick", "max_deletions_per_tick"),
        ] {
            self.carry(&format!("retention.{dblab}"), "retention", scion);
        }
        if let Some(minutes) = self.take("retention.checkIntervalMinutes").and_then(Yaml::as_u64) {
            self.set("retention", "check_interval", Toml::String(format!("{minutes}m")));
        }
    }

    fn retrieval(&mut self) {
        let jobs: Vec<String> = self
            .take("retrieval.jobs")
            .and_then(Yaml::as_sequence)
            .map(|jobs| jobs.iter().filter_map(Yaml::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if jobs.is_empty() {
            self.drop("retrieval", "no retrieval.jobs: nothing to retrieve");
            return;
        }
        if let Some(major) = self.out_initdb_major() {
            self.set("retrieval", "target_major", Toml::Integer(major));
        }
        self.carry("retrieval.refresh.timetable", "retrieval", "timetable");
        self.carry("retrieval.refresh.skipStartRefresh", "retrieval", "skip_start_refresh");
        let spec = "retrieval.spec";
        if jobs.iter().any(|job| job == "logicalDump") {
            self.source(&format!("{spec}.logicalDump.options.source"));
        }
        self.logical_jobs(spec);
        self.physical_jobs(spec);
        // The jobs' own copies of the anchors (`<<: *db_container`, `<<: *db_configs`), read
        // from the anchors already; the restore's and snapshots' `configs` are theirs, read above.
        for job in JOBS {
            self.take(&format!("{spec}.{job}.options.dockerImage"));
            self.take(&format!("{spec}.{job}.options.containerConfig"));
        }
        self.take(&format!("{spec}.logicalDump.options.configs"));
        self.take(&format!("{spec}.physicalRestore.options.configs"));
    }

    fn out_initdb_major(&self) -> Option<i64> {
        self.out.get("clone")?.get("initdb_major")?.as_integer()
    }

    fn source(&mut self, at: &str) {
        for (dblab, scion) in
            [("host", "host"), ("port", "port"), ("dbname", "dbname"), ("username", "username")]
        {
            self.carry(&format!("{at}.connection.{dblab}"), "retrieval.source", scion);
        }
        // DBLab reads PGPASSWORD before the file's password: so does this configuration.
        self.set("retrieval.source", "password_env", Toml::String("PGPASSWORD".to_owned()));
        self.drop(
            &format!("{at}.connection.password"),
            "secrets stay out of Scion's file: the source's password is read from PGPASSWORD (password_env), or name a file with password_file",
        );
        self.drop(
            &format!("{at}.connectionString"),
            "give the source as [retrieval.source] host, port, dbname and username",
        );
        if let Some(kind) = self.take(&format!("{at}.type")).and_then(Yaml::as_str)
            && kind == "rdsIam"
        {
            self.dropped.push((
                format!("{at}.type"),
                "RDS IAM logins are not supported: use a password, or `scion rds-refresh`"
                    .to_owned(),
            ));
        }
        self.drop(&format!("{at}.rdsIam"), "RDS IAM logins are not supported");
    }

    fn logical_jobs(&mut self, spec: &str) {
        let dump = format!("{spec}.logicalDump.options");
        if let Some(databases) = self.take(&format!("{dump}.databases")).and_then(Yaml::as_mapping)
        {
            for (name, options) in databases {
                let Some(name) = name.as_str() else { continue };
                let section = format!("retrieval.databases.{}", toml_key(name));
                self.set(&section, "tables", Toml::Array(strings(options.get("tables"))));
                let exclude = strings(options.get("excludeTables"));
                self.set(&section, "exclude_tables", Toml::Array(exclude));
                if options.get("format").is_some() || options.get("compression").is_some() {
                    self.dropped.push((
                        format!("{dump}.databases.{name}.format/compression"),
                        "Scion dumps each database in directory format itself".to_owned(),
                    ));
                }
            }
        }
        self.carry(&format!("{dump}.parallelJobs"), "retrieval.dump", "parallel_jobs");
        self.carry(&format!("{dump}.dumpLocation"), "retrieval.dump", "location");
        self.carry(
            &format!("{dump}.immediateRestore.enabled"),
            "retrieval.dump",
            "immediate_restore",
        );
        if let Some(options) = self.take(&format!("{dump}.customOptions")) {
            self.set("retrieval.dump", "custom_options", Toml::Array(strings(Some(options))));
        }
        let restore = format!("{spec}.logicalRestore.options");
        self.carry(&format!("{restore}.parallelJobs"), "retrieval.restore", "parallel_jobs");
        self.carry(&format!("{restore}.ignoreErrors"), "retrieval.restore", "ignore_errors");
        self.carry(&format!("{restore}.skipPolicies"), "retrieval.restore", "skip_policies");
        if let Some(options) = self.take(&format!("{restore}.customOptions")) {
            self.set("retrieval.restore", "custom_options", Toml::Array(strings(Some(options))));
        }
        self.settings(&format!("{restore}.configs"), "retrieval.restore.configs");
        for path in [format!("{restore}.dumpLocation"), format!("{restore}.databases")] {
            self.take(&path);
        }
        self.preprocessing(&format!("{restore}.queryPreprocessing"));
        let snapshot = format!("{spec}.logicalSnapshot.options");
        self.snapshot_options(&snapshot);
        self.preprocessing(&format!("{snapshot}.dataPatching.queryPreprocessing"));
        self.drop(
            &format!("{snapshot}.dataPatching"),
            "Scion runs the preprocessing in its own temporary server",
        );
    }

    /// The options logical and physical snapshots share: renames, the script, their GUCs.
    fn snapshot_options(&mut self, at: &str) {
        if let Some(renames) = self.take(&format!("{at}.databaseRename")).and_then(Yaml::as_mapping)
        {
            for (old, new) in renames {
                if let (Some(old), Some(new)) = (old.as_str(), new.as_str()) {
                    self.set("retrieval.database_rename", old, Toml::String(new.to_owned()));
                }
            }
        }
        self.carry(&format!("{at}.preprocessingScript"), "retrieval.preprocessing", "script");
        self.settings(&format!("{at}.configs"), "clone.settings");
    }

    fn preprocessing(&mut self, at: &str) {
        self.carry(&format!("{at}.queryPath"), "retrieval.preprocessing", "query_path");
        self.carry(
            &format!("{at}.maxParallelWorkers"),
            "retrieval.preprocessing",
            "max_parallel_workers",
        );
        self.carry(&format!("{at}.inline"), "retrieval.preprocessing", "inline");
    }

    /// GUCs at `path` into the output table `section`.
    fn settings(&mut self, path: &str, section: &str) {
        let Some(configs) = self.take(path).and_then(Yaml::as_mapping) else { return };
        for (name, value) in configs {
            let (Some(name), Some(value)) = (name.as_str(), setting(value)) else { continue };
            if name == "shared_preload_libraries" {
                self.dropped.push((
                    format!("{path}.{name}"),
                    "Scion carries the source's own preload libraries where they are installed (docs/extensions.md); a library missing here would stop every clone".to_owned(),
                ));
                continue;
            }
            self.set(section, name, Toml::String(value));
        }
    }

    fn physical_jobs(&mut self, spec: &str) {
        let restore = format!("{spec}.physicalRestore.options");
        let Some(tool) = self.take(&format!("{restore}.tool")).and_then(Yaml::as_str) else {
            return;
        };
        let physical = "retrieval.physical";
        match tool {
            "walg" => {
                let backup = self
                    .take(&format!("{restore}.walg.backupName"))
                    .and_then(Yaml::as_str)
                    .unwrap_or("LATEST")
                    .to_owned();
                self.set(physical, "tool", Toml::String("custom".to_owned()));
                let command = format!("wal-g backup-fetch \"$PGDATA\" {backup}");
                self.set(&format!("{physical}.custom"), "command", Toml::String(command));
                let fetch = "wal-g wal-fetch %f %p".to_owned();
                self.set(&format!("{physical}.custom"), "restore_command", Toml::String(fetch));
                self.dropped.push((
                    format!("{restore}.walg"),
                    "WAL-G runs as a custom tool (docs/physical-mode.md): give it its storage settings in the engine's environment".to_owned(),
                ));
            }
            "pgbackrest" => {
                self.set(physical, "tool", Toml::String("pgbackrest".to_owned()));
                self.carry(
                    &format!("{restore}.pgbackrest.stanza"),
                    &format!("{physical}.pgbackrest"),
                    "stanza",
                );
                if self.take(&format!("{restore}.pgbackrest.delta")).and_then(Yaml::as_bool)
                    == Some(true)
                {
                    let delta = Toml::Array(vec![Toml::String("--delta".to_owned())]);
                    self.set(&format!("{physical}.pgbackrest"), "options", delta);
                }
            }
            "customTool" => {
                self.set(physical, "tool", Toml::String("custom".to_owned()));
                self.carry(
                    &format!("{restore}.customTool.command"),
                    &format!("{physical}.custom"),
                    "command",
                );
                self.carry(
                    &format!("{restore}.customTool.restore_command"),
                    &format!("{physical}.custom"),
                    "restore_command",
                );
            }
            other => {
                self.dropped.push((format!("{restore}.tool"), format!("unknown tool {other:?}")))
            }
        }
        self.carry(&format!("{restore}.sync.enabled"), &format!("{physical}.sync"), "enabled");
        if let Some(seconds) =
            self.take(&format!("{restore}.sync.healthCheck.interval")).and_then(Yaml::as_u64)
        {
            let interval = Toml::String(format!("{seconds}s"));
            self.set(&format!("{physical}.sync"), "health_interval", interval);
        }
        self.drop(
            &format!("{restore}.sync.healthCheck.maxRetries"),
            "Scion restarts the sync instance until it is healthy",
        );
        self.settings(&format!("{restore}.sync.configs"), &format!("{physical}.sync.configs"));
        self.drop(&format!("{restore}.envs"), "set these in the engine's environment; the tools inherit PATH only plus the source's PG* variables");
        let snapshot = format!("{spec}.physicalSnapshot.options");
        self.carry(
            &format!("{snapshot}.scheduler.snapshot.timetable"),
            physical,
            "snapshot_timetable",
        );
        self.carry(
            &format!("{snapshot}.scheduler.retention.limit"),
            "snapshots",
            "retention_limit",
        );
        self.drop(
            &format!("{snapshot}.scheduler.retention.timetable"),
            "Scion applies retention after each snapshot",
        );
        self.snapshot_options(&snapshot);
        self.preprocessing(&format!("{snapshot}.promotion.queryPreprocessing"));
        self.drop(
            &format!("{snapshot}.promotion"),
            "Scion always promotes a copy of the sync instance to cut a snapshot",
        );
        self.drop(
            &format!("{snapshot}.skipStartSnapshot"),
            "Scion cuts the first snapshot with the refresh",
        );
        self.drop(&format!("{snapshot}.sysctls"), "Scion starts no containers");
        self.drop(&format!("{snapshot}.envs"), "set these in the engine's environment");
    }

    fn webhooks(&mut self) {
        let Some(hooks) = self.take("webhooks.hooks").and_then(Yaml::as_sequence) else { return };
        let mut out = Vec::new();
        for (index, hook) in hooks.iter().enumerate() {
            let mut table = Table::new();
            if let Some(url) = hook.get("url").and_then(Yaml::as_str) {
                table.insert("url".to_owned(), Toml::String(url.to_owned()));
            }
            match hook.get("secret").and_then(Yaml::as_str) {
                Some(secret) if secret.contains("${") => self.dropped.push((
                    format!("webhooks.hooks[{index}].secret"),
                    "Scion reads no ${VAR} in its file: write the secret into the hook".to_owned(),
                )),
                Some(secret) if !secret.is_empty() => {
                    table.insert("secret".to_owned(), Toml::String(secret.to_owned()));
                }
                _ => {}
            }
            table.insert("trigger".to_owned(), Toml::Array(strings(hook.get("trigger"))));
            out.push(Toml::Table(table));
        }
        self.set("webhooks", "hooks", Toml::Array(out));
    }

    /// Every leaf nothing above handled: reported, with the sections Scion has no use for named.
    fn report_the_rest(&mut self) {
        let mut leaves = Vec::new();
        collect_leaves(self.doc, "", &mut leaves);
        for path in leaves {
            if self.seen.contains(&path) || ANCHOR_SECTIONS.iter().any(|s| path.starts_with(s)) {
                continue;
            }
            let top = path.split('.').next().unwrap_or_default();
            let why = match top {
                "platform" => "Postgres.ai's Platform is not used",
                "embeddedUI" => "the engine serves its own web UI at / on the API port",
                "diagnostic" => "the engine's logs go to its journal",
                "observer" => "observation artifacts stay on this host; nothing is uploaded",
                _ => "Scion has no such setting",
            };
            self.dropped.push((path, why.to_owned()));
        }
    }
}

/// Marks `node` and every path under it as handled.
fn mark(node: &Yaml, path: &str, seen: &mut BTreeSet<String>) {
    let mut leaves = Vec::new();
    collect_leaves(node, path, &mut leaves);
    seen.extend(leaves);
    seen.insert(path.to_owned());
}

/// The dotted paths of every leaf under `node` (a sequence is one leaf).
fn collect_leaves(node: &Yaml, prefix: &str, out: &mut Vec<String>) {
    match node.as_mapping() {
        Some(mapping) if !mapping.is_empty() => {
            for (key, value) in mapping {
                let key = match key {
                    Yaml::String(text) => text.clone(),
                    other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_owned(),
                };
                let path = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                collect_leaves(value, &path, out);
            }
        }
        _ => out.push(prefix.to_owned()),
    }
}

/// A YAML scalar as TOML (YAML 1.1's `on`/`off`/`yes`/`no` as booleans, as DBLab reads them).
fn scalar(value: &Yaml) -> Option<Toml> {
    match value {
        Yaml::Bool(flag) => Some(Toml::Boolean(*flag)),
        Yaml::Number(number) => {
            number.as_i64().map(Toml::Integer).or_else(|| number.as_f64().map(Toml::Float))
        }
        Yaml::String(text) => Some(match text.as_str() {
            "on" | "yes" | "true" => Toml::Boolean(true),
            "off" | "no" | "false" => Toml::Boolean(false),
            _ => Toml::String(text.clone()),
        }),
        _ => None,
    }
}

/// A GUC's value as text.
fn setting(value: &Yaml) -> Option<String> {
    match value {
        Yaml::String(text) => Some(text.clone()),
        Yaml::Bool(flag) => Some(if *flag { "on" } else { "off" }.to_owned()),
        Yaml::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn strings(value: Option<&Yaml>) -> Vec<Toml> {
    let Some(value) = value else { return Vec::new() };
    match value {
        Yaml::Sequence(items) => items.iter().filter_map(setting).map(Toml::String).collect(),
        Yaml::String(text) => vec![Toml::String(text.clone())],
        _ => Vec::new(),
    }
}

/// A database name as one key of a dotted section path (the path is split on dots).
fn toml_key(name: &str) -> String {
    name.replace('.', "_")
}

/// The PostgreSQL major in an image's tag: `postgresai/extended-postgres:18-0.6.2` is 18.
fn image_major(image: &str) -> Option<i64> {
    let (_, tag) = image.rsplit_once(':')?;
    let digits: String = tag.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|major| (9..=30).contains(major))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGICAL: &str = r#"
databaseContainer: &db_container
  dockerImage: "postgresai/extended-postgres:17-0.6.2"
  containerConfig:
    "shm-size": 1gb
databaseConfigs: &db_configs
  configs:
    shared_buffers: 1GB
    shared_preload_libraries: "pg_stat_statements, auto_explain"
    work_mem: "100MB"
server:
  verificationToken: "${DBLAB_VERIFICATION_TOKEN}"
  host: ""
  port: 2345
  disableConfigModification: off
embeddedUI:
  enabled: true
  dockerImage: "postgresai/ce-ui:latest"
global:
  engine: postgres
  debug: true
  database:
    username: postgres
    dbname: postgres
poolManager:
  mountDir: /var/lib/dblab
  dataSubDir: data
provision:
  <<: *db_container
  portPool:
    from: 6000
    to: 6099
  useSudo: false
  keepUserPasswords: false
  cloneAccessAddresses: "127.0.0.1"
retrieval:
  refresh:
    timetable: "0 0 * * 1"
    skipStartRefresh: false
  jobs:
    - logicalDump
    - logicalRestore
    - logicalSnapshot
  spec:
    logicalDump:
      options:
        <<: *db_container
        dumpLocation: "/var/lib/dblab/dblab_pool/dump"
        source:
          type: remote
          connection:
            dbname: postgres
            host: 34.56.78.90
            port: 5432
            username: postgres
            password: postgres
        databases:
          shop:
            tables: [orders]
        parallelJobs: 4
    logicalRestore:
      options:
        <<: *db_container
        dumpLocation: "/var/lib/dblab/dblab_pool/dump"
        parallelJobs: 4
        customOptions:
          - "--no-tablespaces"
    logicalSnapshot:
      options:
        <<: *db_configs
        preprocessingScript: ""
        dataPatching:
          queryPreprocessing:
            queryPath: ""
            inline: ""
        databaseRename:
          shop: shop_dev
cloning:
  accessHost: "localhost"
  maxIdleMinutes: 120
retention:
  checkIntervalMinutes: 5
webhooks:
  hooks:
    - url: "https://hooks.example.com/dblab"
      secret: "s3cret"
      trigger: [clone_create]
platform:
  url: "https://postgres.ai/api/general"
"#;

    #[test]
    fn a_logical_configuration_is_carried_and_the_rest_named() {
        let imported = convert(LOGICAL).unwrap();
        let config: Table = toml::from_str(&imported.toml).unwrap();
        assert_eq!(config["server"]["host"].as_str(), Some("0.0.0.0"));
        assert_eq!(config["server"]["disable_config_modification"].as_bool(), Some(false));
        assert_eq!(config["cloning"]["port_to"].as_integer(), Some(6099));
        assert_eq!(config["clone"]["initdb_major"].as_integer(), Some(17));
        assert_eq!(config["retrieval"]["target_major"].as_integer(), Some(17));
        assert_eq!(config["clone"]["settings"]["work_mem"].as_str(), Some("100MB"));
        assert!(config["clone"]["settings"].get("shared_preload_libraries").is_none());
        assert_eq!(config["retrieval"]["source"]["host"].as_str(), Some("34.56.78.90"));
        assert_eq!(config["retrieval"]["source"]["password_env"].as_str(), Some("PGPASSWORD"));
        assert_eq!(config["retrieval"]["dump"]["parallel_jobs"].as_integer(), Some(4));
        assert_eq!(config["retrieval"]["databases"]["shop"]["tables"][0].as_str(), Some("orders"));
        assert_eq!(config["retrieval"]["database_rename"]["shop"].as_str(), Some("shop_dev"));
        assert_eq!(config["retention"]["check_interval"].as_str(), Some("5m"));
        // DBLab's empty strings are unset, not empty paths.
        assert!(config["retrieval"].get("preprocessing").is_none(), "{}", imported.toml);
        assert_eq!(config["webhooks"]["hooks"][0]["secret"].as_str(), Some("s3cret"));
        let dropped: Vec<&str> = imported.dropped.iter().map(|(key, _)| key.as_str()).collect();
        for key in [
            "server.verificationToken",
            "poolManager.mountDir",
            "embeddedUI.dockerImage",
            "platform.url",
            "provision.useSudo",
            "databaseConfigs.configs.shared_preload_libraries",
            "retrieval.spec.logicalDump.options.source.connection.password",
        ] {
            assert!(dropped.contains(&key), "{key} not reported: {dropped:?}");
        }
        // The source's password never reaches the output.
        assert!(!imported.toml.contains("postgres\"\npassword"), "{}", imported.toml);
        assert!(!imported.toml.contains("password ="), "{}", imported.toml);
    }

    #[test]
    fn physical_tools_become_scions() {
        let walg = "retrieval:\n  jobs: [physicalRestore, physicalSnapshot]\n  spec:\n    physicalRestore:\n      options:\n        tool: walg\n        walg:\n          backupName: LATEST\n        sync:\n          enabled: true\n          healthCheck:\n            interval: 5\n    physicalSnapshot:\n      options:\n        scheduler:\n          snapshot:\n            timetable: \"0 */6 * * *\"\n          retention:\n            limit: 4\n";
        let config: Table = toml::from_str(&convert(walg).unwrap().toml).unwrap();
        let physical = &config["retrieval"]["physical"];
        assert_eq!(physical["tool"].as_str(), Some("custom"));
        assert_eq!(physical["custom"]["restore_command"].as_str(), Some("wal-g wal-fetch %f %p"));
        assert_eq!(physical["sync"]["health_interval"].as_str(), Some("5s"));
        assert_eq!(physical["snapshot_timetable"].as_str(), Some("0 */6 * * *"));
        assert_eq!(config["snapshots"]["retention_limit"].as_integer(), Some(4));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(convert("- a\n- b\n").unwrap_err().contains("not a mapping"));
        assert!(convert("a: [\n").unwrap_err().contains("not a YAML document"));
        assert_eq!(image_major("postgresai/extended-postgres:18-0.6.2"), Some(18));
        assert_eq!(image_major("postgres:latest"), None);
    }
}
