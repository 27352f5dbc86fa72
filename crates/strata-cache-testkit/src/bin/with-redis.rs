//! `with-redis <single|cluster|sentinel> -- <command> [args...]`: starts a
//! throwaway Redis deployment on free loopback ports (a server, a 3-master /
//! 3-replica cluster, or a master with 2 replicas and 3 sentinels), runs the
//! command with `REDIS_URL` set to its URL, stops the deployment and exits
//! with the command's status.
//!
//! `.ci/run` runs the Redis test suites this way on a cluster and on
//! sentinels:
//!
//! ```text
//! cargo run -p strata-cache-testkit --bin with-redis -- cluster -- \
//!     cargo test -p strata-cache-redis --test conformance
//! ```

use std::process::{Command, ExitCode};

use strata_cache_testkit::{RedisDeployment, Topology};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (topology, command) = match args.as_slice() {
        [topology, dashes, command @ ..] if dashes == "--" && !command.is_empty() => {
            (topology, command)
        }
        _ => return usage(),
    };
    let Ok(topology) = topology.parse::<Topology>() else {
        return usage();
    };
    // The deployment stops its processes when dropped, at the end of this
    // function, whatever the command's outcome.
    let deployment = RedisDeployment::start(topology);
    let url = deployment.url();
    eprintln!("with-redis: REDIS_URL={url}");
    let status = Command::new(&command[0])
        .args(&command[1..])
        .env("REDIS_URL", &url)
        .status();
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("with-redis: {} exited with {status}", command[0]);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("with-redis: cannot run {}: {e}", command[0]);
            ExitCode::FAILURE
        }
    }
}

fn usage() -> ExitCode {
    eprintln!("usage: with-redis <single|cluster|sentinel> -- <command> [args...]");
    ExitCode::from(2)
}
