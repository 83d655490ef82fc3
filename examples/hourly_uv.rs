//! Hourly UV and PV per category: the smallest real job ferroflow runs.
//!
//! Reads click events (the built-in generator by default, or a JSON-lines file), keys
//! them by (category, hour of event time), keeps the distinct users of each key in map
//! state, and emits one row per key when the watermark passes the end of its hour:
//!
//! ```text
//! {"category":17,"hour":"2023-11-14T22:00:00Z","uv":1995,"pv":2000}
//! ```
//!
//! Events behind the watermark for a closed hour are counted as late and not applied.
//!
//! ```text
//! cargo run --release --example hourly_uv                       # 5M generated events
//! cargo run --release --example hourly_uv -- --events 20000000 --parallelism 2
//! cargo run --release --example hourly_uv -- --input clicks.jsonl --output uv.jsonl
//! ```
#![allow(clippy::print_stdout)]

#[path = "common/mod.rs"]
mod common;

use anyhow::Context as _;
use clap::Parser;
use ferroflow::connectors::{
    ClickEvent, GeneratorConfig, GeneratorSource, JsonLinesSink, JsonLinesSource,
};
use ferroflow::metrics::OperatorSnapshot;
use ferroflow::operators::uv::grain::format_time;
use ferroflow::prelude::*;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const HOUR_MS: i64 = 3_600_000;

#[derive(Parser, Debug)]
#[command(about = "Hourly UV/PV per category on ferroflow")]
struct Args {
    /// Serve Prometheus metrics, the status page, JSON endpoints and probes here
    /// (`127.0.0.1:9249`).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Number of generated events (ignored with --input).
    #[arg(long, default_value_t = 5_000_000)]
    events: u64,
    /// Distinct users in the generated stream.
    #[arg(long, default_value_t = 1_000_000)]
    users: u64,
    /// Event time covered by the generated stream, in hours.
    #[arg(long, default_value_t = 24)]
    hours: u64,
    /// Out-of-orderness of generated timestamps and of the watermark, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    disorder_ms: u64,
    /// Read JSON-lines click events (`{"seq":..,"ts":..,"user_id":..,"item_id":..,"category":..}`)
    /// from this file or directory instead of generating them.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Dead-letter file for malformed input lines (default: stop on the first one).
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    /// Output file (JSON lines).
    #[arg(long, default_value = "target/hourly_uv.jsonl")]
    output: PathBuf,
    /// Workers per operator chain.
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
}

/// One output row.
#[derive(Debug, Clone, Serialize)]
struct HourlyUv {
    category: u64,
    hour: String,
    uv: u64,
    pv: u64,
}

/// Distinct users and page views per (category, hour), emitted when the hour closes.
#[derive(Clone)]
struct CountHour {
    users: Option<MapState<u64, ()>>,
    views: Option<ValueState<u64>>,
    late: Arc<AtomicU64>,
}

impl KeyedProcessFunction for CountHour {
    type Key = (u64, i64);
    type In = ClickEvent;
    type Out = HourlyUv;

    fn open(&mut self, ctx: &mut OpenContext<'_, (u64, i64)>) -> Result<()> {
        self.users = Some(ctx.map_state("users")?);
        self.views = Some(ctx.value_state("views")?);
        Ok(())
    }

    fn process(
        &mut self,
        e: ClickEvent,
        ctx: &mut KeyedContext<'_, (u64, i64)>,
        _out: &mut Collector<'_, HourlyUv>,
    ) -> Result<()> {
        let (Some(users), Some(views)) = (self.users, self.views) else {
            return Ok(());
        };
        let hour_end = ctx.key().1 + HOUR_MS - 1;
        if hour_end <= ctx.current_watermark() {
            self.late.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        users.insert(ctx, e.user_id, ())?;
        *views.get_or_insert_with(ctx, || 0)? += 1;
        ctx.register_event_time_timer(hour_end);
        Ok(())
    }

    fn on_timer(
        &mut self,
        _t: Timer,
        ctx: &mut KeyedContext<'_, (u64, i64)>,
        out: &mut Collector<'_, HourlyUv>,
    ) -> Result<()> {
        let (Some(users), Some(views)) = (self.users, self.views) else {
            return Ok(());
        };
        let uv = users.len(ctx)? as u64;
        let pv = views.clear(ctx)?.unwrap_or(0);
        users.clear(ctx)?;
        let (category, hour) = *ctx.key();
        out.collect(HourlyUv {
            category,
            hour: format_time(hour, &ferroflow::Zone::utc()),
            uv,
            pv,
        });
        Ok(())
    }
}

fn sum(metrics: &[OperatorSnapshot], prefix: &str, out: bool) -> u64 {
    metrics
        .iter()
        .filter(|m| m.operator.starts_with(prefix))
        .map(|m| if out { m.records_out } else { m.records_in })
        .sum()
}

fn main() -> anyhow::Result<()> {
    common::init_tracing();
    let args = Args::parse();
    let env = StreamEnvironment::new(common::env_config("hourly_uv", args.parallelism, args.http));
    let disorder = Duration::from_millis(args.disorder_ms);
    let watermarks = WatermarkStrategy::bounded_out_of_orderness(disorder, |e: &ClickEvent| e.ts);
    let events = match &args.input {
        Some(path) => {
            let mut source = JsonLinesSource::<ClickEvent>::new(path);
            if let Some(dlq) = &args.dead_letter {
                source = source.with_dead_letter(dlq);
            }
            env.from_source(source, watermarks)
        }
        None => {
            let config = GeneratorConfig::default()
                .with_events(args.events)
                .with_users(args.users)
                .with_span(Duration::from_secs(args.hours * 3600))
                .with_max_disorder(disorder);
            env.from_source(GeneratorSource::new(config)?, watermarks)
        }
    };
    let late = Arc::new(AtomicU64::new(0));
    events
        .key_by(|e: &ClickEvent| (e.category, e.ts - e.ts.rem_euclid(HOUR_MS)))
        .process(CountHour {
            users: None,
            views: None,
            late: Arc::clone(&late),
        })
        .name("hourly_uv")
        .global()
        .sink(JsonLinesSink::new(&args.output));

    let job = env.start().context("starting the job")?;
    let mut last = 0u64;
    while !job.is_finished() {
        std::thread::sleep(Duration::from_millis(250));
        let m = job.metrics();
        let read = sum(&m, "source", true);
        if read != last {
            let secs = job.elapsed().as_secs_f64();
            eprintln!(
                "{secs:6.1}s  events {read:>12}  ({:.2} M/s)  hours closed {:>6}",
                read as f64 / secs / 1e6,
                sum(&m, "hourly_uv", true),
            );
            last = read;
        }
    }
    let result = job.join()?;
    let read = sum(&result.metrics, "source", true);
    let closed = sum(&result.metrics, "hourly_uv", true);
    println!(
        "read {read} events in {:.2}s ({:.2} M events/s), wrote {closed} (category, hour) rows to {}, {} late events",
        result.elapsed.as_secs_f64(),
        read as f64 / result.elapsed.as_secs_f64() / 1e6,
        args.output.display(),
        late.load(Ordering::Relaxed),
    );
    Ok(())
}
