//! What the nodes of a [`RedisCluster`] say: their `CLUSTER INFO` and `CLUSTER NODES`, and
//! whether the cluster is whole by them.

use std::fmt::Write as _;

use super::RedisCluster;
use crate::testing::replicas::{field, query};
use crate::testing::server::RedisServer;

/// The number of hash slots of a Redis Cluster.
const SLOTS: usize = 16384;

impl RedisCluster {
    /// What one node says: its `CLUSTER NODES` lines, and what is wrong by its `CLUSTER INFO`
    /// and (for a replica) its replication link; an error when it does not answer.
    pub(super) fn node_health(
        &self,
        node: &RedisServer,
    ) -> Result<(Vec<NodeLine>, Vec<String>), String> {
        let info: String = query(node, &["CLUSTER", "INFO"])?;
        let mut problems = Vec::new();
        let known = self.nodes.len().to_string();
        for (name, wanted) in [
            ("cluster_state", "ok"),
            ("cluster_slots_assigned", "16384"),
            ("cluster_known_nodes", known.as_str()),
        ] {
            let value = field(&info, name).unwrap_or("?");
            if value != wanted {
                problems.push(format!("{name}:{value} (not {wanted})"));
            }
        }
        let lines = parse_nodes(&query::<String>(node, &["CLUSTER", "NODES"])?);
        let own = own(&lines).ok_or("CLUSTER NODES has no `myself` line")?;
        if own.is_replica() {
            let replication: String = query(node, &["INFO", "replication"])?;
            let link = field(&replication, "master_link_status").unwrap_or("?");
            if link != "up" {
                problems.push(format!("a replica with master_link_status:{link} (not up)"));
            }
        }
        Ok((lines, problems))
    }

    /// Adds to `report` where the running nodes' views disagree, and, when every running node
    /// answered (`complete`), where slots are left to stopped nodes.
    pub(super) fn agreement(
        &self,
        views: &[(usize, Vec<NodeLine>)],
        complete: bool,
        report: &mut String,
    ) {
        let owns: Vec<(usize, &NodeLine)> = views
            .iter()
            .filter_map(|(i, lines)| own(lines).map(|line| (*i, line)))
            .collect();
        let served: usize = owns
            .iter()
            .filter(|(_, line)| line.is_master())
            .map(|(_, line)| line.slot_count())
            .sum();
        if complete && served != SLOTS {
            let _ = writeln!(
                report,
                "the running masters serve {served} slots, not {SLOTS} (the others are still \
                 held by a stopped node, or two nodes claim the same slots)"
            );
        }
        for (i, lines) in views {
            for &(j, theirs) in owns.iter().filter(|(j, _)| j != i) {
                match lines.iter().find(|line| line.id == theirs.id) {
                    None => {
                        let _ = writeln!(report, "node {i} does not know node {j}");
                    }
                    Some(seen) if seen.is_failing() => {
                        let _ =
                            writeln!(report, "node {i} flags node {j} {}", seen.flags.join(","));
                    }
                    Some(seen)
                        if seen.is_master() != theirs.is_master()
                            || seen.master != theirs.master
                            || seen.slots != theirs.slots =>
                    {
                        let _ = writeln!(
                            report,
                            "node {i} sees node {j} as {}, node {j} is {}",
                            self.describe(seen),
                            self.describe(theirs)
                        );
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// "a master of slots 0-5460", "a replica of node 3": for messages.
    pub(super) fn describe(&self, line: &NodeLine) -> String {
        if line.is_master() && line.slots.is_empty() {
            "a master of no slots".to_owned()
        } else if line.is_master() {
            format!("a master of slots {}", line.slots.join(" "))
        } else if let Some(master) = &line.master {
            match self.ids.iter().position(|id| id == master) {
                Some(index) => format!("a replica of node {index}"),
                None => format!("a replica of the unknown node {master}"),
            }
        } else {
            format!("flagged {}", line.flags.join(","))
        }
    }

    /// The own `CLUSTER NODES` line of the node at `index`.
    pub(super) fn own_line(&self, index: usize) -> Result<NodeLine, String> {
        let node = &self.nodes[index];
        let lines = parse_nodes(&query::<String>(node, &["CLUSTER", "NODES"])?);
        own(&lines)
            .cloned()
            .ok_or_else(|| format!("node {index}: CLUSTER NODES has no `myself` line"))
    }

    /// The own line of every running node, or a panic naming the one that does not answer.
    pub(super) fn own_lines(&self, what: &str) -> Vec<(usize, NodeLine)> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].pid().is_some())
            .map(|i| {
                let line = self.own_line(i).unwrap_or_else(|e| {
                    panic!(
                        "RedisCluster::{what}: node {i} (port {}): {e}",
                        self.nodes[i].port()
                    )
                });
                (i, line)
            })
            .collect()
    }
}

/// One line of `CLUSTER NODES`: a node as the node asked sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct NodeLine {
    pub(super) id: String,
    pub(super) flags: Vec<String>,
    /// The id of the master of a replica.
    pub(super) master: Option<String>,
    /// The slot ranges of a master as listed (`0-5460`, `5461`), without the entries of slots
    /// being migrated (`[...]`).
    pub(super) slots: Vec<String>,
}

impl NodeLine {
    /// `<id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <epoch> <link> <slot>...`
    pub(super) fn parse(line: &str) -> Option<Self> {
        let mut words = line.split_whitespace();
        let id = words.next()?.to_owned();
        let _address = words.next()?;
        let flags = words.next()?.split(',').map(str::to_owned).collect();
        let master = words.next()?;
        let slots = words
            .skip(4)
            .filter(|slot| !slot.starts_with('['))
            .map(str::to_owned)
            .collect();
        Some(NodeLine {
            id,
            flags,
            master: (master != "-").then(|| master.to_owned()),
            slots,
        })
    }

    /// Whether this master's listed ranges hold `slot`.
    pub(super) fn serves(&self, slot: u16) -> bool {
        self.slots.iter().any(|range| {
            let (start, end) = range.split_once('-').unwrap_or((range, range));
            matches!((start.parse::<u16>(), end.parse::<u16>()), (Ok(a), Ok(b)) if (a..=b).contains(&slot))
        })
    }

    pub(super) fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    pub(super) fn is_master(&self) -> bool {
        self.has("master")
    }

    pub(super) fn is_replica(&self) -> bool {
        self.has("slave")
    }

    pub(super) fn is_failing(&self) -> bool {
        self.has("fail") || self.has("fail?")
    }

    /// How many slots the listed ranges hold.
    pub(super) fn slot_count(&self) -> usize {
        self.slots
            .iter()
            .map(|range| match range.split_once('-') {
                Some((from, to)) => match (from.parse::<usize>(), to.parse::<usize>()) {
                    (Ok(from), Ok(to)) if to >= from => to - from + 1,
                    _ => 0,
                },
                None => usize::from(range.parse::<usize>().is_ok()),
            })
            .sum()
    }
}

pub(super) fn parse_nodes(text: &str) -> Vec<NodeLine> {
    text.lines().filter_map(NodeLine::parse).collect()
}

/// The line flagged `myself`.
pub(super) fn own(lines: &[NodeLine]) -> Option<&NodeLine> {
    lines.iter().find(|line| line.has("myself"))
}

#[cfg(test)]
mod tests {
    use super::{NodeLine, own, parse_nodes};

    const NODES: &str = "\
1fb4a 127.0.0.1:23101@24101 master,fail - 1796658684270 1796658683768 2 disconnected
d31e3 127.0.0.1:23103@24103 master - 0 1796658706710 7 connected 0-5460
39684 127.0.0.1:23100@24100 myself,slave d31e3 0 1796658706000 7 connected
c804c 127.0.0.1:23104@24104,host master - 0 1796658706710 8 connected 5461-10921 10922 [10923->-x]
";

    #[test]
    fn parses_cluster_nodes_lines() {
        let lines = parse_nodes(NODES);
        assert_eq!(lines.len(), 4);
        let me = own(&lines).unwrap();
        assert_eq!(me.id, "39684");
        assert!(me.is_replica() && !me.is_master());
        assert_eq!(me.master.as_deref(), Some("d31e3"));
        assert_eq!(me.slot_count(), 0);
        assert!(lines[0].is_failing() && lines[0].is_master());
        assert_eq!(lines[1].slot_count(), 5461);
        assert_eq!(lines[3].slots, ["5461-10921", "10922"]);
        assert_eq!(lines[3].slot_count(), 5462);
        assert_eq!(NodeLine::parse("garbage"), None);
    }
}
