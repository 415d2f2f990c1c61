//! `scion snapshot list|create|destroy`.

use api_types::CreateSnapshotRequest;

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
            let request = CreateSnapshotRequest { pool_name: args.pool.unwrap_or_default() };
            let waiting = spinner("taking a snapshot".to_owned());
            let result = context.client.create_snapshot(&request).await;
            waiting.finish_and_clear();
            context.print(&result?, output::snapshot_detail);
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
