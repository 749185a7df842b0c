//! Every key of a pattern: `SCAN` on one server, or on every primary of a cluster.

use super::connection::Connection;
use super::{RedisState, unavailable};
use crate::state::StateError;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};

/// Concurrent single-key reads while scanning (reconcile, migration).
pub(super) const SCAN_READS: usize = 64;

impl RedisState {
    /// Every key matching `pattern`, on every primary of a cluster.
    pub(super) async fn scan(&self, pattern: &str) -> Result<Vec<String>, StateError> {
        let nodes = match &self.connection {
            Connection::Single(_) => vec![None],
            Connection::Cluster(connection) => primaries(connection.clone())
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        };
        let mut all = Vec::new();
        for node in nodes {
            let mut cursor: u64 = 0;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = match (&self.connection, &node) {
                    (Connection::Cluster(connection), Some((host, port))) => connection
                        .clone()
                        .route_command(
                            scan,
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                                host: host.clone(),
                                port: *port,
                            }),
                        )
                        .await
                        .map_err(unavailable)?,
                    _ => scan
                        .query_async(&mut self.conn())
                        .await
                        .map_err(unavailable)?,
                };
                let (next, keys): (u64, Vec<String>) = redis::from_redis_value(reply)
                    .map_err(|err| StateError::Data(err.to_string()))?;
                all.extend(keys);
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        all.sort();
        all.dedup();
        Ok(all)
    }
}

/// The addresses of a cluster's primaries (from `CLUSTER NODES`).
async fn primaries(mut connection: ClusterConnection) -> Result<Vec<(String, u16)>, StateError> {
    let reply = connection
        .route_command(
            redis::cmd("CLUSTER").arg("NODES").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await
        .map_err(unavailable)?;
    let text: String =
        redis::from_redis_value(reply).map_err(|err| StateError::Data(err.to_string()))?;
    Ok(parse_primaries(&text))
}

/// Primaries of a `CLUSTER NODES` reply: `<id> <host:port@bus[,hostname]> <flags> ...`.
fn parse_primaries(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let address = fields.nth(1)?;
            let flags = fields.next()?;
            if !flags.split(',').any(|flag| flag == "master") || flags.contains("fail") {
                return None;
            }
            let address = address.split('@').next()?;
            let (host, port) = address.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            (!host.is_empty() && port != 0).then(|| (host.to_owned(), port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_primaries;

    #[test]
    fn primaries_are_read_from_cluster_nodes_and_failed_or_replica_nodes_left_out() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7001@17001,host master - 0 0 2 connected 5461-10922\n\
                    c3 127.0.0.1:7002@17002 slave a1 0 0 1 connected\n\
                    d4 127.0.0.1:7003@17003 master,fail - 0 0 3 connected\n\
                    e5 :0@0 master,noaddr - 0 0 0 disconnected\n";
        assert_eq!(
            parse_primaries(text),
            vec![
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
    }
}
