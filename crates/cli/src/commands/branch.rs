//! `scion branch`, `scion switch`, `scion commit` and `scion log`: DBLab's branching verbs, with
//! the current branch kept in the CLI's configuration file as DBLab keeps `current_branch`.

use api_types::{CommitRequest, CreateBranchRequest};

use super::{Context, Failure, emit, spinner};
use crate::args::{BranchArgs, BranchBase, BranchCommand, CommitArgs, Output};
use crate::config::MAIN_BRANCH;
use crate::output;
use crate::protection::Protection;

pub(super) async fn run(context: &Context, args: BranchArgs) -> Result<(), Failure> {
    match args.command {
        Some(BranchCommand::Create(create_args)) => {
            create(context, &create_args.name, &create_args.base).await
        }
        Some(BranchCommand::List) => list(context).await,
        Some(BranchCommand::Log(log_args)) => log(context, log_args.branch.as_deref()).await,
        Some(BranchCommand::Delete(name)) => delete(context, &name.name).await,
        None => match (args.delete, args.name, args.protected) {
            (Some(name), _, _) => delete(context, &name).await,
            (None, Some(name), Some(protection)) => protect(context, &name, protection).await,
            (None, Some(name), None) => create(context, &name, &args.base).await,
            (None, None, _) => {
                if args.base.parent_branch.is_some() || args.base.snapshot_id.is_some() {
                    return Err(Failure::Usage(anyhow::anyhow!(
                        "give the new branch's name: `scion branch NAME --parent-branch P`"
                    )));
                }
                list(context).await
            }
        },
    }
}

async fn list(context: &Context) -> Result<(), Failure> {
    let branches = context.client.branches().await?;
    let current = context.config.current_branch();
    context.print(&branches, |branches| output::branch_list(branches, current));
    Ok(())
}

/// Creates a branch (from the current branch unless told otherwise) and switches to it.
async fn create(context: &Context, name: &str, base: &BranchBase) -> Result<(), Failure> {
    let request = CreateBranchRequest {
        branch_name: name.to_owned(),
        base_branch: match (&base.parent_branch, &base.snapshot_id, &base.at) {
            (Some(parent), _, _) => parent.clone(),
            (None, None, None) => context.config.current_branch().to_owned(),
            (None, _, _) => String::new(),
        },
        snapshot_id: base.snapshot_id.clone().unwrap_or_default(),
        recovery_target: base.at.as_deref().map(super::snapshot::recovery_target),
    };
    // A branch at a point in time replays WAL first: say so while it does.
    let waiting = base.at.as_ref().map(|at| spinner(format!("replaying WAL to {at}")));
    let created = context.client.create_branch(&request).await;
    if let Some(waiting) = waiting {
        waiting.finish_and_clear();
    }
    let created = created?;
    set_current_branch(context, &created.name)?;
    context.print(&created, |created| format!("Switched to new branch '{}'\n", created.name));
    Ok(())
}

async fn delete(context: &Context, name: &str) -> Result<(), Failure> {
    if name == context.config.current_branch() {
        return Err(Failure::operation(format!(
            "cannot delete the current branch {name:?}; `scion switch` to another one first"
        )));
    }
    let response = context.client.delete_branch(name).await?;
    // DBLab's CLI goes back to main after a deletion.
    set_current_branch(context, MAIN_BRANCH)?;
    context.print(&response, |response| format!("{}: {name}\n", response.message));
    Ok(())
}

async fn protect(context: &Context, name: &str, protection: Protection) -> Result<(), Failure> {
    let answer = context.client.update_branch(name, &protection.update_request()).await?;
    context.print(&answer, output::branch_protection);
    Ok(())
}

/// Makes `name` the current branch once the server confirms it exists.
pub(super) async fn switch(context: &Context, name: &str) -> Result<(), Failure> {
    let branches = context.client.branches().await?;
    let Some(branch) = branches.iter().find(|branch| branch.name == name) else {
        return Err(Failure::operation(format!("branch {name:?} not found")));
    };
    set_current_branch(context, name)?;
    match context.output {
        Output::Json => emit(&output::json(branch)),
        Output::Table => emit(&format!("Switched to branch '{name}'\n")),
    }
    Ok(())
}

pub(super) async fn commit(context: &Context, args: CommitArgs) -> Result<(), Failure> {
    let request =
        CommitRequest { clone_id: args.clone_id, message: args.message.unwrap_or_default() };
    let committed = context.client.commit(&request).await?;
    context.print(&committed, |committed| format!("Committed {}\n", committed.snapshot_id));
    Ok(())
}

pub(super) async fn log(context: &Context, branch: Option<&str>) -> Result<(), Failure> {
    let branch = branch.unwrap_or_else(|| context.config.current_branch());
    let commits = context.client.branch_log(branch).await?;
    context.print(&commits, |commits| output::commit_log(commits));
    Ok(())
}

fn set_current_branch(context: &Context, name: &str) -> Result<(), Failure> {
    if context.config.current_branch() == name {
        return Ok(());
    }
    // Re-read: the file may have changed since this command started (another `scion init`).
    let mut file =
        crate::config::ConfigFile::load(&context.config_path).map_err(Failure::Operation)?;
    let mut environment = file.active().map_err(Failure::Operation)?;
    environment.current_branch = Some(name.to_owned());
    file.set_active(environment);
    file.save(&context.config_path).map_err(Failure::Operation)
}
