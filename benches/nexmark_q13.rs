//! Nexmark q13: bids joined to a bounded side input of 10,000 rows on
//! `auction mod 10000`, driven by the `nexmark` crate's generator (the event stream of
//! the Nexmark benchmark), the side input in the lookup join's full cache. Every bid
//! must find its row. Flink 1.13's published figure for q13 is 130.7 K events/s per
//! core (8 TaskManagers × 1 slot, 100 M events); compare it with the events per
//! CPU-second printed here.
//!
//! `cargo bench --bench nexmark_q13`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use ferroflow::operators::lookup_join::{
    CacheMode, Joined, LookupJoin, LookupJoinConfig, MemoryTable, MissRetry,
};
use ferroflow::prelude::*;
use nexmark::event::Bid;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::bids::Bids;
use support::{bench_parallelism, execute_timed};

const BIDS: u64 = 5_000_000;
const SIDE_ROWS: u64 = 10_000;

fn q13(p: usize) -> (Duration, Duration) {
    let env = StreamEnvironment::new(
        EnvConfig::default()
            .with_parallelism(p)
            .with_signal_handling(false),
    );
    let side: MemoryTable<u64, Arc<str>> =
        MemoryTable::new((0..SIDE_ROWS).map(|k| (k, Arc::from(format!("side-{k}").as_str()))));
    let config = LookupJoinConfig {
        cache: CacheMode::Full,
        retry: MissRetry {
            attempts: 0,
            ..MissRetry::default()
        },
        ..LookupJoinConfig::default()
    };
    let matched = Arc::new(AtomicU64::new(0));
    let m = Arc::clone(&matched);
    let bids = env.from_source(Bids { total: BIDS }, WatermarkStrategy::none());
    LookupJoin::full(side, config)
        .left(bids, |b: &Bid| b.auction as u64 % SIDE_ROWS)
        .unwrap()
        // The query's output: auction, bidder, price, dateTime and the side input's value.
        .map(|j: Joined<Bid, Arc<str>>| {
            (
                j.event.auction,
                j.event.bidder,
                j.event.price,
                j.event.date_time,
                j.dim,
            )
        })
        .map_batch(move |rows: Vec<_>| {
            m.fetch_add(
                rows.iter().filter(|r| r.4.is_some()).count() as u64,
                Ordering::Relaxed,
            );
            Vec::<()>::new()
        })
        .sink(DiscardSink::new());
    let (wall, cpu) = execute_timed(&env);
    assert_eq!(
        matched.load(Ordering::Relaxed),
        BIDS,
        "every bid finds its row"
    );
    (wall, cpu)
}

fn nexmark(c: &mut Criterion) {
    bench_parallelism(c, "nexmark_q13", BIDS, q13);
}

criterion_group!(benches, nexmark);
criterion_main!(benches);
