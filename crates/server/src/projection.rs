//! DBLab's `/admin/config` projection over Scion's configuration: [`project`] shows the running
//! configuration as the JSON DBLab's UI edits, and [`apply`] writes a projection's fields into
//! the configuration file's TOML table (pure functions; `live` reads, validates and writes).
//!
//! DBLab's fields and Scion's keys: `databaseConfigs.configs` is `[clone] settings`,
//! `retrieval.refresh.timetable` is `[retrieval] timetable`, `retrieval.spec.logicalDump.options`
//! is `[retrieval.source]`, `[retrieval.databases]` and `[retrieval.dump]`, and
//! `retrieval.spec.logicalRestore.options` is `[retrieval.restore]`. `global.debug` and
//! `databaseContainer.dockerImage` are accepted and ignored: Scion runs no containers and logs
//! by `RUST_LOG`.

use engine::EngineConfig;
use serde_json::{Map, Value, json};

const DUMP: [&str; 4] = ["retrieval", "spec", "logicalDump", "options"];
const RESTORE: [&str; 4] = ["retrieval", "spec", "logicalRestore", "options"];

/// DBLab's check of custom dump and restore options.
fn valid_custom_option(option: &str) -> bool {
    !option.is_empty() && option.chars().all(|c| c.is_ascii_alphanumeric() || "-_=\"".contains(c))
}

/// The projection of `config`: DBLab's fields that Scion has, passwords never included.
pub(crate) fn project(config: &EngineConfig) -> Value {
    let mode = match &config.retrieval {
        Some(retrieval) if retrieval.physical.is_some() => "physical",
        Some(_) => "logical",
        None => "unknown",
    };
    let mut root = json!({
        "databaseConfigs": { "configs": config.clone.settings },
        "retrievalMode": mode,
    });
    let Some(retrieval) =
        config.retrieval.as_ref().filter(|retrieval| retrieval.physical.is_none())
    else {
        return root;
    };
    let databases: Map<String, Value> = retrieval
        .databases
        .iter()
        .map(|(name, database)| {
            let tables = if database.tables.is_empty() {
                json!({})
            } else {
                json!({ "tables": database.tables })
            };
            (name.clone(), tables)
        })
        .collect();
    let mut dump = json!({
        "databases": databases,
        "parallelJobs": retrieval.dump.parallel_jobs,
        "customOptions": retrieval.dump.custom_options,
    });
    if let Some(source) = &retrieval.source {
        let mut connection = json!({
            "dbname": source.dbname,
            "port": source.port,
            "username": source.username,
        });
        if let Some(host) = &source.host {
            connection["host"] = json!(host);
        }
        dump["source"] = json!({ "connection": connection });
    }
    let mut section = json!({
        "spec": {
            "logicalDump": { "options": dump },
            "logicalRestore": { "options": {
                "parallelJobs": retrieval.restore.parallel_jobs,
                "customOptions": retrieval.restore.custom_options,
                "ignoreErrors": retrieval.restore.ignore_errors,
            } },
        },
    });
    if let Some(timetable) = &retrieval.timetable {
        section["refresh"] = json!({ "timetable": timetable });
    }
    root["retrieval"] = section;
    root
}

/// The value at `path`, absent when missing or `null` (Go's decoder treats both alike).
fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |value, key| value.get(key)).filter(|value| !value.is_null())
}

/// Sets `path` in `table`, making the tables on the way.
fn set(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut table = table;
    for key in parents {
        let entry = table
            .entry((*key).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(inner) = entry else { return };
        table = inner;
    }
    table.insert((*last).to_owned(), value);
}

/// Removes `path` from `table`, if there.
fn remove(table: &mut toml::Table, path: &[&str]) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut table = table;
    for key in parents {
        match table.get_mut(*key) {
            Some(toml::Value::Table(inner)) => table = inner,
            _ => return,
        }
    }
    table.remove(*last);
}

/// Collects the problems of one projection, each naming its field.
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, field: &str, message: &str) {
        self.0.push(format!("{field}: {message}"));
    }
}

fn field(path: &[&str]) -> String {
    path.join(".")
}

fn string_at(projection: &Value, path: &[&str], problems: &mut Problems) -> Option<String> {
    let value = at(projection, path)?;
    match value.as_str() {
        Some(text) => Some(text.to_owned()),
        None => {
            problems.add(&field(path), "must be a string");
            None
        }
    }
}

fn count_at(projection: &Value, path: &[&str], problems: &mut Problems) -> Option<i64> {
    let value = at(projection, path)?;
    match value.as_u64().filter(|count| *count >= 1).and_then(|count| i64::try_from(count).ok()) {
        Some(count) => Some(count),
        None => {
            problems.add(&field(path), "must be a whole number of at least 1");
            None
        }
    }
}

fn bool_at(projection: &Value, path: &[&str], problems: &mut Problems) -> Option<bool> {
    let value = at(projection, path)?;
    let flag = value.as_bool();
    if flag.is_none() {
        problems.add(&field(path), "must be true or false");
    }
    flag
}

fn options_at(projection: &Value, path: &[&str], problems: &mut Problems) -> Option<toml::Value> {
    let value = at(projection, path)?;
    let Some(items) = value.as_array() else {
        problems.add(&field(path), "must be an array of strings");
        return None;
    };
    let mut options = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match item.as_str().filter(|option| valid_custom_option(option)) {
            Some(option) => options.push(toml::Value::String(option.to_owned())),
            None => problems.add(
                &format!("{}[{index}]", field(path)),
                "must be a string of letters, digits and -_=\" only",
            ),
        }
    }
    Some(toml::Value::Array(options))
}

/// Writes the fields `projection` sets into `table` (the configuration file), leaving every
/// other key as it is. `physical` says the engine runs in physical mode, whose section this
/// projection does not edit. A source password is never written to the file: the file names
/// `password_file` instead, where the caller keeps [`source_password`]. Fails with every
/// problem, each naming its field.
pub(crate) fn apply(
    table: &mut toml::Table,
    projection: &Value,
    physical: bool,
    password_file: &std::path::Path,
) -> Result<(), Vec<String>> {
    let mut problems = Problems(Vec::new());
    match at(projection, &["retrievalMode"]).map(Value::as_str) {
        None | Some(Some("logical" | "unknown")) => {}
        Some(Some("physical")) if physical => {}
        Some(Some("physical")) => problems.add(
            "retrievalMode",
            "physical mode is set up in [retrieval.physical] of the configuration file",
        ),
        Some(_) => problems.add("retrievalMode", "must be \"logical\" or \"physical\""),
    }
    if at(projection, &["retrieval", "spec", "physicalRestore"]).is_some() {
        problems.add(
            "retrieval.spec.physicalRestore",
            "physical mode's settings are edited in [retrieval.physical] of the configuration file",
        );
    }
    // The clones' settings, in either mode.
    if let Some(configs) = at(projection, &["databaseConfigs", "configs"]) {
        match configs.as_object() {
            Some(configs) => {
                let mut settings = toml::Table::new();
                for (name, value) in configs {
                    let text = match value {
                        Value::String(text) => Some(text.clone()),
                        Value::Number(number) => Some(number.to_string()),
                        Value::Bool(flag) => Some(if *flag { "on" } else { "off" }.to_owned()),
                        _ => None,
                    };
                    match text {
                        Some(text) => {
                            settings.insert(name.clone(), toml::Value::String(text));
                        }
                        None => problems.add(
                            &format!("databaseConfigs.configs.{name}"),
                            "a setting is a string, number or boolean",
                        ),
                    }
                }
                set(table, &["clone", "settings"], toml::Value::Table(settings));
            }
            None => problems.add("databaseConfigs.configs", "must be an object"),
        }
    }
    let logical = [&DUMP[..], &RESTORE[..], &["retrieval", "refresh"]];
    if physical {
        for path in logical {
            if at(projection, path).is_some() {
                problems.add(&field(path), "the engine runs in physical mode");
            }
        }
        return finish(problems);
    }
    let timetable = ["retrieval", "refresh", "timetable"];
    match string_at(projection, &timetable, &mut problems).as_deref() {
        Some("") => remove(table, &["retrieval", "timetable"]),
        Some(cron) => set(table, &["retrieval", "timetable"], toml::Value::String(cron.into())),
        None => {}
    }
    let connection = [&DUMP[..], &["source", "connection"]].concat();
    for key in ["host", "dbname", "username"] {
        let path = [&connection[..], &[key]].concat();
        if let Some(text) = string_at(projection, &path, &mut problems) {
            set(table, &["retrieval", "source", key], toml::Value::String(text));
        }
    }
    let port_path = [&connection[..], &["port"]].concat();
    if let Some(port) = at(projection, &port_path) {
        let parsed = match port {
            Value::Number(number) => number.as_u64(),
            Value::String(text) => text.parse().ok(),
            _ => None,
        };
        match parsed.and_then(|port| u16::try_from(port).ok()).filter(|port| *port > 0) {
            Some(port) => set(table, &["retrieval", "source", "port"], i64::from(port).into()),
            None => problems.add(&field(&port_path), "must be a port from 1 to 65535"),
        }
    }
    let password_path = [&connection[..], &["password"]].concat();
    if let Some(password) =
        string_at(projection, &password_path, &mut problems).filter(|text| !text.is_empty())
    {
        if password.contains(['\n', '\r']) {
            problems.add(&field(&password_path), "must be one line");
        }
        let file = password_file.display().to_string();
        set(table, &["retrieval", "source", "password_file"], toml::Value::String(file));
        remove(table, &["retrieval", "source", "password_env"]);
    }
    let databases_path = [&DUMP[..], &["databases"]].concat();
    if let Some(databases) = at(projection, &databases_path) {
        match databases.as_object() {
            Some(databases) => {
                let mut table_of = toml::Table::new();
                for (name, database) in databases {
                    let mut entry = toml::Table::new();
                    let tables_path = [&databases_path[..], &[name.as_str(), "tables"]].concat();
                    if let Some(tables) =
                        options_like_tables(projection, &tables_path, &mut problems)
                    {
                        entry.insert("tables".to_owned(), tables);
                    } else if !(database.is_null() || database.is_object()) {
                        problems.add(
                            &field(&[&databases_path[..], &[name]].concat()),
                            "must be an object",
                        );
                    }
                    table_of.insert(name.clone(), toml::Value::Table(entry));
                }
                set(table, &["retrieval", "databases"], toml::Value::Table(table_of));
            }
            None => problems.add(&field(&databases_path), "must be an object"),
        }
    }
    for (options, section) in [(&DUMP, "dump"), (&RESTORE, "restore")] {
        let jobs = [&options[..], &["parallelJobs"]].concat();
        if let Some(jobs) = count_at(projection, &jobs, &mut problems) {
            set(table, &["retrieval", section, "parallel_jobs"], jobs.into());
        }
        let custom = [&options[..], &["customOptions"]].concat();
        if let Some(custom) = options_at(projection, &custom, &mut problems) {
            set(table, &["retrieval", section, "custom_options"], custom);
        }
    }
    let dump_errors = [&DUMP[..], &["ignoreErrors"]].concat();
    if bool_at(projection, &dump_errors, &mut problems) == Some(true) {
        problems.add(
            &field(&dump_errors),
            "Scion's dump stops at its first error; ignoreErrors applies to the restore",
        );
    }
    let restore_errors = [&RESTORE[..], &["ignoreErrors"]].concat();
    if let Some(flag) = bool_at(projection, &restore_errors, &mut problems) {
        set(table, &["retrieval", "restore", "ignore_errors"], flag.into());
    }
    finish(problems)
}

/// A database's `tables`: an array of table names.
fn options_like_tables(
    projection: &Value,
    path: &[&str],
    problems: &mut Problems,
) -> Option<toml::Value> {
    let value = at(projection, path)?;
    let names: Option<Vec<toml::Value>> = value.as_array().and_then(|items| {
        items
            .iter()
            .map(|item| item.as_str().map(|name| toml::Value::String(name.into())))
            .collect()
    });
    if names.is_none() {
        problems.add(&field(path), "must be an array of table names");
    }
    names.map(toml::Value::Array)
}

/// The source password a projection sends, if any (DBLab's UI sends one when the user types
/// it): kept in its own file, never in the configuration file.
pub(crate) fn source_password(projection: &Value) -> Option<String> {
    let path = [&DUMP[..], &["source", "connection", "password"]].concat();
    at(projection, &path).and_then(Value::as_str).filter(|text| !text.is_empty()).map(str::to_owned)
}

fn finish(problems: Problems) -> Result<(), Vec<String>> {
    if problems.0.is_empty() { Ok(()) } else { Err(problems.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projection_round_trips_through_the_file() {
        let mut table = toml::Table::new();
        let projection = json!({
            "retrievalMode": "logical",
            "global": { "debug": true },
            "databaseConfigs": { "configs": { "work_mem": "8MB", "max_wal_senders": 0 } },
            "retrieval": {
                "refresh": { "timetable": "0 3 * * *" },
                "spec": {
                    "logicalDump": { "options": {
                        "source": { "connection": {
                            "host": "db.example", "port": "5433", "dbname": "app",
                            "username": "reader", "password": ""
                        } },
                        "databases": { "app": null, "crm": { "tables": ["accounts"] } },
                        "parallelJobs": 2,
                        "customOptions": ["--no-comments"],
                    } },
                    "logicalRestore": { "options": { "ignoreErrors": true, "parallelJobs": 3 } },
                },
            },
        });
        apply(
            &mut table,
            &projection,
            false,
            std::path::Path::new("/state/secrets/source-password"),
        )
        .unwrap();
        let file: crate::config::ConfigFile = toml::from_str(&toml::to_string(&table).unwrap())
            .expect("the written table is a valid file");
        let config = EngineConfig {
            clone: file.clone,
            retrieval: file.retrieval,
            ..EngineConfig::default()
        };
        let shown = project(&config);
        assert_eq!(shown["retrievalMode"], "logical");
        assert_eq!(shown["databaseConfigs"]["configs"]["max_wal_senders"], "0");
        assert_eq!(shown["retrieval"]["refresh"]["timetable"], "0 3 * * *");
        let dump = &shown["retrieval"]["spec"]["logicalDump"]["options"];
        assert_eq!(dump["source"]["connection"]["port"], 5433);
        assert_eq!(dump["source"]["connection"]["host"], "db.example");
        assert_eq!(dump["databases"], json!({ "app": {}, "crm": { "tables": ["accounts"] } }));
        assert_eq!(dump["parallelJobs"], 2);
        assert_eq!(dump["customOptions"], json!(["--no-comments"]));
        assert!(dump["source"]["connection"].get("password").is_none());
        let restore = &shown["retrieval"]["spec"]["logicalRestore"]["options"];
        assert_eq!(restore["ignoreErrors"], true);
        assert_eq!(restore["parallelJobs"], 3);
    }

    #[test]
    fn a_password_goes_to_its_own_file_never_to_the_configuration() {
        let mut table: toml::Table =
            toml::from_str("[retrieval.source]\nhost = \"db\"\npassword_env = \"PW\"\n").unwrap();
        let projection = json!({
            "retrieval": { "spec": { "logicalDump": { "options": {
                "source": { "connection": { "password": "s3cret" } },
            } } } },
        });
        let file = std::path::Path::new("/state/secrets/source-password");
        apply(&mut table, &projection, false, file).unwrap();
        let text = toml::to_string(&table).unwrap();
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(
            table["retrieval"]["source"]["password_file"].as_str(),
            Some("/state/secrets/source-password")
        );
        assert!(table["retrieval"]["source"].get("password_env").is_none(), "{text}");
        assert_eq!(source_password(&projection).as_deref(), Some("s3cret"));
        let empty = json!({ "retrieval": { "spec": { "logicalDump": { "options": {
            "source": { "connection": { "password": "" } } } } } } });
        assert_eq!(source_password(&empty), None);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut table = toml::Table::new();
        let projection = json!({
            "retrieval": { "spec": { "logicalDump": { "options": {
                "source": { "connection": { "port": 70000, "password": "two\nlines" } },
                "parallelJobs": 0,
                "customOptions": ["--ok", "; rm -rf /"],
            } } } },
        });
        let problems = apply(
            &mut table,
            &projection,
            false,
            std::path::Path::new("/state/secrets/source-password"),
        )
        .unwrap_err();
        let text = problems.join("\n");
        for field in [
            "logicalDump.options.source.connection.port",
            "logicalDump.options.source.connection.password",
            "logicalDump.options.parallelJobs",
            "logicalDump.options.customOptions[1]",
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
        let problems = apply(
            &mut table,
            &json!({ "retrieval": { "refresh": {
            "timetable": "* * * * *" } } }),
            true,
            std::path::Path::new("/state/secrets/source-password"),
        )
        .unwrap_err();
        assert_eq!(problems, vec!["retrieval.refresh: the engine runs in physical mode"]);
    }
}
