//! `scion port-forward [CLONE_ID]`, DBLab's `port-forward`: through the SSH server of
//! `--forwarding-server-url`, opens the API tunnel, reads the clone's port, then tunnels a local
//! port (`--forwarding-local-port`, else any free one) to that port on the API's host; without
//! CLONE_ID, the API tunnel itself on that local port. Prints where to connect and runs until
//! Ctrl-C (or SIGTERM).

use super::{Context, Failure, emit};
use crate::args::{GlobalArgs, PortForwardArgs};
use crate::connection::Connection;

pub(super) async fn run(global: &GlobalArgs, args: &PortForwardArgs) -> Result<(), Failure> {
    let connection = Connection::resolve(&global.connection)?;
    if !connection.forwards() {
        return Err(Failure::Usage(anyhow::anyhow!(
            "port-forward needs an SSH server: give --forwarding-server-url ssh://user@host:port"
        )));
    }
    let Some(clone_id) = &args.clone_id else {
        let context = Context::with_connection(global, &connection, connection.local_port).await?;
        let forwarding = context.forwarding.as_ref().ok_or_else(not_forwarding)?;
        emit(&format!(
            "Forwarding 127.0.0.1:{} to the API at {}:{} through {}\nURL: {}\nPress Ctrl-C to stop.\n",
            forwarding.api.local().port(),
            forwarding.api_host,
            forwarding.api_port,
            forwarding.server,
            context.client.base_url(),
        ));
        return until_interrupted().await;
    };
    // The API tunnel takes any free port: --forwarding-local-port is the clone's.
    let context = Context::with_connection(global, &connection, Some(0)).await?;
    let forwarding = context.forwarding.as_ref().ok_or_else(not_forwarding)?;
    let clone = context.client.clone_status(clone_id).await?;
    let port = clone.db.port.parse::<u16>().map_err(|_| {
        Failure::operation(format!(
            "clone {clone_id} has no port yet (status {})",
            clone.status.code
        ))
    })?;
    let tunnel = forwarding
        .ssh
        .forward(connection.local_port.unwrap_or(0), &forwarding.api_host, port)
        .await
        .map_err(Failure::Operation)?;
    let local_port = tunnel.local().port();
    emit(&format!(
        "Forwarding 127.0.0.1:{local_port} to clone {clone_id} at {}:{port} through {}\n\
         Connection string: {}\nPress Ctrl-C to stop.\n",
        forwarding.api_host,
        forwarding.server,
        local_conn_str(&clone.db.conn_str, local_port),
    ));
    until_interrupted().await
}

fn not_forwarding() -> Failure {
    Failure::operation("the SSH tunnel to the API was not opened")
}

async fn until_interrupted() -> Result<(), Failure> {
    tokio::signal::ctrl_c()
        .await
        .map_err(|error| Failure::operation(format!("cannot wait for Ctrl-C: {error}")))
}

/// The clone's connection string with the tunnel's local end as host and port.
fn local_conn_str(conn_str: &str, local_port: u16) -> String {
    let mut parts: Vec<String> = conn_str
        .split_whitespace()
        .filter(|part| !part.starts_with("host=") && !part.starts_with("port="))
        .map(str::to_owned)
        .collect();
    parts.splice(0..0, ["host=127.0.0.1".to_owned(), format!("port={local_port}")]);
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_string_points_at_the_tunnel() {
        assert_eq!(
            local_conn_str("host=10.0.0.5 port=6000 user=alice dbname=postgres", 15432),
            "host=127.0.0.1 port=15432 user=alice dbname=postgres"
        );
    }
}
