//! Generic measurement: interleaved rounds, medians, the stderr table and the JSON lines.
//!
//! A bench is a set of [`Side`]s (ours first, then one per baseline). Each side is an async
//! closure that runs `ops` operations and returns the time they took, so that per-round setup
//! (fresh keys, spawning tasks) stays outside the measured span when it is not part of the
//! operation. [`compare`] calibrates every side once (warm-up, so that a round lasts at least the
//! round target and holds at least the minimum op count), then runs the rounds interleaved — ours,
//! baseline 1, baseline 2, ..., then the next round in reverse order, so that a drifting machine
//! moves every side alike — and reports the median cost per operation of each side.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::callgrind;

/// A boxed future returned by a side: the time taken by the requested number of operations.
pub(crate) type RoundFuture = Pin<Box<dyn Future<Output = Duration>>>;

/// One measured side of a comparison: runs `ops` operations and returns how long they took.
pub(crate) struct Side {
    label: String,
    run: Box<dyn FnMut(u64) -> RoundFuture>,
}

impl Side {
    /// A side named `label` (for baselines, the text of the `baseline` field).
    pub(crate) fn new<F, Fut>(label: impl Into<String>, mut run: F) -> Self
    where
        F: FnMut(u64) -> Fut + 'static,
        Fut: Future<Output = Duration> + 'static,
    {
        Self {
            label: label.into(),
            run: Box::new(move |ops| Box::pin(run(ops))),
        }
    }
}

/// The unit of a figure: a cost per operation, lower is better.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Nanoseconds per operation.
    NsPerOp,
    /// Microseconds per operation.
    UsPerOp,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::NsPerOp => "ns/op",
            Unit::UsPerOp => "us/op",
        }
    }

    #[allow(clippy::cast_precision_loss, reason = "op counts stay far below 2^52")]
    fn per_op(self, elapsed: Duration, ops: u64) -> f64 {
        let nanos = elapsed.as_secs_f64() * 1e9 / ops.max(1) as f64;
        match self {
            Unit::NsPerOp => nanos,
            Unit::UsPerOp => nanos / 1e3,
        }
    }
}

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    /// Rounds per side (at least 5).
    pub(crate) rounds: usize,
    /// Minimum duration of one round.
    pub(crate) round_time: Duration,
    /// Minimum operations in one round.
    pub(crate) min_ops: u64,
    /// Upper bound on the operations of one round (for sides whose setup grows with `ops`).
    pub(crate) max_ops: u64,
}

impl Settings {
    /// The full run: 11 rounds of at least 200 ms.
    pub(crate) fn full() -> Self {
        Self {
            rounds: 11,
            round_time: Duration::from_millis(200),
            min_ops: 1000,
            max_ops: u64::MAX,
        }
    }

    /// `--quick`: 5 rounds of at least 40 ms and 1000 operations.
    pub(crate) fn quick() -> Self {
        Self {
            rounds: 5,
            round_time: Duration::from_millis(40),
            min_ops: 1000,
            max_ops: u64::MAX,
        }
    }

    /// The same settings with a cap on the operations per round.
    pub(crate) fn with_max_ops(mut self, max_ops: u64) -> Self {
        self.max_ops = max_ops.max(1);
        self.min_ops = self.min_ops.min(self.max_ops);
        self
    }
}

/// The result of one comparison: ours against one baseline.
#[derive(Clone, Debug)]
pub(crate) struct Comparison {
    /// e.g. `cache.l1_hit`.
    pub(crate) bench: String,
    /// Unit of `ours` and `baseline_value`.
    pub(crate) unit: Unit,
    /// Median cost per operation of ours.
    pub(crate) ours: f64,
    /// What the baseline is, e.g. `quick_cache get + clone`.
    pub(crate) baseline: String,
    /// Median cost per operation of the baseline.
    pub(crate) baseline_value: f64,
    /// Extra facts for the same line (`loader_calls`, ...).
    pub(crate) extra: Map<String, Value>,
}

impl Comparison {
    /// `ours / baseline_value`: lower is better.
    pub(crate) fn ratio(&self) -> f64 {
        if self.baseline_value > 0.0 {
            self.ours / self.baseline_value
        } else {
            f64::NAN
        }
    }

    /// The JSON line of BENCHMARKS.md, fields in the documented order (figures rounded to 0.1,
    /// the ratio to 0.01; a non-finite figure is `null`).
    pub(crate) fn to_json(&self) -> String {
        let line = Line {
            bench: &self.bench,
            unit: self.unit.as_str(),
            ours: round_to(self.ours, 10.0),
            baseline: &self.baseline,
            baseline_value: round_to(self.baseline_value, 10.0),
            ratio: round_to(self.ratio(), 100.0),
            extra: &self.extra,
        };
        serde_json::to_string(&line).expect("a JSON line always serializes")
    }

    /// Adds an extra field to the JSON line.
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Adds the client-side instructions per operation of ours and of the baseline, and their
    /// ratio, from `(instructions, operations)` counted under `--callgrind`.
    pub(crate) fn with_instructions(self, ours: (u64, u64), baseline: (u64, u64)) -> Self {
        #[allow(
            clippy::cast_precision_loss,
            reason = "instruction counts per op are far below 2^52"
        )]
        let per_op = |(ir, ops): (u64, u64)| ir as f64 / ops.max(1) as f64;
        let (ours, baseline) = (per_op(ours), per_op(baseline));
        self.with("ours_instructions_per_op", round_to(ours, 1.0))
            .with("baseline_instructions_per_op", round_to(baseline, 1.0))
            .with(
                "instructions_ratio",
                round_to(ours / baseline.max(f64::MIN_POSITIVE), 100.0),
            )
    }
}

/// One JSON line, in the field order of BENCHMARKS.md; extra fields follow.
#[derive(Serialize)]
struct Line<'a> {
    bench: &'a str,
    unit: &'static str,
    ours: Option<f64>,
    baseline: &'a str,
    baseline_value: Option<f64>,
    ratio: Option<f64>,
    #[serde(flatten)]
    extra: &'a Map<String, Value>,
}

fn round_to(x: f64, scale: f64) -> Option<f64> {
    x.is_finite().then(|| (x * scale).round() / scale)
}

/// The median of some figures (the mean of the two middle ones for an even count).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    }
}

/// Picks the op count of one round for a side: doubles from `min_ops` until a run lasts a fifth
/// of the round target, then scales to the target (this also warms the side up).
async fn calibrate(side: &mut Side, settings: &Settings) -> u64 {
    let mut ops = settings.min_ops.max(1);
    loop {
        let elapsed = (side.run)(ops).await;
        if ops >= settings.max_ops {
            return settings.max_ops;
        }
        if elapsed * 5 >= settings.round_time {
            let scale = settings.round_time.as_secs_f64() / elapsed.as_secs_f64().max(1e-9);
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "op counts are far below 2^52 and positive"
            )]
            let scaled = (ops as f64 * scale * 1.05).ceil() as u64;
            return scaled.clamp(settings.min_ops, settings.max_ops);
        }
        ops = ops.saturating_mul(2).min(settings.max_ops);
    }
}

/// Measures `ours` against every baseline in interleaved rounds and returns one [`Comparison`]
/// per baseline (also printed: JSON on stdout right away).
pub(crate) async fn compare(
    bench: &str,
    unit: Unit,
    settings: &Settings,
    mut ours: Side,
    mut baselines: Vec<Side>,
) -> Vec<Comparison> {
    let rounds = settings.rounds.max(5);
    let mut sides: Vec<&mut Side> = std::iter::once(&mut ours)
        .chain(baselines.iter_mut())
        .collect();
    let mut ops = Vec::with_capacity(sides.len());
    for side in &mut sides {
        ops.push(calibrate(side, settings).await);
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); sides.len()];
    // Under `--callgrind`: instructions and operations of each side over its rounds.
    let mut counted = vec![(0u64, 0u64); sides.len()];
    for round in 0..rounds {
        let order: Vec<usize> = if round % 2 == 0 {
            (0..sides.len()).collect()
        } else {
            (0..sides.len()).rev().collect()
        };
        for i in order {
            if callgrind::enabled() {
                callgrind::interval();
            }
            let elapsed = (sides[i].run)(ops[i]).await;
            if callgrind::enabled() {
                counted[i].0 += callgrind::interval();
                counted[i].1 += ops[i];
            }
            samples[i].push(unit.per_op(elapsed, ops[i]));
        }
    }
    let ours_median = median(&samples[0]);
    let ours_label = sides[0].label.clone();
    let comparisons: Vec<Comparison> = sides
        .iter()
        .zip(&samples)
        .zip(&counted)
        .skip(1)
        .map(|((side, s), baseline_counted)| {
            let c = Comparison {
                bench: bench.to_owned(),
                unit,
                ours: ours_median,
                baseline: side.label.clone(),
                baseline_value: median(s),
                extra: Map::new(),
            };
            if callgrind::enabled() {
                c.with_instructions(counted[0], *baseline_counted)
            } else {
                c
            }
        })
        .collect();
    eprintln!(
        "  {bench}: ours ({ours_label}) {ours_median:.1} {} over {rounds} rounds of {} ops",
        unit.as_str(),
        ops[0]
    );
    comparisons
}

/// Prints one comparison as a JSON line on stdout (flushed, so partial runs still report).
pub(crate) fn emit(comparison: &Comparison) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", comparison.to_json());
    let _ = out.flush();
}

/// The human table on stderr.
pub(crate) fn print_table(comparisons: &[Comparison]) {
    let bench_w = comparisons
        .iter()
        .map(|c| c.bench.len())
        .chain([5])
        .max()
        .unwrap_or(5);
    let base_w = comparisons
        .iter()
        .map(|c| c.baseline.len())
        .chain([8])
        .max()
        .unwrap_or(8);
    eprintln!();
    eprintln!(
        "{:<bench_w$}  {:>6}  {:>12}  {:<base_w$}  {:>12}  {:>6}",
        "bench", "unit", "ours", "baseline", "baseline", "ratio"
    );
    eprintln!("{}", "-".repeat(bench_w + base_w + 50));
    for c in comparisons {
        let extra = if c.extra.is_empty() {
            String::new()
        } else {
            format!("  {}", Value::Object(c.extra.clone()))
        };
        eprintln!(
            "{:<bench_w$}  {:>6}  {:>12.1}  {:<base_w$}  {:>12.1}  {:>6.2}{extra}",
            c.bench,
            c.unit.as_str(),
            c.ours,
            c.baseline,
            c.baseline_value,
            c.ratio()
        );
    }
}

/// Times `ops` runs of a synchronous operation.
pub(crate) fn time_sync(ops: u64, mut op: impl FnMut(u64)) -> Duration {
    let start = Instant::now();
    for n in 0..ops {
        op(n);
    }
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn json_line_has_the_documented_fields() {
        let c = Comparison {
            bench: "cache.l1_hit".into(),
            unit: Unit::NsPerOp,
            ours: 82.04,
            baseline: "quick_cache get + clone".into(),
            baseline_value: 61.0,
            extra: Map::new(),
        }
        .with("loader_calls", 1);
        assert_eq!(
            c.to_json(),
            r#"{"bench":"cache.l1_hit","unit":"ns/op","ours":82.0,"baseline":"quick_cache get + clone","baseline_value":61.0,"ratio":1.34,"loader_calls":1}"#
        );
    }
}
