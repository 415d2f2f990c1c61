//! `scion instance status|version|full-refresh` and `scion full-refresh`.

use super::{Context, Failure};
use crate::args::InstanceCommand;
use crate::output;

pub(super) async fn run(context: &Context, command: &InstanceCommand) -> Result<(), Failure> {
    match command {
        InstanceCommand::Status => {
            let instance = context.client.status().await?;
            context.print(&instance, output::instance);
        }
        InstanceCommand::Version => {
            let engine = context.client.healthz().await?;
            context.print(&engine, |engine| {
                format!("{} ({} edition)\n", engine.version, engine.edition)
            });
        }
        InstanceCommand::FullRefresh => return full_refresh(context).await,
    }
    Ok(())
}

pub(super) async fn full_refresh(context: &Context) -> Result<(), Failure> {
    match context.client.full_refresh().await {
        Ok(response) => {
            context.print(&response, |response| format!("{}\n", response.message));
            Ok(())
        }
        Err(error) if error.is_not_found() => Err(Failure::operation(format!(
            "the server at {} does not offer a full refresh (POST /full-refresh answered 404: {error})",
            context.client.base_url()
        ))),
        Err(error) => Err(error.into()),
    }
}
