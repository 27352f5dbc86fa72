//! One node's view of a Redis Cluster, parsed from `CLUSTER NODES`.
//!
//! The text format is stable across Redis 3 to 7: one line per node,
//! `<id> <ip:port@cport[,hostname]> <flags> <master-id|-> <ping-sent>
//! <pong-recv> <config-epoch> <link-state> <slot>...`, where a slot is `n`,
//! `a-b`, or a migration marker in brackets (skipped: the owner is what counts).

use std::ops::RangeInclusive;

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) id: String,
    pub(super) port: u16,
    pub(super) is_master: bool,
    /// Flagged `fail` or `fail?` by the node that answered.
    pub(super) is_failed: bool,
    /// The id of its master, for a replica.
    pub(super) master_id: Option<String>,
    pub(super) slots: Vec<RangeInclusive<u16>>,
}

/// A whole `CLUSTER NODES` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Topology {
    entries: Vec<Entry>,
}

impl Topology {
    pub(super) fn parse(text: &str) -> Result<Self, String> {
        let entries = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                parse_line(line).ok_or_else(|| format!("a bad CLUSTER NODES line {line:?}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { entries })
    }

    /// Every slot range with the port of its master, sorted: two views with
    /// the same owners have equal lists.
    pub(super) fn owners(&self) -> Vec<(RangeInclusive<u16>, u16)> {
        let mut owners: Vec<_> = self
            .entries
            .iter()
            .filter(|entry| entry.is_master)
            .flat_map(|entry| entry.slots.iter().map(|range| (range.clone(), entry.port)))
            .collect();
        owners.sort_by_key(|(range, _)| *range.start());
        owners
    }

    /// The port of the master serving `slot`.
    pub(super) fn owner(&self, slot: u16) -> Option<u16> {
        self.owners()
            .into_iter()
            .find(|(range, _)| range.contains(&slot))
            .map(|(_, port)| port)
    }

    pub(super) fn entry(&self, port: u16) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.port == port)
    }

    pub(super) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The ports of the replicas of the master on `port`, failed ones
    /// included.
    pub(super) fn replicas_of(&self, port: u16) -> Vec<u16> {
        let Some(master) = self.entry(port) else {
            return Vec::new();
        };
        self.entries
            .iter()
            .filter(|entry| entry.master_id.as_deref() == Some(master.id.as_str()))
            .map(|entry| entry.port)
            .collect()
    }
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut fields = line.split_whitespace();
    let id = fields.next()?.to_owned();
    // `127.0.0.1:7000@17000` or `127.0.0.1:7000@17000,hostname`.
    let addr = fields.next()?;
    let addr = addr.split(['@', ',']).next()?;
    let port = addr.rsplit(':').next()?.parse().ok()?;
    let flags: Vec<&str> = fields.next()?.split(',').collect();
    let master_id = match fields.next()? {
        "-" => None,
        id => Some(id.to_owned()),
    };
    // ping-sent, pong-recv, config-epoch, link-state.
    let mut fields = fields.skip(4);
    let slots = fields
        .by_ref()
        .filter(|slot| !slot.starts_with('['))
        .map(|slot| match slot.split_once('-') {
            Some((first, last)) => Some(first.parse().ok()?..=last.parse().ok()?),
            None => slot.parse().ok().map(|n| n..=n),
        })
        .collect::<Option<_>>()?;
    Some(Entry {
        id,
        port,
        is_master: flags.contains(&"master"),
        is_failed: flags.contains(&"fail") || flags.contains(&"fail?"),
        master_id,
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODES: &str = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460 [5461->-b2]
b2 127.0.0.1:7001@17001,host master - 0 1700000000000 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
e5 127.0.0.1:7004@17004 master - 0 0 7 connected 10923-16383
f6 127.0.0.1:7005@17005 slave,fail? c3 0 0 3 connected
";

    #[test]
    fn parses_owners_replicas_and_failures() {
        let view = Topology::parse(NODES).expect("parses");
        assert_eq!(
            view.owners(),
            vec![
                (0..=5460, 7000),
                (5461..=10922, 7001),
                (10923..=16383, 7004)
            ]
        );
        assert_eq!(view.owner(5461), Some(7001));
        assert_eq!(view.owner(16383), Some(7004));
        assert_eq!(view.replicas_of(7000), vec![7003]);
        assert_eq!(view.replicas_of(7002), vec![7005]);
        let c3 = view.entry(7002).expect("listed");
        assert!(c3.is_master && c3.is_failed && c3.slots.is_empty());
        assert!(view.entry(7005).expect("listed").is_failed);
        assert!(!view.entry(7003).expect("listed").is_master);
    }

    #[test]
    fn rejects_garbage() {
        assert!(Topology::parse("not a cluster line").is_err());
    }
}
