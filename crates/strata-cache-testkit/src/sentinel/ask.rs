//! What a sentinel says: the master's address, the replicas and the other
//! sentinels it knows of, and the flags it gives them; and a node's `ROLE`.
//!
//! Sentinels never require a password (only the data nodes may): they are
//! asked unauthenticated.

use std::collections::HashMap;

use super::SERVICE;
use crate::resp::{self, Reply};

/// The master's port according to one sentinel.
pub(super) fn master_of(sentinel: u16) -> Result<u16, String> {
    let addr = resp::call(
        sentinel,
        None,
        &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE],
    )?
    .array()?;
    let port = addr.into_iter().nth(1).ok_or("an empty address")?.text()?;
    port.parse()
        .map_err(|_| format!("127.0.0.1:{sentinel} names a bad port {port:?}"))
}

/// The replicas one sentinel lists: (port, flags).
pub(super) fn replicas_seen_by(sentinel: u16) -> Result<Vec<(u16, String)>, String> {
    let replicas =
        fields(resp::call(sentinel, None, &["SENTINEL", "REPLICAS", SERVICE])?.array()?)?;
    Ok(replicas
        .into_iter()
        .filter_map(|mut replica| {
            let port = replica.get("port")?.parse().ok()?;
            Some((port, replica.remove("flags").unwrap_or_default()))
        })
        .collect())
}

/// A Sentinel list reply (`SENTINEL REPLICAS`, `SENTINEL SENTINELS`): one
/// flat array of name, value pairs per instance.
fn fields(instances: Vec<Reply>) -> Result<Vec<HashMap<String, String>>, String> {
    instances
        .into_iter()
        .map(|instance| {
            let items = instance
                .array()?
                .into_iter()
                .map(Reply::text)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(items
                .chunks(2)
                .filter_map(|pair| Some((pair.first()?.clone(), pair.get(1)?.clone())))
                .collect())
        })
        .collect()
}

/// Flags of an instance a sentinel can reach and does not judge down.
pub(super) fn healthy(flags: &str) -> bool {
    !flags
        .split(',')
        .any(|flag| matches!(flag, "s_down" | "o_down" | "disconnected"))
}

/// The flags of each other sentinel one sentinel knows of.
pub(super) fn peers_seen_by(sentinel: u16) -> Result<Vec<String>, String> {
    let peers = fields(resp::call(sentinel, None, &["SENTINEL", "SENTINELS", SERVICE])?.array()?)?;
    Ok(peers
        .into_iter()
        .map(|mut peer| peer.remove("flags").unwrap_or_default())
        .collect())
}

/// The first element of a node's `ROLE` reply: `master`, `slave` or
/// `sentinel`; asked with the data nodes' `password`, if any.
pub(super) fn role_of(port: u16, password: Option<&str>) -> Result<String, String> {
    resp::call(port, password, &["ROLE"])?
        .array()?
        .into_iter()
        .next()
        .ok_or_else(|| format!("127.0.0.1:{port} answers ROLE with an empty array"))?
        .text()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Reply {
        Reply::Bulk(Some(text.as_bytes().to_vec()))
    }

    #[test]
    fn list_replies_become_maps() {
        let reply = vec![Reply::Array(Some(vec![
            bulk("ip"),
            bulk("127.0.0.1"),
            bulk("port"),
            bulk("6380"),
            bulk("flags"),
            bulk("slave,s_down"),
        ]))];
        let instances = fields(reply).expect("parses");
        assert_eq!(instances.len(), 1);
        assert_eq!(instances[0]["port"], "6380");
        assert!(!healthy(&instances[0]["flags"]));
    }

    #[test]
    fn health_is_read_from_the_flags() {
        assert!(healthy("slave"));
        assert!(healthy("sentinel"));
        assert!(!healthy("slave,disconnected"));
        assert!(!healthy("master,s_down,o_down"));
    }
}
