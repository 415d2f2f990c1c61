//! `scion snapshot list|create|destroy|update`.

use api_types::{CreateSnapshotRequest, RecoveryTargetRequest, SnapshotCloneRequest};

use super::{Context, Failure, spinner};
use crate::args::SnapshotCommand;
use crate::output;

pub(super) async fn run(context: &Context, command: SnapshotCommand) -> Result<(), Failure> {
    match command {
        SnapshotCommand::List(args) => {
            let snapshots = context.client.snapshots(args.branch.as_deref()).await?;
            context.print(&snapshots, |snapshots| output::snapshot_list(snapshots));
        }
        SnapshotCommand::Create(args) => {
            let waiting = spinner("taking a snapshot".to_owned());
            let result = match args.clone_id {
                Some(clone_id) => {
                    let message = args.message.unwrap_or_default();
                    let request = SnapshotCloneRequest { clone_id, message };
                    context.client.snapshot_clone(&request).await
                }
                None => {
                    let request = CreateSnapshotRequest {
                        pool_name: args.pool.unwrap_or_default(),
                        recovery_target: args.at.as_deref().map(recovery_target),
                    };
                    context.client.create_snapshot(&request).await
                }
            };
            waiting.finish_and_clear();
            context.print(&result?, output::snapshot_detail);
        }
        SnapshotCommand::Update(args) => {
            let request = args.protected.update_request();
            let snapshot = context.client.update_snapshot(&args.snapshot_id, &request).await?;
            context.print(&snapshot, output::snapshot_detail);
        }
        SnapshotCommand::Destroy(args) => {
            let response = context.client.delete_snapshot(&args.snapshot_id, args.force).await?;
            context.print(&response, |response| {
                format!("{}: {}\n", response.message, args.snapshot_id)
            });
        }
    }
    Ok(())
}

/// `--at`: a WAL location when it has the `X/Y` form (a time never has a `/`), else a time;
/// the server checks either and names the WAL window when it is outside.
pub(super) fn recovery_target(at: &str) -> RecoveryTargetRequest {
    let at = at.trim().to_owned();
    if at.contains('/') {
        RecoveryTargetRequest { time: None, lsn: Some(at) }
    } else {
        RecoveryTargetRequest { time: Some(at), lsn: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_is_a_time_or_a_wal_location() {
        let lsn = recovery_target(" 0/3000148");
        assert_eq!((lsn.time, lsn.lsn.as_deref()), (None, Some("0/3000148")));
        let time = recovery_target("2026-12-02T10:00:00Z");
        assert_eq!((time.time.as_deref(), time.lsn), (Some("2026-12-02T10:00:00Z"), None));
    }
}
