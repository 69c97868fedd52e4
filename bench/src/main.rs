//! `rookery-bench`: side-by-side benchmarks of a real Rookery server (release build, started here on
//! loopback with a temporary data directory), NATS JetStream doing the same work, and the machine's raw
//! limits, all in one run. See docs/BENCHMARKS.md ("Instant messaging, side by side").
//!
//! ```text
//! rookery-bench [--smoke] [--rounds N] [--only S1,S2,S3,S4,S5,S6,S7,S8,limits] [--no-nats]
//! ```
//!
//! `--smoke` runs every scenario for a few seconds with small sizes and fails unless each one ran and
//! every expected message arrived exactly once; it asserts nothing about speed.

mod client;
mod limits;
mod load;
mod nats;
mod scenarios;
mod server;
mod worker;

use std::time::Duration;

/// Sizes of one run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub smoke: bool,
    pub rounds: usize,
    pub only: Option<Vec<String>>,
    pub nats: bool,
    pub s1_conns: usize,
    /// HTTP clients of S7 and S8.
    pub s7_conns: usize,
    pub secs: f64,
    pub s2_members: usize,
    pub s2_messages: u32,
    pub s3_pairs: usize,
    pub s4_levels: Vec<usize>,
    pub s4_to_cap: bool,
    /// How long S4 holds each level (at least one heartbeat round) before reading the server's RSS.
    pub s4_hold: Duration,
    pub s5_clients: usize,
    pub s6_events: Vec<u64>,
    pub quiet: Duration,
}

impl Plan {
    fn full() -> Plan {
        Plan {
            smoke: false,
            rounds: 3,
            only: None,
            nats: true,
            s1_conns: 256,
            s7_conns: 16,
            secs: 5.0,
            s2_members: 10_000,
            s2_messages: 100,
            s3_pairs: 100,
            s4_levels: vec![5_000, 10_000],
            s4_to_cap: true,
            s4_hold: Duration::from_secs(3),
            s5_clients: 5_000,
            s6_events: vec![1_000_000, 10_000_000],
            quiet: Duration::from_secs(5),
        }
    }

    fn smoke() -> Plan {
        Plan {
            smoke: true,
            rounds: 1,
            only: None,
            nats: true,
            s1_conns: 16,
            s7_conns: 4,
            secs: 1.0,
            s2_members: 200,
            s2_messages: 20,
            s3_pairs: 8,
            s4_levels: vec![50, 200],
            s4_to_cap: false,
            s4_hold: Duration::from_millis(1500),
            s5_clients: 50,
            s6_events: vec![5_000, 20_000],
            quiet: Duration::from_secs(5),
        }
    }

    /// Whether scenario `name` is selected.
    pub fn runs(&self, name: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|x| x.eq_ignore_ascii_case(name)))
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("idle-worker") {
        return worker::main(&args[1..]);
    }
    let mut plan = if args.iter().any(|a| a == "--smoke") { Plan::smoke() } else { Plan::full() };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--smoke" => {}
            "--no-nats" => plan.nats = false,
            "--rounds" => plan.rounds = it.next().and_then(|v| v.parse().ok()).ok_or_else(|| anyhow::anyhow!("--rounds N"))?,
            "--only" => plan.only = Some(it.next().ok_or_else(|| anyhow::anyhow!("--only S1,S2,..."))?.split(',').map(str::to_string).collect()),
            "-h" | "--help" => {
                println!("rookery-bench [--smoke] [--rounds N] [--only S1,S2,S3,S4,S5,S6,S7,S8,limits] [--no-nats]");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(scenarios::run(plan))
}
