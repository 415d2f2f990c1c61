//! What the Teleport sidecar registers, as pure functions: DBLab's resource names and labels,
//! the `db` and `app` documents handed to `tctl create`, which registered resources belong to
//! this instance, and the reconciliation plan from the clone list and the registered resources.
//! Nothing here runs `tctl` or talks to the API.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Longest resource name DBLab makes; longer clone IDs are cut in the middle of the name.
pub(crate) const MAX_NAME_LEN: usize = 200;
/// Hex digits of the SHA-256 suffix that keeps cut names apart.
const HASH_LEN: usize = 8;

/// Label keys the sidecar sets itself; an operator's `--label` may not use them.
pub(crate) const LABEL_DBLAB: &str = "dblab";
pub(crate) const LABEL_INSTANCE: &str = "dblab_instance";
pub(crate) const LABEL_CLONE_ID: &str = "clone_id";
pub(crate) const LABEL_USER: &str = "dblab_user";
/// Defaults to the environment ID; an operator's `--label environment=…` replaces it.
pub(crate) const LABEL_ENVIRONMENT: &str = "environment";
const RESERVED: [&str; 4] = [LABEL_DBLAB, LABEL_INSTANCE, LABEL_CLONE_ID, LABEL_USER];

/// DBLab's safe value (`^[a-zA-Z0-9._:/@-]+$`): the environment ID, label values, the owner.
pub(crate) fn is_safe_value(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:/@-".contains(&b))
}

/// DBLab's label key (`^[a-zA-Z0-9._/-]+$`), a subset of what Teleport accepts.
pub(crate) fn is_safe_key(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._/-".contains(&b))
}

/// An owner DBLab puts in `dblab_user`: a safe value of at most 254 bytes (an e-mail address).
fn is_label_owner(owner: &str) -> bool {
    is_safe_value(owner) && owner.len() <= 254
}

/// One `--label key=value`: both non-empty and safe, the key not reserved.
pub(crate) fn parse_label(text: &str) -> Result<(String, String), String> {
    let Some((key, value)) = text.split_once('=').filter(|(k, v)| !k.is_empty() && !v.is_empty())
    else {
        return Err(format!("invalid label {text:?}: expected non-empty key=value"));
    };
    if RESERVED.contains(&key) {
        return Err(format!("label {key:?} is reserved and managed by the sidecar"));
    }
    if !is_safe_key(key) {
        return Err(format!("label key {key:?} may hold only letters, digits and . _ / -"));
    }
    if !is_safe_value(value) {
        return Err(format!(
            "label {key:?} has a value with characters other than letters, digits and . _ : / @ -"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// The operator's labels as a map; a key given twice is refused.
pub(crate) fn custom_labels(
    pairs: Vec<(String, String)>,
) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for (key, value) in pairs {
        if labels.insert(key.clone(), value).is_some() {
            return Err(format!("duplicate label {key:?}"));
        }
    }
    Ok(labels)
}

/// Teleport accepts database names matching `^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`; clone and
/// environment IDs may also hold `_` and `.`, which become `-` in names (labels keep them).
pub(crate) fn name_fragment(text: &str) -> String {
    text.chars().map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' { ch } else { '-' }).collect()
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(HASH_LEN);
    for byte in &digest[..HASH_LEN / 2] {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// DBLab's `db` resource name, `dblab-clone-<env>-<clone>-<port>`: at most [`MAX_NAME_LEN`]
/// bytes, a longer clone ID cut and followed by a hash of the whole name, the port kept.
pub(crate) fn clone_resource_name(environment: &str, clone_id: &str, port: u16) -> String {
    let prefix = format!("dblab-clone-{}-", name_fragment(environment));
    let port_suffix = format!("-{port}");
    let clone = name_fragment(clone_id);
    let full = format!("{prefix}{clone}{port_suffix}");
    if full.len() <= MAX_NAME_LEN {
        return full;
    }
    let available =
        MAX_NAME_LEN.saturating_sub(prefix.len() + 1 + HASH_LEN + port_suffix.len()).max(1);
    // The fragment is ASCII, so any byte index is a character boundary.
    let kept = &clone[..available.min(clone.len())];
    format!("{prefix}{kept}-{}{port_suffix}", short_hash(&full))
}

/// DBLab's `app` resource name for the API, `dblab-api-<env>`.
pub(crate) fn app_name(environment: &str) -> String {
    let name = format!("dblab-api-{environment}");
    if name.len() <= MAX_NAME_LEN {
        return name;
    }
    format!("{}-{}", &name[..MAX_NAME_LEN - HASH_LEN - 1], short_hash(&name))
}

/// Teleport serves an app under a subdomain of its proxy, so app names are DNS-1035 labels.
pub(crate) fn is_valid_app_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.last().is_some_and(|b| *b != b'-')
}

/// A clone the sidecar can register: it has a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloneEntry {
    pub(crate) id: String,
    pub(crate) port: u16,
    /// The user the clone is bound to (`ownerUser`), empty when none.
    pub(crate) owner: String,
}

impl CloneEntry {
    /// A clone from the API; `None` while it has no port yet (DBLab's port is a string, and a
    /// non-numeric or zero port is skipped).
    pub(crate) fn from_api(clone: &api_types::Clone) -> Option<CloneEntry> {
        let port = clone.db.port.parse::<u16>().ok().filter(|port| *port != 0)?;
        Some(CloneEntry { id: clone.id.clone(), port, owner: clone.db.owner_user.clone() })
    }
}

/// Builds the documents this instance registers.
#[derive(Debug, Clone)]
pub(crate) struct Naming {
    environment: String,
    custom: BTreeMap<String, String>,
}

impl Naming {
    /// Refuses an environment ID that cannot be a label value (every create would fail).
    pub(crate) fn new(
        environment: &str,
        custom: BTreeMap<String, String>,
    ) -> Result<Naming, String> {
        if !is_safe_value(environment) {
            return Err(format!(
                "environment ID {environment:?} may hold only letters, digits and . _ : / @ -"
            ));
        }
        Ok(Naming { environment: environment.to_owned(), custom })
    }

    pub(crate) fn environment(&self) -> &str {
        &self.environment
    }

    pub(crate) fn clone_name(&self, clone_id: &str, port: u16) -> String {
        clone_resource_name(&self.environment, clone_id, port)
    }

    fn base_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.custom.clone();
        labels.insert(LABEL_DBLAB.to_owned(), "true".to_owned());
        labels.insert(LABEL_INSTANCE.to_owned(), self.environment.clone());
        labels.entry(LABEL_ENVIRONMENT.to_owned()).or_insert_with(|| self.environment.clone());
        labels
    }

    /// The labels of a clone's `db` resource; the owner only when it is a safe value (DBLab
    /// leaves such clones without `dblab_user`), which `owner_dropped` reports.
    pub(crate) fn clone_labels(&self, clone: &CloneEntry) -> BTreeMap<String, String> {
        let mut labels = self.base_labels();
        labels.insert(LABEL_CLONE_ID.to_owned(), clone.id.clone());
        if is_label_owner(&clone.owner) {
            labels.insert(LABEL_USER.to_owned(), clone.owner.clone());
        }
        labels
    }

    /// True when the clone has an owner that cannot be a label value.
    pub(crate) fn owner_dropped(clone: &CloneEntry) -> bool {
        !clone.owner.is_empty() && !is_label_owner(&clone.owner)
    }

    /// The clone's `db` resource: Postgres on the loopback port (the database agent runs on
    /// the engine's host), TLS not verified (clones serve self-signed certificates, if any).
    /// It is JSON, which `tctl create` reads as it reads YAML, so no value needs escaping.
    pub(crate) fn db_document(&self, clone: &CloneEntry) -> Value {
        json!({
            "kind": "db",
            "version": "v3",
            "metadata": {
                "name": self.clone_name(&clone.id, clone.port),
                "labels": self.clone_labels(clone),
            },
            "spec": {
                "protocol": "postgres",
                "uri": format!("127.0.0.1:{}", clone.port),
                "tls": { "mode": "insecure" },
            },
        })
    }

    /// The `app` resource for the API at `uri` (its certificate may be self-signed).
    pub(crate) fn app_document(&self, uri: &str) -> Value {
        json!({
            "kind": "app",
            "version": "v3",
            "metadata": { "name": app_name(&self.environment), "labels": self.base_labels() },
            "spec": { "uri": uri, "insecure_skip_verify": true },
        })
    }

    /// Whether a registered resource is this instance's: `dblab=true` and our
    /// `dblab_instance`, or, made before that label existed, no `dblab_instance` and our
    /// `environment`.
    pub(crate) fn owns(&self, labels: &BTreeMap<String, String>) -> bool {
        if labels.get(LABEL_DBLAB).map(String::as_str) != Some("true") {
            return false;
        }
        match labels.get(LABEL_INSTANCE) {
            Some(instance) => *instance == self.environment,
            None => labels.get(LABEL_ENVIRONMENT) == Some(&self.environment),
        }
    }
}

/// A resource as `tctl get db --format=json` lists it (only what the sidecar reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Registered {
    pub(crate) metadata: RegisteredMetadata,
}

/// Its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct RegisteredMetadata {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
}

/// What one reconciliation pass does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// The API listed no clones while this instance has registered resources: an engine
    /// restarting or answering wrongly must not deregister everything, so nothing is done.
    SkipEmptyCloneList { registered: usize },
    /// Register these clones, remove these resources (by name); existing resources are
    /// matched by name only and never relabelled.
    Apply { register: Vec<CloneEntry>, remove: Vec<String> },
}

/// Compares the clones with this instance's registered resources.
pub(crate) fn plan(naming: &Naming, clones: &[CloneEntry], registered: &[Registered]) -> Plan {
    let ours: BTreeSet<&str> = registered
        .iter()
        .filter(|resource| naming.owns(&resource.metadata.labels))
        .map(|resource| resource.metadata.name.as_str())
        .collect();
    if clones.is_empty() && !ours.is_empty() {
        return Plan::SkipEmptyCloneList { registered: ours.len() };
    }
    let desired: BTreeMap<String, &CloneEntry> =
        clones.iter().map(|clone| (naming.clone_name(&clone.id, clone.port), clone)).collect();
    let register = desired
        .iter()
        .filter(|(name, _)| !ours.contains(name.as_str()))
        .map(|(_, clone)| (*clone).clone())
        .collect();
    let remove = ours
        .iter()
        .filter(|name| !desired.contains_key(**name))
        .map(|name| (*name).to_owned())
        .collect();
    Plan::Apply { register, remove }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming(environment: &str) -> Naming {
        Naming::new(environment, BTreeMap::new()).unwrap()
    }

    fn clone(id: &str, port: u16) -> CloneEntry {
        CloneEntry { id: id.to_owned(), port, owner: String::new() }
    }

    fn registered(name: &str, labels: &[(&str, &str)]) -> Registered {
        Registered {
            metadata: RegisteredMetadata {
                name: name.to_owned(),
                labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            },
        }
    }

    fn ours(name: &str) -> Registered {
        registered(name, &[("dblab", "true"), ("dblab_instance", "prod")])
    }

    #[test]
    fn names_follow_dblab_and_stay_within_teleports_alphabet() {
        assert_eq!(clone_resource_name("prod", "abc123", 6000), "dblab-clone-prod-abc123-6000");
        assert_eq!(
            clone_resource_name("prod.eu", "my_clone.1", 6001),
            "dblab-clone-prod-eu-my-clone-1-6001"
        );
        assert_eq!(app_name("prod"), "dblab-api-prod");

        let long = "c".repeat(190);
        let name = clone_resource_name("prod", &long, 6000);
        assert_eq!(name.len(), MAX_NAME_LEN);
        assert!(name.starts_with("dblab-clone-prod-ccc"), "{name}");
        assert!(name.ends_with("-6000"), "{name}");
        // Two long IDs with the same beginning stay apart through the hash.
        let other = clone_resource_name("prod", &format!("{long}x"), 6000);
        assert_ne!(name, other);
        assert_eq!(name.len(), other.len());
        let hash = &name[name.len() - 5 - HASH_LEN..name.len() - 5];
        assert!(hash.bytes().all(|b| b.is_ascii_hexdigit()), "{name}");
    }

    #[test]
    fn app_names_must_be_dns_labels() {
        assert!(is_valid_app_name("dblab-api-prod"));
        assert!(!is_valid_app_name("dblab-api-Prod"));
        assert!(!is_valid_app_name("dblab-api-prod.eu"));
        assert!(!is_valid_app_name(&format!("dblab-api-{}", "a".repeat(60))));
        assert!(!is_valid_app_name("dblab-api-"));
    }

    #[test]
    fn labels_are_parsed_like_dblabs() {
        type Case<'a> = (&'a str, Result<(&'a str, &'a str), &'a str>);
        let cases: &[Case<'_>] = &[
            ("team=dba", Ok(("team", "dba"))),
            ("environment=staging", Ok(("environment", "staging"))),
            ("owner=a@b.com", Ok(("owner", "a@b.com"))),
            ("team", Err("expected non-empty key=value")),
            ("=x", Err("expected non-empty key=value")),
            ("team=", Err("expected non-empty key=value")),
            ("dblab=false", Err("is reserved")),
            ("clone_id=x", Err("is reserved")),
            ("bad key=x", Err("label key")),
            ("team=a\"b", Err("has a value")),
            ("team=a\nb: c", Err("has a value")),
        ];
        for (input, expected) in cases {
            match (parse_label(input), expected) {
                (Ok(pair), Ok((k, v))) => assert_eq!(pair, ((*k).to_owned(), (*v).to_owned())),
                (Err(error), Err(part)) => assert!(error.contains(part), "{input}: {error}"),
                (got, _) => panic!("{input}: got {got:?}, expected {expected:?}"),
            }
        }
        let duplicate = vec![("a".to_owned(), "1".to_owned()), ("a".to_owned(), "2".to_owned())];
        assert_eq!(custom_labels(duplicate), Err("duplicate label \"a\"".to_owned()));
        assert!(Naming::new("prod eu", BTreeMap::new()).is_err());
        assert!(Naming::new("", BTreeMap::new()).is_err());
    }

    #[test]
    fn the_db_document_carries_dblabs_labels() {
        let custom = BTreeMap::from([("team".to_owned(), "dba".to_owned())]);
        let naming = Naming::new("prod", custom).unwrap();
        let mut entry = clone("abc", 6000);
        entry.owner = "dev@example.com".to_owned();
        let document = naming.db_document(&entry);
        assert_eq!(
            document,
            json!({
                "kind": "db", "version": "v3",
                "metadata": {
                    "name": "dblab-clone-prod-abc-6000",
                    "labels": {
                        "clone_id": "abc", "dblab": "true", "dblab_instance": "prod",
                        "dblab_user": "dev@example.com", "environment": "prod", "team": "dba",
                    },
                },
                "spec": { "protocol": "postgres", "uri": "127.0.0.1:6000", "tls": { "mode": "insecure" } },
            })
        );
        // An owner that is not a safe value: no dblab_user label, and the caller is told.
        entry.owner = "dev+1@example.com".to_owned();
        assert!(naming.db_document(&entry)["metadata"]["labels"].get("dblab_user").is_none());
        assert!(Naming::owner_dropped(&entry));
        assert!(!Naming::owner_dropped(&clone("abc", 6000)));
        // The operator may set `environment`; the instance label stays the environment ID.
        let custom = BTreeMap::from([("environment".to_owned(), "production".to_owned())]);
        let app = Naming::new("prod", custom).unwrap().app_document("http://127.0.0.1:2345");
        assert_eq!(
            app,
            json!({
                "kind": "app", "version": "v3",
                "metadata": {
                    "name": "dblab-api-prod",
                    "labels": { "dblab": "true", "dblab_instance": "prod", "environment": "production" },
                },
                "spec": { "uri": "http://127.0.0.1:2345", "insecure_skip_verify": true },
            })
        );
    }

    #[test]
    fn ownership_by_instance_label_or_legacy_environment() {
        let naming = naming("prod");
        let cases: &[(&[(&str, &str)], bool)] = &[
            (&[("dblab", "true"), ("dblab_instance", "prod")], true),
            (&[("dblab", "true"), ("dblab_instance", "prod"), ("environment", "other")], true),
            (&[("dblab", "true"), ("dblab_instance", "staging"), ("environment", "prod")], false),
            (&[("dblab", "true"), ("environment", "prod")], true),
            (&[("dblab", "true"), ("environment", "staging")], false),
            (&[("dblab", "false"), ("dblab_instance", "prod")], false),
            (&[("dblab_instance", "prod")], false),
            (&[], false),
        ];
        for (labels, expected) in cases {
            let resource = registered("x", labels);
            assert_eq!(naming.owns(&resource.metadata.labels), *expected, "{labels:?}");
        }
    }

    #[test]
    fn clones_without_a_usable_port_are_skipped() {
        let mut api: api_types::Clone = serde_json::from_value(json!({
            "id": "c1", "status": {"code": "OK", "message": ""}, "db": {"port": "6000"}
        }))
        .unwrap();
        assert_eq!(CloneEntry::from_api(&api), Some(clone("c1", 6000)));
        for port in ["", "0", "x", "70000"] {
            api.db.port = port.to_owned();
            assert_eq!(CloneEntry::from_api(&api), None, "{port:?}");
        }
    }

    #[test]
    fn plans() {
        let naming = naming("prod");
        let foreign = registered(
            "dblab-clone-staging-a-6000",
            &[("dblab", "true"), ("dblab_instance", "staging")],
        );
        let manual = registered("payments", &[]);
        struct Case {
            name: &'static str,
            clones: Vec<CloneEntry>,
            registered: Vec<Registered>,
            expected: Plan,
        }
        let cases = vec![
            Case {
                name: "nothing anywhere",
                clones: vec![],
                registered: vec![foreign.clone(), manual.clone()],
                expected: Plan::Apply { register: vec![], remove: vec![] },
            },
            Case {
                name: "new clones are registered",
                clones: vec![clone("a", 6000), clone("b", 6001)],
                registered: vec![ours("dblab-clone-prod-a-6000")],
                expected: Plan::Apply { register: vec![clone("b", 6001)], remove: vec![] },
            },
            Case {
                name: "gone clones are removed, others' resources kept",
                clones: vec![clone("a", 6000)],
                registered: vec![
                    ours("dblab-clone-prod-a-6000"),
                    ours("dblab-clone-prod-old-6002"),
                    registered(
                        "dblab-clone-prod-legacy-6003",
                        &[("dblab", "true"), ("environment", "prod")],
                    ),
                    foreign.clone(),
                    manual.clone(),
                ],
                expected: Plan::Apply {
                    register: vec![],
                    remove: vec![
                        "dblab-clone-prod-legacy-6003".to_owned(),
                        "dblab-clone-prod-old-6002".to_owned(),
                    ],
                },
            },
            Case {
                name: "a clone that moved to another port is re-registered under its new name",
                clones: vec![clone("a", 6005)],
                registered: vec![ours("dblab-clone-prod-a-6000")],
                expected: Plan::Apply {
                    register: vec![clone("a", 6005)],
                    remove: vec!["dblab-clone-prod-a-6000".to_owned()],
                },
            },
            Case {
                name: "an empty clone list with registered resources skips the pass",
                clones: vec![],
                registered: vec![
                    ours("dblab-clone-prod-a-6000"),
                    ours("dblab-clone-prod-b-6001"),
                    foreign.clone(),
                ],
                expected: Plan::SkipEmptyCloneList { registered: 2 },
            },
            Case {
                name: "an empty clone list while only others have resources is no reason to skip",
                clones: vec![],
                registered: vec![foreign.clone()],
                expected: Plan::Apply { register: vec![], remove: vec![] },
            },
        ];
        for case in cases {
            assert_eq!(
                plan(&naming, &case.clones, &case.registered),
                case.expected,
                "{}",
                case.name
            );
        }
    }
}
