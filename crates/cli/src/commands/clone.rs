//! `scion clone create|list|status|update|reset|destroy|logs`; the observation verbs are in
//! `observation.rs`.

use api_types::{
    CloneLimits, CreateCloneRequest, DatabaseRequest, PatchCloneRequest, ResetCloneRequest,
    SnapshotRef, StatusCode,
};

use super::{Context, Failure, emit, spinner};
use crate::args::{
    CloneCommand, CloneCreateArgs, CloneDestroyArgs, CloneLogsArgs, CloneResetArgs,
    CloneUpdateArgs, Output,
};
use crate::output;
use crate::protection::Protection;

pub(super) async fn run(context: &Context, command: CloneCommand) -> Result<(), Failure> {
    match command {
        CloneCommand::Create(args) => create(context, args).await,
        CloneCommand::List => {
            let clones = context.client.clones().await?;
            context.print(&clones, |clones| output::clone_list(clones));
            Ok(())
        }
        CloneCommand::Status(args) => {
            let clone = context.client.clone_status(&args.clone_id).await?;
            context.print(&clone, output::clone_detail);
            Ok(())
        }
        CloneCommand::Update(args) => update(context, &args).await,
        CloneCommand::Reset(args) => reset(context, args).await,
        CloneCommand::Destroy(args) => destroy(context, &args).await,
        CloneCommand::Stop(args) => {
            let clone = context.client.stop_clone(&args.clone_id).await?;
            context.print(&clone, output::clone_detail);
            Ok(())
        }
        CloneCommand::Start(args) => {
            let clone = context.client.start_clone(&args.clone_id).await?;
            context.print(&clone, output::clone_detail);
            Ok(())
        }
        CloneCommand::StartObservation(args) => super::observation::start(context, args).await,
        CloneCommand::StopObservation(args) => super::observation::stop(context, args).await,
        CloneCommand::SummaryObservation(args) => super::observation::summary(context, &args).await,
        CloneCommand::DownloadArtifact(args) => super::observation::download(context, args).await,
        CloneCommand::Logs(args) => logs(context, &args).await,
    }
}

/// The log is text whatever `--output` says: it is the server's own lines.
async fn logs(context: &Context, args: &CloneLogsArgs) -> Result<(), Failure> {
    if !args.follow {
        emit(&context.client.clone_logs(&args.clone_id, args.tail).await?);
        return Ok(());
    }
    let mut log = context.client.follow_clone_logs(&args.clone_id, args.tail).await?;
    while let Some(text) = log.next().await? {
        emit(&text);
    }
    Ok(())
}

async fn create(context: &Context, args: CloneCreateArgs) -> Result<(), Failure> {
    let (protected, protection_duration_minutes) = Protection::fields(args.protected);
    let request = CreateCloneRequest {
        id: args.id.unwrap_or_default(),
        protected,
        protection_duration_minutes,
        // As in DBLab's CLI, a clone goes on the current branch unless told otherwise.
        branch: args.branch.or_else(|| context.config.current_branch.clone()).unwrap_or_default(),
        snapshot: args.snapshot_id.map(|id| SnapshotRef { id }),
        extra_conf: args.extra_config.into_iter().collect(),
        db: Some(DatabaseRequest {
            username: args.username,
            password: args.password,
            restricted: args.restricted,
            db_name: args.db_name.unwrap_or_default(),
        }),
        limits: Some(CloneLimits { cpu: args.cpu, memory: args.memory, disk: args.disk })
            .filter(|limits| *limits != CloneLimits::default()),
        client_certificate: args.client_cert.is_some(),
    };
    // Before the request: the answer holds the only copy of the key.
    if let Some(dir) = &args.client_cert {
        prepare_cert_dir(dir)?;
    }
    let wait = (!args.no_wait).then_some(context.timeout);
    let waiting = wait.map(|_| spinner("creating the clone".to_owned()));
    let result = context.client.create_clone(&request, wait).await;
    if let Some(waiting) = waiting {
        waiting.finish_and_clear();
    }
    let mut clone = result?;
    if let Some(dir) = &args.client_cert {
        let Some(certificate) = clone.client_certificate.take() else {
            return Err(Failure::operation(
                "the server sent no client certificate (a server without TLS on clones)",
            ));
        };
        write_client_cert(dir, &certificate)?;
    }
    if args.no_wait {
        context.print(&clone, output::clone_detail);
        return Ok(());
    }
    settled(context, &clone, &StatusCode::Creating, "created")
}

/// libpq's default file names (`~/.postgresql/`), so `PGSSLCERT`-free setups find them.
const CLIENT_CERT_FILES: [&str; 3] = ["postgresql.crt", "postgresql.key", "root.crt"];

/// Makes `dir` (0700 when new) and checks that no certificate file would be overwritten.
fn prepare_cert_dir(dir: &std::path::Path) -> Result<(), Failure> {
    use std::os::unix::fs::DirBuilderExt as _;
    let usage = |message: String| Failure::Usage(anyhow::anyhow!(message));
    if let Err(error) = std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        return Err(usage(format!("cannot create {}: {error}", dir.display())));
    }
    for name in CLIENT_CERT_FILES {
        let path = dir.join(name);
        if path.exists() {
            return Err(usage(format!("{} exists; choose an empty directory", path.display())));
        }
    }
    Ok(())
}

/// Writes the certificate, its key and the CA certificate into `dir`, each mode 0600.
fn write_client_cert(
    dir: &std::path::Path,
    certificate: &api_types::ClientCertificate,
) -> Result<(), Failure> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let contents = [&certificate.certificate, &certificate.key, &certificate.ca];
    for (name, text) in CLIENT_CERT_FILES.into_iter().zip(contents) {
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|error| {
                Failure::operation(format!("cannot write {}: {error}", path.display()))
            })?;
    }
    Ok(())
}

async fn update(context: &Context, args: &CloneUpdateArgs) -> Result<(), Failure> {
    // As in DBLab, clone protection is two-state: no --protected lifts it.
    let (protected, protection_duration_minutes) = Protection::fields(args.protected);
    let request = PatchCloneRequest { protected, protection_duration_minutes };
    let clone = context.client.update_clone(&args.clone_id, &request).await?;
    context.print(&clone, output::clone_detail);
    Ok(())
}

async fn reset(context: &Context, args: CloneResetArgs) -> Result<(), Failure> {
    let request = ResetCloneRequest {
        snapshot_id: args.snapshot_id.unwrap_or_default(),
        latest: args.latest,
    };
    if args.no_wait {
        context.client.reset_clone(&args.clone_id, &request, None).await?;
        // The API answers a reset with an empty body; show where the clone stands instead.
        let clone = context.client.clone_status(&args.clone_id).await?;
        context.print(&clone, output::clone_detail);
        return Ok(());
    }
    let waiting = spinner(format!("resetting clone {}", args.clone_id));
    let result = context.client.reset_clone(&args.clone_id, &request, Some(context.timeout)).await;
    waiting.finish_and_clear();
    let clone = match result? {
        Some(clone) => clone,
        // A server without Scion's `wait` extension (DBLab) answers with an empty body at once.
        None => context.client.clone_status(&args.clone_id).await?,
    };
    settled(context, &clone, &StatusCode::Resetting, "reset")
}

async fn destroy(context: &Context, args: &CloneDestroyArgs) -> Result<(), Failure> {
    let id = &args.clone_id;
    context.client.destroy_clone(id).await?;
    if args.no_wait {
        if context.output == Output::Table {
            emit(&format!("Clone {id} is being destroyed.\n"));
        }
        return Ok(());
    }
    let waiting = spinner(format!("destroying clone {id}"));
    let result = context.client.wait_clone_gone(id, context.timeout).await;
    waiting.finish_and_clear();
    match result? {
        None => {
            // The API's answer to DELETE is an empty body, so JSON output prints nothing.
            if context.output == Output::Table {
                emit(&format!("Clone {id} destroyed.\n"));
            }
            Ok(())
        }
        Some(clone) => Err(Failure::operation(format!(
            "clone {id} was not destroyed: {} {}",
            clone.status.code, clone.status.message
        ))),
    }
}

/// Prints a clone that was waited for, and fails unless it is ready.
fn settled(
    context: &Context,
    clone: &api_types::Clone,
    pending: &StatusCode,
    done: &str,
) -> Result<(), Failure> {
    context.print(clone, |clone| {
        let mut text = output::clone_detail(clone);
        if let Some(hint) = output::connection_hint(clone) {
            text.push('\n');
            text.push_str(&hint);
        }
        text
    });
    match &clone.status.code {
        StatusCode::Ok => Ok(()),
        code if code == pending => Err(Failure::operation(format!(
            "clone {} is not {done} after {}; see `scion clone status {}`",
            clone.id,
            humantime::format_duration(context.timeout),
            clone.id
        ))),
        code => Err(Failure::operation(format!(
            "clone {} failed: {code} {}",
            clone.id, clone.status.message
        ))),
    }
}
