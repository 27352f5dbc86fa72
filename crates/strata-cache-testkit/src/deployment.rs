//! [`RedisDeployment`]: whichever of the three throwaway Redis deployments a
//! test, bench or tool asks for by name ([`Topology`]), behind one URL.

use std::fmt;
use std::str::FromStr;

use crate::{RedisCluster, RedisSentinel, RedisServer};

/// The shape of a Redis deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One server ([`RedisServer`]).
    Single,
    /// Three masters and three replicas ([`RedisCluster`]).
    Cluster,
    /// A master, two replicas and three sentinels ([`RedisSentinel`]).
    Sentinel,
}

impl Topology {
    /// `single`, `cluster` or `sentinel`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Single => "single",
            Self::Cluster => "cluster",
            Self::Sentinel => "sentinel",
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Topology {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [Self::Single, Self::Cluster, Self::Sentinel]
            .into_iter()
            .find(|topology| topology.name() == name)
            .ok_or_else(|| format!("unknown topology {name:?}: single, cluster or sentinel"))
    }
}

/// A running deployment of one of the three [`Topology`]s; its processes
/// stop when it drops.
///
/// # Example
///
/// ```no_run
/// use strata_cache_testkit::{RedisDeployment, Topology};
///
/// let deployment = RedisDeployment::start("cluster".parse::<Topology>()?);
/// let url = deployment.url(); // redis+cluster://127.0.0.1:<p1>,...
/// # drop(url);
/// # Ok::<(), String>(())
/// ```
#[derive(Debug)]
pub enum RedisDeployment {
    /// One server.
    Single(RedisServer),
    /// A Redis Cluster.
    Cluster(RedisCluster),
    /// A master under sentinels.
    Sentinel(RedisSentinel),
}

impl RedisDeployment {
    /// Starts a deployment of `topology`, with the guard's defaults.
    ///
    /// # Panics
    ///
    /// As the guard's `new`, when it cannot start.
    #[must_use]
    pub fn start(topology: Topology) -> Self {
        match topology {
            Topology::Single => Self::Single(RedisServer::new()),
            Topology::Cluster => Self::Cluster(RedisCluster::new()),
            Topology::Sentinel => Self::Sentinel(RedisSentinel::new()),
        }
    }

    /// Its topology.
    pub fn topology(&self) -> Topology {
        match self {
            Self::Single(_) => Topology::Single,
            Self::Cluster(_) => Topology::Cluster,
            Self::Sentinel(_) => Topology::Sentinel,
        }
    }

    /// The URL a `RedisCacheOptions` takes: `redis://`, `redis+cluster://`
    /// or `redis+sentinel://`.
    pub fn url(&self) -> String {
        match self {
            Self::Single(server) => server.url(),
            Self::Cluster(cluster) => cluster.url(),
            Self::Sentinel(sentinel) => sentinel.url(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topologies_parse_from_their_names() {
        for topology in [Topology::Single, Topology::Cluster, Topology::Sentinel] {
            assert_eq!(topology.name().parse::<Topology>(), Ok(topology));
            assert_eq!(topology.to_string(), topology.name());
        }
        assert!("mesh".parse::<Topology>().is_err());
    }
}
