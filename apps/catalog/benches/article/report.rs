//! What the bench prints after criterion: one table with criterion's time and
//! the counted allocations of every row, ratios to the row's baseline, and
//! paired ratios for the comparisons that decide a target.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::alloc::Allocated;

/// One measured row.
pub(crate) struct Row {
    /// `Group/Name`, as criterion files it.
    pub(crate) id: String,
    /// The row this one is compared with, if any.
    pub(crate) baseline: Option<&'static str>,
    /// Iterations of the counted loop.
    pub(crate) iterations: u64,
    /// What the counted loop allocated.
    pub(crate) allocated: Allocated,
    /// The payload size: allocations at least this big are "payload-sized".
    pub(crate) payload: usize,
}

/// Criterion's output directory, found the way criterion finds it:
/// `CRITERION_HOME`, else `CARGO_TARGET_DIR/criterion`, else the target
/// directory this binary was built in.
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    // target/<profile>/deps/<binary>
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// Criterion's median estimate for `id` from this run, if it measured it.
fn median(id: &str) -> Option<Duration> {
    let path = criterion_dir()?.join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let ns = json["median"]["point_estimate"].as_f64()?;
    Some(Duration::from_secs_f64(ns / 1e9))
}

/// `1.23 µs`, `456 ns`, `12.3 ms`.
pub(crate) fn time(d: Duration) -> String {
    let ns = d.as_secs_f64() * 1e9;
    if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

fn size(bytes: f64) -> String {
    if bytes < 1024.0 {
        format!("{bytes:.0} B")
    } else {
        format!("{:.1} KiB", bytes / 1024.0)
    }
}

/// Prints the table (Markdown, so it can go into docs/benchmarks.md as is).
pub(crate) fn print(rows: &[Row]) {
    println!();
    println!(
        "| row | median time | allocated / op | allocations / op | payload-sized / op | vs baseline |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | --- |");
    for row in rows {
        let n = row.iterations.max(1) as f64;
        let t = median(&row.id);
        let ratio = match (row.baseline, t) {
            (Some(base), Some(t)) => match median(base) {
                Some(b) => format!(
                    "{:.2}x {}",
                    t.as_secs_f64() / b.as_secs_f64(),
                    base.rsplit('/').next().unwrap_or(base)
                ),
                None => "-".into(),
            },
            _ => String::new(),
        };
        println!(
            "| {} | {} | {} | {:.1} | {:.2} (≥ {}) | {} |",
            row.id,
            t.map_or_else(|| "not run".into(), time),
            size(row.allocated.bytes as f64 / n),
            row.allocated.count as f64 / n,
            row.allocated.large as f64 / n,
            size(row.payload as f64),
            ratio
        );
    }
}

/// Times `a` against `b` in alternating rounds of `per_round` calls and
/// returns the median of the per-round ratios `a / b`, with each side's
/// median per call. Alternating in rounds of a few milliseconds cancels the
/// load drift of a shared machine, which criterion's minutes per row do not.
pub(crate) async fn paired<A, FA, B, FB, TA, TB>(
    rounds: usize,
    per_round: usize,
    a: A,
    b: B,
) -> (f64, Duration, Duration)
where
    A: Fn() -> FA,
    FA: Future<Output = TA>,
    B: Fn() -> FB,
    FB: Future<Output = TB>,
{
    let mut ratios = Vec::with_capacity(rounds);
    let (mut times_a, mut times_b) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..per_round {
            std::hint::black_box(a().await);
        }
        let ta = start.elapsed();
        let start = Instant::now();
        for _ in 0..per_round {
            std::hint::black_box(b().await);
        }
        let tb = start.elapsed();
        ratios.push(ta.as_secs_f64() / tb.as_secs_f64());
        times_a.push(ta / per_round as u32);
        times_b.push(tb / per_round as u32);
    }
    (mid(&mut ratios), mid(&mut times_a), mid(&mut times_b))
}

fn mid<T: PartialOrd + Copy>(values: &mut [T]) -> T {
    values.sort_by(|x, y| x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal));
    values[values.len() / 2]
}
