//! Shared by the benches: run a job, measure wall and CPU time, report per-core rates.
// Each bench uses a different part of this module.
#![allow(dead_code)]

pub mod bids;

/// The benches allocate through mimalloc, as the example jobs do (see
/// `examples/common/mod.rs`): the figures are those of a job built that way.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BenchmarkId, Criterion, Throughput};
use ferroflow::connectors::ClickEvent;
use ferroflow::prelude::*;
use std::time::Duration;

/// User + system CPU time of this process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Runs the job built in `env` to its end; returns its (wall, CPU) time.
pub fn execute_timed(env: &StreamEnvironment) -> (Duration, Duration) {
    let (cpu0, t0) = (cpu_time(), std::time::Instant::now());
    env.execute().expect("job");
    (t0.elapsed(), cpu_time() - cpu0)
}

/// Wall and CPU totals over the iterations of one benchmark.
#[derive(Default)]
pub struct Totals {
    pub records: u64,
    pub wall: Duration,
    pub cpu: Duration,
}

impl Totals {
    pub fn add(&mut self, records: u64, wall: Duration, cpu: Duration) {
        self.records += records;
        self.wall += wall;
        self.cpu += cpu;
    }

    pub fn report(&self, name: &str) {
        if self.records == 0 {
            return;
        }
        let wall = self.records as f64 / self.wall.as_secs_f64();
        let per_core = self.records as f64 / self.cpu.as_secs_f64();
        eprintln!(
            "SUMMARY {name}: {:.2} M records/s wall, {:.2} M records per CPU-second (cores busy {:.2})",
            wall / 1e6,
            per_core / 1e6,
            self.cpu.as_secs_f64() / self.wall.as_secs_f64()
        );
    }
}

/// Benchmarks `run(parallelism) -> (wall, cpu)` at parallelism 1 and 2 as one criterion
/// group, each iteration one whole job of `records` records, and prints per-core rates.
pub fn bench_parallelism(
    c: &mut Criterion,
    name: &str,
    records: u64,
    run: fn(usize) -> (Duration, Duration),
) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Elements(records));
    group.sample_size(10);
    for p in [1usize, 2] {
        let mut totals = Totals::default();
        group.bench_with_input(BenchmarkId::new("parallelism", p), &p, |b, &p| {
            b.iter_custom(|iters| {
                let mut wall = Duration::ZERO;
                for _ in 0..iters {
                    let (w, cpu) = run(p);
                    totals.add(records, w, cpu);
                    wall += w;
                }
                wall
            });
        });
        totals.report(&format!("{name} p={p}"));
    }
    group.finish();
}

/// Counts events per key in value state and emits nothing until the end of input, then one
/// record per key with its final count (a timer at the end of event time), so that a bench
/// can check every count.
#[derive(Clone, Default)]
pub struct FinalCount {
    count: Option<ValueState<u64>>,
}

impl KeyedProcessFunction for FinalCount {
    type Key = u64;
    type In = ClickEvent;
    type Out = u64;

    fn open(&mut self, ctx: &mut OpenContext<'_, u64>) -> Result<()> {
        self.count = Some(ctx.value_state("count")?);
        Ok(())
    }

    fn process(
        &mut self,
        _e: ClickEvent,
        ctx: &mut KeyedContext<'_, u64>,
        _out: &mut Collector<'_, u64>,
    ) -> Result<()> {
        if let Some(count) = self.count {
            let n = count.get_or_insert_with(ctx, || 0)?;
            *n += 1;
            if *n == 1 {
                ctx.register_event_time_timer(i64::MAX - 1);
            }
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        _t: Timer,
        ctx: &mut KeyedContext<'_, u64>,
        out: &mut Collector<'_, u64>,
    ) -> Result<()> {
        if let Some(count) = self.count {
            out.collect(count.get(ctx)?.copied().unwrap_or(0));
        }
        Ok(())
    }
}

/// A field of `/proc/self/status` (`VmRSS`, `VmHWM`), bytes.
pub fn proc_status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Whether the command line's filter (criterion's positional argument) selects `name`.
pub fn selected(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a != "--bench")
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}
