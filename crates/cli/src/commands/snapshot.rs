//! `scion snapshot list|create|destroy|update`.

use api_types::{CreateSnapshotRequest, SnapshotCloneRequest};

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
                        ..CreateSnapshotRequest::default()
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
