//! The connection: one server (a connection manager that reconnects by itself) or a cluster
//! (which routes each command by its keys). Lazy, with short timeouts, so a Redis outage fails
//! calls (fail closed) until Redis is back.

use super::unavailable;
use crate::state::StateError;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::time::Duration;

/// Scheme of a Redis Cluster URL: `redis+cluster://host:port,host:port,...` (seed nodes; the
/// client discovers the rest).
const CLUSTER_SCHEME: &str = "redis+cluster://";

/// How long a call may take to connect, and to be answered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to one server or to a cluster (which routes each command by its keys).
#[derive(Clone)]
pub(super) enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// A connection manager that failed to reconnect while the server was down keeps that failure
/// for the next call, which then starts a new attempt: the first call after the server is back
/// would fail. A refused connection sent nothing, so that call is safely tried once more.
impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(connection) => Box::pin(async move {
                match connection.req_packed_command(cmd).await {
                    Err(err) if err.is_connection_refusal() => {
                        connection.req_packed_command(cmd).await
                    }
                    done => done,
                }
            }),
            Connection::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(connection) => Box::pin(async move {
                match connection
                    .req_packed_commands(pipeline, offset, count)
                    .await
                {
                    Err(err) if err.is_connection_refusal() => {
                        connection
                            .req_packed_commands(pipeline, offset, count)
                            .await
                    }
                    done => done,
                }
            }),
            Connection::Cluster(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(connection) => connection.get_db(),
            Connection::Cluster(connection) => connection.get_db(),
        }
    }
}

/// The seed nodes of a `redis+cluster://` URL as `redis://` URLs (credentials kept).
fn cluster_nodes(url: &str) -> Result<Vec<String>, StateError> {
    let rest = &url[CLUSTER_SCHEME.len()..];
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = hosts.trim_end_matches('/');
    let nodes: Vec<String> = hosts
        .split(',')
        .filter(|host| !host.is_empty())
        .map(|host| format!("redis://{credentials}{host}"))
        .collect();
    if nodes.is_empty() {
        return Err(StateError::Unavailable(
            "a redis+cluster:// URL names no node".to_owned(),
        ));
    }
    Ok(nodes)
}

/// Connects lazily to `url` (`redis://...` for one server, `redis+cluster://h:p,h:p` for a
/// cluster).
pub(super) fn connect(url: &str) -> Result<Connection, StateError> {
    Ok(if url.starts_with(CLUSTER_SCHEME) {
        let client = redis::cluster::ClusterClient::builder(cluster_nodes(url)?)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(1)
            .build()
            .map_err(unavailable)?;
        let config = redis::cluster::ClusterConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT);
        Connection::Cluster(client.get_pending_async_connection_with_config(config))
    } else {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        Connection::Single(
            ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::cluster_nodes;

    #[test]
    fn a_cluster_url_names_its_seed_nodes_with_their_credentials() {
        assert_eq!(
            cluster_nodes("redis+cluster://u:p@10.0.0.1:7000,10.0.0.2:7001/").unwrap(),
            vec!["redis://u:p@10.0.0.1:7000", "redis://u:p@10.0.0.2:7001"]
        );
        assert!(cluster_nodes("redis+cluster://").is_err());
    }
}
