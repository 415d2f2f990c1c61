//! The few RDS Query API actions `rds-refresh` needs, as signed form POSTs over reqwest with the
//! XML answers read by element name: describe instances, clusters and their snapshots, restore an
//! instance or a cluster (and add its instance) from a snapshot, lift deletion protection,
//! delete. It decides nothing.

use std::collections::BTreeMap;

use anyhow::{Context as _, anyhow};
use chrono::{DateTime, Utc};
use reqwest::Url;

use super::sigv4::{self, Credentials};

const VERSION: &str = "2014-10-31";
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// An answer RDS gave as an `ErrorResponse`.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {code}: {message} (HTTP {status})")]
pub(crate) struct ApiError {
    pub(crate) action: String,
    pub(crate) status: u16,
    pub(crate) code: String,
    pub(crate) message: String,
}

/// A DB instance, as `DescribeDBInstances` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) class: String,
    pub(crate) engine: String,
    pub(crate) address: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) created: Option<DateTime<Utc>>,
    pub(crate) deletion_protection: bool,
    pub(crate) tags: BTreeMap<String, String>,
    /// The Aurora cluster it belongs to.
    pub(crate) cluster: Option<String>,
}

/// A DB snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) id: String,
    /// The instance or cluster it was taken of.
    pub(crate) instance: String,
    pub(crate) status: String,
    pub(crate) kind: String,
    pub(crate) engine: String,
    pub(crate) created: Option<DateTime<Utc>>,
}

/// An Aurora cluster, as `DescribeDBClusters` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cluster {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) endpoint: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) created: Option<DateTime<Utc>>,
    pub(crate) deletion_protection: bool,
    pub(crate) tags: BTreeMap<String, String>,
    pub(crate) members: Vec<String>,
}

/// What `RestoreDBInstanceFromDBSnapshot` is asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Restore {
    pub(crate) id: String,
    pub(crate) snapshot: String,
    pub(crate) class: String,
    pub(crate) port: Option<u16>,
    pub(crate) subnet_group: Option<String>,
    pub(crate) security_groups: Vec<String>,
    pub(crate) publicly_accessible: bool,
    pub(crate) iam_auth: bool,
    pub(crate) parameter_group: Option<String>,
    pub(crate) option_group: Option<String>,
    pub(crate) storage_type: Option<String>,
    pub(crate) deletion_protection: bool,
    pub(crate) tags: BTreeMap<String, String>,
}

/// The RDS endpoint of one region, with the credentials to sign with.
#[derive(Debug, Clone)]
pub(crate) struct Rds {
    http: reqwest::Client,
    url: Url,
    host: String,
    region: String,
    credentials: Credentials,
}

impl Rds {
    /// `endpoint` replaces `https://rds.<region>.amazonaws.com/` (LocalStack, moto, a VPC
    /// endpoint).
    pub(crate) fn new(
        region: &str,
        endpoint: Option<&str>,
        credentials: Credentials,
    ) -> anyhow::Result<Rds> {
        let text =
            endpoint.map_or_else(|| format!("https://rds.{region}.amazonaws.com/"), str::to_owned);
        let url = Url::parse(&text).with_context(|| format!("parse the RDS endpoint {text:?}"))?;
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            (None, _) => return Err(anyhow!("the RDS endpoint {text:?} has no host")),
        };
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("build the HTTP client")?;
        Ok(Rds { http, url, host, region: region.to_owned(), credentials })
    }

    async fn call(&self, action: &str, params: &[(&str, String)]) -> anyhow::Result<String> {
        let mut pairs = vec![("Action", action.to_owned()), ("Version", VERSION.to_owned())];
        pairs.extend(params.iter().cloned());
        let body = pairs
            .iter()
            .map(|(key, value)| format!("{}={}", sigv4::uri_encode(key), sigv4::uri_encode(value)))
            .collect::<Vec<_>>()
            .join("&");
        let request = sigv4::Request {
            method: "POST",
            host: &self.host,
            path: self.url.path(),
            query: "",
            content_type: FORM,
            body: body.as_bytes(),
        };
        let headers = sigv4::sign(&request, &self.credentials, &self.region, "rds", Utc::now());
        let mut builder =
            self.http.post(self.url.clone()).header("Content-Type", FORM).body(body.clone());
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let response = builder.send().await.with_context(|| format!("call RDS {action}"))?;
        let status = response.status().as_u16();
        let text =
            response.text().await.with_context(|| format!("read RDS's answer to {action}"))?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let document = roxmltree::Document::parse(&text).ok();
        let field = |name: &str| {
            document.as_ref().and_then(|doc| text_of(doc.root_element(), name)).unwrap_or_default()
        };
        Err(ApiError {
            action: action.to_owned(),
            status,
            code: field("Code"),
            message: field("Message"),
        }
        .into())
    }

    /// `action` for one `key=id`; RDS's `not_found` code is `None`.
    async fn one<T>(
        &self,
        action: &str,
        (key, id): (&str, &str),
        not_found: &str,
        parse: fn(&str) -> anyhow::Result<Vec<T>>,
    ) -> anyhow::Result<Option<T>> {
        match self.call(action, &[(key, id.to_owned())]).await {
            Ok(xml) => Ok(parse(&xml)?.into_iter().next()),
            Err(error) if is_code(&error, not_found) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Every item `action` lists, page by page.
    async fn all<T>(
        &self,
        action: &str,
        parse: fn(&str) -> anyhow::Result<Vec<T>>,
    ) -> anyhow::Result<Vec<T>> {
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut params = vec![("MaxRecords", "100".to_owned())];
            if let Some(marker) = &marker {
                params.push(("Marker", marker.clone()));
            }
            let xml = self.call(action, &params).await?;
            all.extend(parse(&xml)?);
            marker = read(&xml)?.and_then(|doc| text_of(doc.root_element(), "Marker"));
            if marker.as_deref().is_none_or(str::is_empty) {
                return Ok(all);
            }
        }
    }

    /// One instance, or `None` when RDS does not know it.
    pub(crate) async fn instance(&self, id: &str) -> anyhow::Result<Option<Instance>> {
        let key = ("DBInstanceIdentifier", id);
        self.one("DescribeDBInstances", key, "DBInstanceNotFound", parse_instances).await
    }

    /// Every instance of the region.
    pub(crate) async fn instances(&self) -> anyhow::Result<Vec<Instance>> {
        self.all("DescribeDBInstances", parse_instances).await
    }

    /// The instance's snapshots of one type (`automated`, `manual`).
    pub(crate) async fn snapshots(
        &self,
        instance: &str,
        kind: &str,
    ) -> anyhow::Result<Vec<Snapshot>> {
        let params =
            [("DBInstanceIdentifier", instance.to_owned()), ("SnapshotType", kind.to_owned())];
        parse_snapshots(&self.call("DescribeDBSnapshots", &params).await?, false)
    }

    /// One snapshot by its identifier.
    pub(crate) async fn snapshot(&self, id: &str) -> anyhow::Result<Option<Snapshot>> {
        let key = ("DBSnapshotIdentifier", id);
        self.one("DescribeDBSnapshots", key, "DBSnapshotNotFound", parse_instance_snapshots).await
    }

    /// `RestoreDBInstanceFromDBSnapshot`.
    pub(crate) async fn restore(&self, restore: &Restore) -> anyhow::Result<Instance> {
        let mut params = vec![
            ("DBInstanceIdentifier", restore.id.clone()),
            ("DBSnapshotIdentifier", restore.snapshot.clone()),
            ("DBInstanceClass", restore.class.clone()),
            ("PubliclyAccessible", restore.publicly_accessible.to_string()),
            ("EnableIAMDatabaseAuthentication", restore.iam_auth.to_string()),
            ("DeletionProtection", restore.deletion_protection.to_string()),
        ];
        let optional = [
            ("DBSubnetGroupName", &restore.subnet_group),
            ("DBParameterGroupName", &restore.parameter_group),
            ("OptionGroupName", &restore.option_group),
            ("StorageType", &restore.storage_type),
        ];
        params.extend(optional.into_iter().filter_map(|(key, value)| Some((key, value.clone()?))));
        if let Some(port) = restore.port {
            params.push(("Port", port.to_string()));
        }
        let listed = numbered(restore, "VpcSecurityGroupIds.VpcSecurityGroupId");
        params.extend(listed.iter().map(|(key, value)| (key.as_str(), value.clone())));
        let xml = self.call("RestoreDBInstanceFromDBSnapshot", &params).await?;
        parse_instances(&xml)?.into_iter().next().ok_or_else(|| {
            anyhow!("RDS answered RestoreDBInstanceFromDBSnapshot without an instance")
        })
    }

    /// Lifts the instance's deletion protection, at once.
    pub(crate) async fn disable_deletion_protection(&self, id: &str) -> anyhow::Result<()> {
        let params = [
            ("DBInstanceIdentifier", id.to_owned()),
            ("DeletionProtection", "false".to_owned()),
            ("ApplyImmediately", "true".to_owned()),
        ];
        self.call("ModifyDBInstance", &params).await.map(drop)
    }

    /// Deletes the instance without a final snapshot; `false` when it was already gone.
    pub(crate) async fn delete(&self, id: &str) -> anyhow::Result<bool> {
        let params =
            [("DBInstanceIdentifier", id.to_owned()), ("SkipFinalSnapshot", "true".to_owned())];
        match self.call("DeleteDBInstance", &params).await {
            Ok(_) => Ok(true),
            Err(error) if is_code(&error, "DBInstanceNotFound") => Ok(false),
            Err(error) => Err(error),
        }
    }
}

impl Rds {
    /// One Aurora cluster, or `None` when RDS does not know it.
    pub(crate) async fn cluster(&self, id: &str) -> anyhow::Result<Option<Cluster>> {
        let key = ("DBClusterIdentifier", id);
        self.one("DescribeDBClusters", key, "DBClusterNotFoundFault", parse_clusters).await
    }

    /// Every Aurora cluster of the region.
    pub(crate) async fn clusters(&self) -> anyhow::Result<Vec<Cluster>> {
        self.all("DescribeDBClusters", parse_clusters).await
    }

    /// The cluster's snapshots of one type.
    pub(crate) async fn cluster_snapshots(
        &self,
        cluster: &str,
        kind: &str,
    ) -> anyhow::Result<Vec<Snapshot>> {
        let params =
            [("DBClusterIdentifier", cluster.to_owned()), ("SnapshotType", kind.to_owned())];
        parse_snapshots(&self.call("DescribeDBClusterSnapshots", &params).await?, true)
    }

    /// One cluster snapshot by its identifier.
    pub(crate) async fn cluster_snapshot(&self, id: &str) -> anyhow::Result<Option<Snapshot>> {
        let key = ("DBClusterSnapshotIdentifier", id);
        let not_found = "DBClusterSnapshotNotFoundFault";
        self.one("DescribeDBClusterSnapshots", key, not_found, parse_cluster_snapshots).await
    }

    /// `RestoreDBClusterFromSnapshot` (the engine taken from the snapshot), then
    /// `CreateDBInstance` of its one member is [`Rds::create_member`].
    pub(crate) async fn restore_cluster(
        &self,
        restore: &Restore,
        engine: &str,
        cluster_parameter_group: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut params = vec![
            ("DBClusterIdentifier", restore.id.clone()),
            ("SnapshotIdentifier", restore.snapshot.clone()),
            ("Engine", engine.to_owned()),
            ("EnableIAMDatabaseAuthentication", restore.iam_auth.to_string()),
            ("DeletionProtection", restore.deletion_protection.to_string()),
        ];
        if let Some(group) = &restore.subnet_group {
            params.push(("DBSubnetGroupName", group.clone()));
        }
        if let Some(group) = cluster_parameter_group {
            params.push(("DBClusterParameterGroupName", group.to_owned()));
        }
        if let Some(port) = restore.port {
            params.push(("Port", port.to_string()));
        }
        let listed = numbered(restore, "VpcSecurityGroupIds.VpcSecurityGroupId");
        params.extend(listed.iter().map(|(key, value)| (key.as_str(), value.clone())));
        self.call("RestoreDBClusterFromSnapshot", &params).await.map(drop)
    }

    /// The cluster's instance, `<cluster>-instance`.
    pub(crate) async fn create_member(
        &self,
        restore: &Restore,
        engine: &str,
        id: &str,
    ) -> anyhow::Result<()> {
        let mut params = vec![
            ("DBInstanceIdentifier", id.to_owned()),
            ("DBClusterIdentifier", restore.id.clone()),
            ("DBInstanceClass", restore.class.clone()),
            ("Engine", engine.to_owned()),
            ("PubliclyAccessible", restore.publicly_accessible.to_string()),
        ];
        if let Some(group) = &restore.parameter_group {
            params.push(("DBParameterGroupName", group.clone()));
        }
        let tags = tag_params(&restore.tags);
        params.extend(tags.iter().map(|(key, value)| (key.as_str(), value.clone())));
        self.call("CreateDBInstance", &params).await.map(drop)
    }

    /// Lifts the cluster's deletion protection, at once.
    pub(crate) async fn disable_cluster_deletion_protection(&self, id: &str) -> anyhow::Result<()> {
        let params = [
            ("DBClusterIdentifier", id.to_owned()),
            ("DeletionProtection", "false".to_owned()),
            ("ApplyImmediately", "true".to_owned()),
        ];
        self.call("ModifyDBCluster", &params).await.map(drop)
    }

    /// Deletes the cluster without a final snapshot; `false` when it was already gone.
    pub(crate) async fn delete_cluster(&self, id: &str) -> anyhow::Result<bool> {
        let params =
            [("DBClusterIdentifier", id.to_owned()), ("SkipFinalSnapshot", "true".to_owned())];
        match self.call("DeleteDBCluster", &params).await {
            Ok(_) => Ok(true),
            Err(error) if is_code(&error, "DBClusterNotFoundFault") => Ok(false),
            Err(error) => Err(error),
        }
    }
}

/// `Tags.Tag.N.Key` / `Tags.Tag.N.Value`.
fn tag_params(tags: &BTreeMap<String, String>) -> Vec<(String, String)> {
    tags.iter()
        .enumerate()
        .flat_map(|(i, (key, value))| {
            [
                (format!("Tags.Tag.{}.Key", i + 1), key.clone()),
                (format!("Tags.Tag.{}.Value", i + 1), value.clone()),
            ]
        })
        .collect()
}

/// The security groups as `<prefix>.N`, and the tags.
fn numbered(restore: &Restore, prefix: &str) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = restore
        .security_groups
        .iter()
        .enumerate()
        .map(|(i, group)| (format!("{prefix}.{}", i + 1), group.clone()))
        .collect();
    params.extend(tag_params(&restore.tags));
    params
}

/// True when `error` is RDS's answer with this code.
pub(crate) fn is_code(error: &anyhow::Error, code: &str) -> bool {
    error.downcast_ref::<ApiError>().is_some_and(|api| api.code == code)
}

fn read(xml: &str) -> anyhow::Result<Option<roxmltree::Document<'_>>> {
    roxmltree::Document::parse(xml).map(Some).context("read RDS's XML answer")
}

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|child| child.has_tag_name(name))
}

fn text(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    child(node, name).and_then(|child| child.text()).map(str::to_owned)
}

/// The text of the first descendant named `name`.
fn text_of(node: roxmltree::Node<'_, '_>, name: &str) -> Option<String> {
    node.descendants()
        .find(|child| child.has_tag_name(name))
        .and_then(|child| child.text())
        .map(str::to_owned)
}

fn time(node: roxmltree::Node<'_, '_>, name: &str) -> Option<DateTime<Utc>> {
    text(node, name)
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
        .map(|time| time.with_timezone(&Utc))
}

fn tags(node: roxmltree::Node<'_, '_>) -> BTreeMap<String, String> {
    child(node, "TagList")
        .map(|list| {
            list.children()
                .filter(|tag| tag.has_tag_name("Tag"))
                .filter_map(|tag| Some((text(tag, "Key")?, text(tag, "Value").unwrap_or_default())))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn parse_instances(xml: &str) -> anyhow::Result<Vec<Instance>> {
    let Some(document) = read(xml)? else { return Ok(Vec::new()) };
    Ok(document
        .descendants()
        .filter(|node| node.has_tag_name("DBInstance"))
        .map(|node| {
            let endpoint = child(node, "Endpoint");
            Instance {
                id: text(node, "DBInstanceIdentifier").unwrap_or_default(),
                status: text(node, "DBInstanceStatus").unwrap_or_default(),
                class: text(node, "DBInstanceClass").unwrap_or_default(),
                engine: text(node, "Engine").unwrap_or_default(),
                address: endpoint.and_then(|endpoint| text(endpoint, "Address")),
                port: endpoint
                    .and_then(|endpoint| text(endpoint, "Port"))
                    .and_then(|port| port.parse().ok()),
                created: time(node, "InstanceCreateTime"),
                deletion_protection: text(node, "DeletionProtection").as_deref() == Some("true"),
                tags: tags(node),
                cluster: text(node, "DBClusterIdentifier"),
            }
        })
        .collect())
}

fn parse_instance_snapshots(xml: &str) -> anyhow::Result<Vec<Snapshot>> {
    parse_snapshots(xml, false)
}

fn parse_cluster_snapshots(xml: &str) -> anyhow::Result<Vec<Snapshot>> {
    parse_snapshots(xml, true)
}

/// `DBSnapshot` or `DBClusterSnapshot` elements.
pub(crate) fn parse_snapshots(xml: &str, cluster: bool) -> anyhow::Result<Vec<Snapshot>> {
    let Some(document) = read(xml)? else { return Ok(Vec::new()) };
    let (element, id, source) = if cluster {
        ("DBClusterSnapshot", "DBClusterSnapshotIdentifier", "DBClusterIdentifier")
    } else {
        ("DBSnapshot", "DBSnapshotIdentifier", "DBInstanceIdentifier")
    };
    Ok(document
        .descendants()
        .filter(|node| node.has_tag_name(element))
        .map(|node| Snapshot {
            id: text(node, id).unwrap_or_default(),
            instance: text(node, source).unwrap_or_default(),
            status: text(node, "Status").unwrap_or_default(),
            kind: text(node, "SnapshotType").unwrap_or_default(),
            engine: text(node, "Engine").unwrap_or_default(),
            created: time(node, "SnapshotCreateTime"),
        })
        .collect())
}

pub(crate) fn parse_clusters(xml: &str) -> anyhow::Result<Vec<Cluster>> {
    let Some(document) = read(xml)? else { return Ok(Vec::new()) };
    Ok(document
        .descendants()
        .filter(|node| node.has_tag_name("DBCluster"))
        .map(|node| Cluster {
            id: text(node, "DBClusterIdentifier").unwrap_or_default(),
            status: text(node, "Status").unwrap_or_default(),
            endpoint: text(node, "Endpoint"),
            port: text(node, "Port").and_then(|port| port.parse().ok()),
            created: time(node, "ClusterCreateTime"),
            deletion_protection: text(node, "DeletionProtection").as_deref() == Some("true"),
            tags: tags(node),
            members: child(node, "DBClusterMembers")
                .map(|members| {
                    members
                        .children()
                        .filter(|member| member.has_tag_name("DBClusterMember"))
                        .filter_map(|member| text(member, "DBInstanceIdentifier"))
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_instances_and_snapshots_as_rds_writes_them() {
        let xml = r#"<DescribeDBInstancesResponse xmlns="http://rds.amazonaws.com/doc/2014-10-31/"><DescribeDBInstancesResult><DBInstances><DBInstance><DBInstanceIdentifier>dblab-refresh-20261203-101500</DBInstanceIdentifier><DBInstanceClass>db.t3.medium</DBInstanceClass><Engine>postgres</Engine><DBInstanceStatus>available</DBInstanceStatus><Endpoint><Address>x.aaaaaaaaaa.us-east-1.rds.amazonaws.com</Address><Port>5499</Port></Endpoint><InstanceCreateTime>2026-12-03T10:13:27.309456Z</InstanceCreateTime><DeletionProtection>true</DeletionProtection><TagList><Tag><Key>ManagedBy</Key><Value>dblab-rds-refresh</Value></Tag><Tag><Key>AutoDelete</Key><Value>true</Value></Tag></TagList></DBInstance></DBInstances><Marker>next</Marker></DescribeDBInstancesResult></DescribeDBInstancesResponse>"#;
        let instances = parse_instances(xml).unwrap();
        assert_eq!(instances.len(), 1);
        let instance = &instances[0];
        assert_eq!(instance.id, "dblab-refresh-20261203-101500");
        assert_eq!(instance.address.as_deref(), Some("x.aaaaaaaaaa.us-east-1.rds.amazonaws.com"));
        assert_eq!(instance.port, Some(5499));
        assert!(instance.deletion_protection);
        assert_eq!(instance.tags["ManagedBy"], "dblab-rds-refresh");
        assert_eq!(instance.created.unwrap().to_rfc3339(), "2026-12-03T10:13:27.309456+00:00");
        let xml = r#"<DescribeDBSnapshotsResponse><DescribeDBSnapshotsResult><DBSnapshots><DBSnapshot><DBSnapshotIdentifier>rds:prod-2026-12-03-10-13</DBSnapshotIdentifier><DBInstanceIdentifier>prod</DBInstanceIdentifier><SnapshotCreateTime>2026-12-03T10:13:27.546503Z</SnapshotCreateTime><Status>available</Status><SnapshotType>automated</SnapshotType></DBSnapshot></DBSnapshots></DescribeDBSnapshotsResult></DescribeDBSnapshotsResponse>"#;
        let snapshots = parse_snapshots(xml, false).unwrap();
        assert_eq!(snapshots[0].id, "rds:prod-2026-12-03-10-13");
        assert_eq!(snapshots[0].kind, "automated");
        assert!(parse_instances("<not xml").is_err());
    }
}
