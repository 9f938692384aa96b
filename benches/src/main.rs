//! The redisx benchmark program (see `shared/docs/BENCHMARKS.md` in the project docs).
//!
//! ```text
//! cargo run --release -p redisx-bench -- <suite> [--redis URL | --cluster] [--quick] [--only BENCH,..]
//!     [--callgrind FILE]
//! ```
//!
//! Suites: `cache`, `locks`, `rate-limit`, `idempotency`, `streams`, `all`. Without `--redis` the
//! program starts its own throwaway `redis-server` on a free loopback port through the test
//! harness (`redisx::testing`) and stops it at the end. It pins itself and that server to CPU 0 (a
//! loopback round trip costs 3–4× more when client and server wake each other across CPUs) and
//! drives sequential benches from a `current_thread` tokio runtime. It prints a human table on
//! stderr and one JSON object per comparison on stdout:
//!
//! ```text
//! {"bench":"cache.l1_hit","unit":"ns/op","ours":82.0,"baseline":"quick_cache get + clone","baseline_value":61.0,"ratio":1.34}
//! ```
//!
//! `--cluster` runs the benches of [`CLUSTER_BENCHES`] (those of the chosen suite) on a local
//! Redis Cluster of 3 masters without replicas (`RedisCluster::start(3, 0)`, every node pinned to
//! CPU 0 like the standalone server): ours through a `redis+cluster://` client, the floors
//! through redis-rs's `cluster_async::ClusterConnection` (see [`floor`]). Peers that cannot talk
//! to a cluster (`cached`'s Redis store, `rslock`, `apalis-redis`) are left out, saying so on
//! stderr; the benches are reported as `cluster.<bench>`, e.g. `cluster.cache.l2_hit`, beside
//! the cluster-only `cluster.invalidation` (see [`invalidation`]).
//!
//! `--callgrind FILE`, under `valgrind --tool=callgrind --callgrind-out-file=FILE`, adds the
//! client-side instructions per operation of ours and of each baseline to every line (see
//! [`callgrind`]).

mod cache;
mod cache_scope;
mod callgrind;
mod floor;
mod idempotency;
mod invalidation;
mod locks;
mod measure;
mod rate_limit;
mod streams;
mod streams_consume;

use std::process::{Command, ExitCode, Stdio};

use floor::{FloorConnection, Target};
use measure::{Comparison, Settings};
use redisx::testing::{RedisCluster, RedisServer};

/// The CPU the benchmark and its server run on.
const CPU: usize = 0;

/// The suites this program knows, in `all` order.
const SUITES: &[&str] = &["cache", "locks", "rate-limit", "idempotency", "streams"];

/// The suites implemented so far.
const IMPLEMENTED: &[&str] = &["cache", "locks", "rate-limit", "idempotency", "streams"];

/// What `--cluster` runs: these benches of the standalone run (reported as `cluster.<bench>`)
/// and the cluster-only ones (named `cluster.` already); every other bench is skipped.
const CLUSTER_BENCHES: &[&str] = &[
    "cache.l2_hit",
    "cluster.invalidation",
    "locks.acquire_release",
    "rate_limit.sliding_window",
    "streams.consume",
];

/// The suites holding the benches of [`CLUSTER_BENCHES`].
const CLUSTER_SUITES: &[&str] = &["cache", "locks", "rate-limit", "streams"];

/// The prefix of cluster bench names.
const CLUSTER: &str = "cluster.";

/// Masters of the `--cluster` run's cluster (Redis Cluster's minimum), without replicas.
const CLUSTER_MASTERS: usize = 3;

/// Everything a suite needs to know about the run.
pub(crate) struct Context {
    /// The Redis server to measure against (`redis+cluster://...` for a cluster: ours' URL).
    pub(crate) url: String,
    /// Where the floors connect: the same server or cluster.
    pub(crate) target: Target,
    /// A key prefix of this run (`rxb<pid>:`); every key the benchmark writes starts with it.
    pub(crate) prefix: String,
    /// Rounds and round length.
    pub(crate) settings: Settings,
    /// CPUs available before pinning (threads of the multi-thread benches).
    pub(crate) cores: usize,
    /// The CPU list to give multi-thread workers back (`0-N`), when this process is pinned.
    pub(crate) all_cpus: Option<String>,
    /// Run only these benches (`--only cache.l2_hit,cache.miss`); all when `None`.
    pub(crate) only: Option<Vec<String>>,
}

impl Context {
    /// Whether this run measures a Redis Cluster (`--cluster`).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// Whether the bench `name` runs: one of [`CLUSTER_BENCHES`] on a cluster, any other bench
    /// on a server; and selected by `--only` (by `name` or by its reported name).
    pub(crate) fn selected(&self, name: &str) -> bool {
        let runs = if self.is_cluster() {
            CLUSTER_BENCHES.contains(&name)
        } else {
            !name.starts_with(CLUSTER)
        };
        runs && self.only.as_ref().is_none_or(|names| {
            names
                .iter()
                .any(|n| n == name || *n == self.bench_name(name))
        })
    }

    /// The name bench `name` is reported under: `cluster.<name>` on a cluster.
    pub(crate) fn bench_name(&self, name: &str) -> String {
        if self.is_cluster() && !name.starts_with(CLUSTER) {
            format!("{CLUSTER}{name}")
        } else {
            name.to_owned()
        }
    }

    /// Whether the peer `peer` of bench `bench` runs: not on a cluster, which it cannot talk to
    /// (said on stderr).
    pub(crate) fn peer_runs(&self, bench: &str, peer: &str) -> bool {
        if self.is_cluster() {
            eprintln!(
                "  {}: {peer} left out (it cannot talk to a Redis Cluster)",
                self.bench_name(bench)
            );
        }
        !self.is_cluster()
    }

    /// A floor's shared connection to the run's server or cluster.
    pub(crate) async fn floor_connection(&self) -> FloorConnection {
        self.target.connect().await
    }

    /// A runtime on the benchmark's server and key prefix, with what `configure` adds.
    pub(crate) async fn runtime(
        &self,
        configure: impl FnOnce(redisx::RedisXBuilder) -> redisx::RedisXBuilder,
    ) -> redisx::RedisX {
        let builder = redisx::RedisX::builder()
            .client(
                "default",
                redisx::ConnectionConfig::from_url(&self.url).expect("the Redis URL is valid"),
            )
            .key_prefix(&self.prefix);
        configure(builder)
            .build()
            .await
            .unwrap_or_else(|e| panic!("cannot connect redisx to {}: {e}", self.url))
    }
}

struct Args {
    suite: String,
    redis: Option<String>,
    cluster: bool,
    quick: bool,
    only: Option<Vec<String>>,
}

const USAGE: &str = "usage: redisx-bench <cache|locks|rate-limit|idempotency|streams|all> \
                     [--redis URL | --cluster] [--quick] [--only BENCH[,BENCH..]] [--callgrind FILE]
  --redis URL   measure against this server (default: start a pinned redis-server)
  --cluster     start a pinned local Redis Cluster (3 masters, no replicas) and run the
                cluster benches of the suite: cache.l2_hit, locks.acquire_release,
                rate_limit.sliding_window, streams.consume (reported as cluster.<bench>)
                and cluster.invalidation (cache suite)
  --quick       short rounds (the whole suite in about a minute)
  --only LIST   run only these benches (standalone or cluster.<bench> names)
  --callgrind FILE
                under `valgrind --tool=callgrind --callgrind-out-file=FILE`: add each side's
                client-side instructions per op to every line (wall times are then valgrind's)";

fn parse_args() -> Result<Args, String> {
    let mut suite = None;
    let mut redis = None;
    let mut cluster = false;
    let mut quick = false;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--cluster" => cluster = true,
            "--redis" => {
                redis = Some(args.next().ok_or("`--redis` needs a URL")?);
            }
            "--callgrind" => {
                let file = args
                    .next()
                    .ok_or("`--callgrind` needs callgrind's output file")?;
                callgrind::enable(file.into());
            }
            "--only" => {
                let list = args.next().ok_or("`--only` needs bench names")?;
                only = Some(list.split(',').map(str::to_owned).collect());
            }
            "-h" | "--help" => return Err(String::new()),
            _ if arg.starts_with("--redis=") => {
                redis = Some(arg["--redis=".len()..].to_owned());
            }
            _ if arg.starts_with('-') => return Err(format!("unknown option `{arg}`")),
            _ if suite.is_none() => suite = Some(arg),
            _ => return Err(format!("unexpected argument `{arg}`")),
        }
    }
    let suite = suite.ok_or("no suite given")?;
    if suite != "all" && !SUITES.contains(&suite.as_str()) {
        return Err(format!(
            "unknown suite `{suite}`; expected one of `cache`, `locks`, `rate-limit`, \
             `idempotency`, `streams`, `all`"
        ));
    }
    if cluster && redis.is_some() {
        return Err("`--cluster` starts its own cluster; it does not take `--redis`".to_owned());
    }
    Ok(Args {
        suite,
        redis,
        cluster,
        quick,
        only,
    })
}

/// Pins this process's main thread to `cpu` with `taskset -p` (threads created later inherit
/// it); `Err` says why that was not possible.
fn pin_self(cpu: usize) -> Result<(), String> {
    let status = Command::new("taskset")
        .args([
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run `taskset`: {e}"))?;
    if status.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`taskset -p` failed: {}",
            String::from_utf8_lossy(&status.stderr).trim()
        ))
    }
}

/// Gives the calling thread the CPUs in `cpus` (a `taskset` list such as `0-1`): used by the
/// worker threads of multi-thread benches, which would otherwise inherit the pin to one CPU.
pub(crate) fn unpin_current_thread(cpus: &str) {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
    let ok = tid.is_some_and(|tid| {
        Command::new("taskset")
            .args(["-p", "-c", cpus, &tid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !ok {
        eprintln!("warning: could not unpin a worker thread; it stays on CPU {CPU}");
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let missing: Vec<&str> = SUITES
        .iter()
        .copied()
        .filter(|s| !IMPLEMENTED.contains(s) && (args.suite == "all" || args.suite == *s))
        .collect();
    for suite in &missing {
        eprintln!("suite `{suite}`: not implemented yet");
    }
    if args.suite != "all" && !IMPLEMENTED.contains(&args.suite.as_str()) {
        return ExitCode::FAILURE;
    }

    // Count CPUs before pinning: afterwards the affinity mask says 1.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let pinned = match pin_self(CPU) {
        Ok(()) => {
            eprintln!("pinned the benchmark to CPU {CPU}");
            true
        }
        Err(e) => {
            eprintln!("pinning not possible ({e}): figures are unpinned and noisier");
            false
        }
    };

    // Started after pinning, so that no harness thread runs elsewhere.
    let (deployment, url, target) = Deployment::start(&args);
    let ctx = Context {
        url,
        target,
        prefix: format!("rxb{}:", std::process::id()),
        settings: if args.quick {
            Settings::quick()
        } else {
            Settings::full()
        },
        cores,
        all_cpus: (pinned && cores > 1).then(|| format!("0-{}", cores - 1)),
        only: args.only.clone(),
    };
    if ctx.is_cluster() {
        eprintln!(
            "--cluster: the cluster benches are {}; running those of suite `{}` (every other \
             bench is standalone-only)",
            CLUSTER_BENCHES
                .iter()
                .map(|b| ctx.bench_name(b))
                .collect::<Vec<_>>()
                .join(", "),
            args.suite
        );
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current_thread tokio runtime");
    let comparisons: Vec<Comparison> = rt.block_on(async {
        // On a cluster, only the suites with a cluster bench start (their setup would fail).
        let wanted = |suite: &str| {
            (args.suite == "all" || args.suite == suite)
                && (!ctx.is_cluster() || CLUSTER_SUITES.contains(&suite))
        };
        let mut results = Vec::new();
        if wanted("cache") {
            results.extend(cache::run(&ctx).await);
        }
        if wanted("locks") {
            results.extend(locks::run(&ctx).await);
        }
        if wanted("rate-limit") {
            results.extend(rate_limit::run(&ctx).await);
        }
        if wanted("idempotency") {
            results.extend(idempotency::run(&ctx).await);
        }
        if wanted("streams") {
            results.extend(streams::run(&ctx).await);
        }
        if args.redis.is_some() {
            cleanup(&ctx).await;
        }
        results
    });
    drop(rt);
    measure::print_table(&comparisons);
    if !pinned {
        eprintln!("note: this run was not pinned; the pinned ratio is the figure that counts");
    }
    drop(deployment);
    ExitCode::SUCCESS
}

/// What this program started to measure against (nothing with `--redis`); dropping it stops
/// that.
#[derive(Default)]
struct Deployment {
    /// The program's own pinned `redis-server`.
    _server: Option<RedisServer>,
    /// `--cluster`: the program's own pinned cluster.
    _cluster: Option<RedisCluster>,
}

impl Deployment {
    /// Starts the run's server or cluster (nothing with `--redis`): with ours' URL and the
    /// floors' target.
    fn start(args: &Args) -> (Self, String, Target) {
        if let Some(url) = &args.redis {
            eprintln!("using the Redis server at {url} (not pinned by this program)");
            return (Self::default(), url.clone(), Target::Server(url.clone()));
        }
        if args.cluster {
            let cluster = start_cluster();
            let hosts: Vec<String> = cluster
                .nodes()
                .iter()
                .map(|n| format!("127.0.0.1:{}", n.port()))
                .collect();
            let url = format!("redis+cluster://{}", hosts.join(","));
            let target = Target::Cluster(cluster.seed_urls());
            let cluster = Self {
                _cluster: Some(cluster),
                ..Self::default()
            };
            return (cluster, url, target);
        }
        let server = RedisServer::builder().pin_to_cpu(CPU).start();
        match server.pinned_cpu() {
            Some(cpu) => eprintln!(
                "started redis-server on port {}, pinned to CPU {cpu}",
                server.port()
            ),
            None => eprintln!(
                "started redis-server on port {}; pinning it was not possible (no `taskset`)",
                server.port()
            ),
        }
        let url = server.url();
        let server = Self {
            _server: Some(server),
            ..Self::default()
        };
        (server, url.clone(), Target::Server(url))
    }
}

/// Starts the `--cluster` run's cluster and pins every node (all its threads) to [`CPU`], as
/// the standalone server is, saying on stderr what was pinned.
fn start_cluster() -> RedisCluster {
    let cluster = RedisCluster::start(CLUSTER_MASTERS, 0);
    for node in cluster.nodes() {
        let port = node.port();
        let pinned = node
            .pid()
            .ok_or_else(|| "no pid".to_owned())
            .and_then(|pid| {
                let out = Command::new("taskset")
                    .args(["-a", "-p", "-c", &CPU.to_string(), &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output()
                    .map_err(|e| format!("cannot run `taskset`: {e}"))?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
                }
            });
        match pinned {
            Ok(()) => eprintln!("started cluster node on port {port}, pinned to CPU {CPU}"),
            Err(e) => eprintln!(
                "started cluster node on port {port}; pinning it was not possible ({e}): \
                 figures are noisier"
            ),
        }
    }
    cluster
}

/// Deletes every key this run wrote to a server it does not own.
async fn cleanup(ctx: &Context) {
    let Ok(client) = redis::Client::open(ctx.url.as_str()) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let pattern = format!("{}*", ctx.prefix);
    let mut cursor: u64 = 0;
    let mut deleted = 0_usize;
    loop {
        let Ok((next, keys)): redis::RedisResult<(u64, Vec<Vec<u8>>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
        else {
            break;
        };
        if !keys.is_empty() {
            deleted += keys.len();
            let _: redis::RedisResult<()> =
                redis::cmd("UNLINK").arg(keys).query_async(&mut conn).await;
        }
        if next == 0 {
            break;
        }
        cursor = next;
    }
    eprintln!(
        "removed {deleted} benchmark keys ({pattern}) from {}",
        ctx.url
    );
}
