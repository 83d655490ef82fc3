//! The dimension join: a click stream enriched with each item's brand, categories and
//! price from a dimension table that changes while the job runs.
//!
//! ```text
//! cargo run --release --example dimension_join                 # generated clicks and table
//! cargo run --release --example dimension_join -- --input clicks.jsonl --output joined.jsonl \
//!     --dim-file items.csv --cache full --reload-interval 10m
//! cargo run --release --example dimension_join -- --input clicks.jsonl --output joined.jsonl \
//!     --dim-redis redis://127.0.0.1:6379 --dim-redis-key 'dim:item:{}' --cache partial \
//!     --cache-rows 100000 --cache-ttl 10m --miss-ttl 10s --retry-delay 1s --retry-attempts 5
//! cargo run --release --features sql --example dimension_join -- --input clicks.jsonl \
//!     --dim-postgres postgres://root@127.0.0.1:5432/test --dim-table dim_item \
//!     --join inner --unmatched unmatched.jsonl --checkpoint-dir /var/lib/join
//! ```
//!
//! Input events are JSON lines with an `"item_id"` (a number, or a string of one) and
//! any other fields, which are kept. Output lines are the event's fields, then
//! `"dim": {"brand": ..., "category1": ..., "category2": ..., "price": "12.50"}` (or
//! `null`) and `"matched": true|false`. `price` keeps its decimals exactly. An item not
//! found is looked up again after `--retry-delay` (doubling) up to `--retry-attempts`
//! times; then a left join writes it with `"dim": null`, an inner join writes the event
//! to `--unmatched`. A malformed input line goes to `<output>.dead-letter.jsonl`.
//!
//! Dimension tables: `--dim-file` (CSV with header `item_id,brand,category1,category2,price`,
//! or `.jsonl`; full cache), `--dim-redis` (a hash per item with fields `brand`,
//! `category1`, `category2`, `price`), `--dim-postgres` / `--dim-mysql` with
//! `--dim-table` (columns `item_id` bigint primary key, `brand`, `category1`,
//! `category2` text, `price` numeric(12,2)). Without one, a table of `--items` generated
//! items in memory, one in fifty missing.
//!
//! Output is exactly-once: written to part files under `<output>.parts/`, published when
//! a checkpoint completes, joined into `<output>` when the input ends. Started again
//! with the same `--checkpoint-dir` after a crash, the job resumes from its latest
//! checkpoint, records waiting for a retry included.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[path = "common/mod.rs"]
mod common;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use ferroflow::connectors::dimension::FileTable;
use ferroflow::connectors::{
    ClickEvent, GeneratorConfig, GeneratorSource, JsonLinesPartSink, JsonLinesSource,
};
use ferroflow::operators::lookup_join::{
    CacheMode, JoinType, LookupCounters, LookupJoin, LookupJoinConfig, MemoryTable, MissRetry,
    ReloadConfig,
};
use ferroflow::prelude::*;
use ferroflow::{CheckpointConfig, RestoreFrom};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(about = "Enrich clicks with a dimension table (lookup join)")]
struct Args {
    /// Serve Prometheus metrics, the status page, JSON endpoints and probes here
    /// (`127.0.0.1:9249`).
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// JSON-lines click events with an `item_id`; default: generated clicks.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Generated events (without --input).
    #[arg(long, default_value_t = 2_000_000)]
    events: u64,
    /// Generated items (without --input), and rows of the generated table.
    #[arg(long, default_value_t = 100_000)]
    items: u64,
    /// Joined records, JSON lines.
    #[arg(long, default_value = "joined.jsonl")]
    output: PathBuf,
    /// Dimension file: CSV with a header, JSON lines or Parquet (`parquet` feature); a
    /// path, or an object-store URL such as s3://bucket/items.csv (credentials and
    /// endpoint from the AWS_* environment variables).
    #[arg(long)]
    dim_file: Option<String>,
    /// Redis server with a hash per item.
    #[arg(long)]
    dim_redis: Option<String>,
    /// Key of an item's hash; `{}` is the item id.
    #[arg(long, default_value = "dim:item:{}")]
    dim_redis_key: String,
    /// PostgreSQL server (needs the `sql` feature).
    #[arg(long)]
    dim_postgres: Option<String>,
    /// MySQL or MariaDB server (needs the `sql` feature).
    #[arg(long)]
    dim_mysql: Option<String>,
    /// Table of items on the SQL server.
    #[arg(long, default_value = "dim_item")]
    dim_table: String,
    /// Where rows are kept: a whole table per worker, what was looked up, or nothing.
    #[arg(long, value_enum)]
    cache: Option<Cache>,
    /// Rows the partial cache holds.
    #[arg(long, default_value_t = 100_000)]
    cache_rows: u64,
    /// A cached row is looked up again after this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
    cache_ttl: Duration,
    /// An item found missing is remembered as missing this long.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    miss_ttl: Duration,
    /// Delay before looking a missing item up again (doubling each time).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    retry_delay: Duration,
    /// Lookups of a missing item after the first.
    #[arg(long, default_value_t = 3)]
    retry_attempts: u32,
    /// Left: every event comes out; inner: unmatched events go to --unmatched.
    #[arg(long, value_enum, default_value = "left")]
    join: Join,
    /// Events an inner join gave up on, JSON lines.
    #[arg(long, default_value = "unmatched.jsonl")]
    unmatched: PathBuf,
    /// Workers.
    #[arg(long, default_value_t = 2)]
    parallelism: usize,
    /// Keyed state backend (the join itself keeps its waiting records in checkpoints).
    #[arg(long, value_enum, default_value = "memory")]
    state: State,
    /// Checkpoint here every 10 s, and resume from the latest checkpoint found here.
    #[arg(long)]
    checkpoint_dir: Option<PathBuf>,
    /// Full cache: reload the table this often (it is also reloaded when a file changes).
    #[arg(long, value_parser = humantime::parse_duration)]
    reload_interval: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Cache {
    Full,
    Partial,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Join {
    Left,
    Inner,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum State {
    Memory,
    Rocksdb,
}

/// An item's row. `price` is text, so that `12.50` stays `12.50`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    brand: String,
    category1: String,
    #[serde(default)]
    category2: Option<String>,
    #[serde(deserialize_with = "exact_text")]
    price: String,
}

/// A decimal as its text, whether written as a string or a number.
fn exact_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => s,
        other => other.to_string(),
    })
}

/// A click: its item and every field it came with. Read from a JSON object whose
/// `item_id` is an integer or a string of one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "Map<String, Value>", into = "Map<String, Value>")]
struct Click {
    item: i64,
    fields: Map<String, Value>,
}

impl TryFrom<Map<String, Value>> for Click {
    type Error = String;

    fn try_from(fields: Map<String, Value>) -> Result<Self, String> {
        let item = match fields.get("item_id") {
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or("`item_id` is missing or not an integer (or a string of one)")?;
        Ok(Self { item, fields })
    }
}

impl From<Click> for Map<String, Value> {
    fn from(c: Click) -> Self {
        c.fields
    }
}

/// One output line: the event's fields, then `dim` and `matched`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Joined {
    #[serde(flatten)]
    fields: Map<String, Value>,
    dim: Option<Item>,
    matched: bool,
}

fn generated_item(i: i64) -> Item {
    Item {
        brand: format!("brand-{}", i % 997),
        category1: format!("cat-{}", i % 20),
        category2: (i % 3 != 0).then(|| format!("cat-{}-{}", i % 20, i % 7)),
        price: format!("{}.{:02}", 1 + i % 999, (i * 37) % 100),
    }
}

fn main() -> anyhow::Result<()> {
    common::init_tracing();
    let a = Args::parse();
    let env = StreamEnvironment::new(common::env_config("dimension_join", a.parallelism, a.http));
    set_state(&env, &a)?;
    let parts = common::sibling(&a.output, ".parts");
    let unmatched_parts = common::sibling(&a.unmatched, ".parts");
    match &a.checkpoint_dir {
        Some(dir) => {
            env.enable_checkpointing(CheckpointConfig::new(dir.join("checkpoints")));
            env.restore_from(RestoreFrom::Latest { fallback: false });
        }
        None => {
            common::remove_dir_if_exists(&parts)?;
            common::remove_dir_if_exists(&unmatched_parts)?;
        }
    }

    let dead_letters = common::sibling(&a.output, ".dead-letter.jsonl");
    let (clicks, dead) = match &a.input {
        Some(path) => {
            let source = JsonLinesSource::<Click>::new(path).with_dead_letter(&dead_letters);
            let dead = source.dead_letters();
            (
                env.from_source(source, WatermarkStrategy::none()),
                Some(dead),
            )
        }
        None => {
            let config = GeneratorConfig::default()
                .with_events(a.events)
                .with_items(a.items)
                .with_item_skew(1.1);
            let clicks = env
                .from_source(GeneratorSource::new(config)?, WatermarkStrategy::none())
                .map(|c: ClickEvent| {
                    let mut fields = Map::new();
                    fields.insert("seq".into(), c.seq.into());
                    fields.insert("ts".into(), c.ts.into());
                    fields.insert("user_id".into(), c.user_id.into());
                    fields.insert("item_id".into(), c.item_id.into());
                    Click {
                        item: i64::try_from(c.item_id).unwrap_or(i64::MAX),
                        fields,
                    }
                });
            (clicks, None)
        }
    };

    let (join, counters) = lookup(&a)?;
    let key = |c: &Click| c.item;
    let out = match a.join {
        Join::Left => join.left(clicks, key)?,
        Join::Inner => {
            let (joined, unmatched) = join.inner(clicks, key)?;
            unmatched
                .map(|c: Click| c.fields)
                .sink(JsonLinesPartSink::new(&unmatched_parts));
            joined
        }
    };
    out.map(|j| Joined {
        matched: j.dim.is_some(),
        fields: j.event.fields,
        dim: j.dim,
    })
    .sink(JsonLinesPartSink::new(&parts));

    let job = env.start().context("starting the job")?;
    let started = std::time::Instant::now();
    let (mut last, mut last_t) = (0u64, 0.0f64);
    let done =
        |c: &LookupCounters| LookupCounters::get(&c.matched) + LookupCounters::get(&c.unmatched);
    while !job.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        let (n, t) = (done(&counters), started.elapsed().as_secs_f64());
        eprintln!(
            "{t:6.1}s  joined {n:>10} ({:>6.2} M/s)  hit rate {:>5.1}%  store requests {:>8}  held {:>7}  unmatched {:>7}",
            n.saturating_sub(last) as f64 / (t - last_t).max(1e-3) / 1e6,
            counters.hit_rate() * 100.0,
            LookupCounters::get(&counters.requests),
            counters.held(),
            LookupCounters::get(&counters.unmatched),
        );
        (last, last_t) = (n, t);
    }
    let result = job.join()?;
    let rows = join_parts(&parts, &a.output)?;
    let lost = if a.join == Join::Inner {
        join_parts(&unmatched_parts, &a.unmatched)?
    } else {
        0
    };
    println!(
        "joined {} events in {:.2}s ({:.2} M/s): {rows} lines in {}{}; cache hit rate {:.1}%, {} store requests for {} keys{}",
        done(&counters),
        result.elapsed.as_secs_f64(),
        done(&counters) as f64 / result.elapsed.as_secs_f64() / 1e6,
        a.output.display(),
        if a.join == Join::Inner { format!(", {lost} unmatched in {}", a.unmatched.display()) } else { String::new() },
        counters.hit_rate() * 100.0,
        LookupCounters::get(&counters.requests),
        LookupCounters::get(&counters.keys_requested),
        match dead.map_or(0, |d| d.get()) {
            0 => String::new(),
            n => format!("; {n} malformed lines in {}", dead_letters.display()),
        },
    );
    Ok(())
}

/// The join the options ask for, and its counters.
fn lookup(a: &Args) -> anyhow::Result<(LookupJoin<i64, Item>, Arc<LookupCounters>)> {
    let sql = a.dim_postgres.as_ref().or(a.dim_mysql.as_ref());
    let default_cache = if a.dim_file.is_some() || (a.dim_redis.is_none() && sql.is_none()) {
        Cache::Full
    } else {
        Cache::Partial
    };
    let cache = a.cache.unwrap_or(default_cache);
    let config = LookupJoinConfig {
        join: match a.join {
            Join::Left => JoinType::Left,
            Join::Inner => JoinType::Inner,
        },
        cache: match cache {
            Cache::Full => CacheMode::Full,
            Cache::Partial => CacheMode::Partial,
            Cache::None => CacheMode::None,
        },
        cache_rows: a.cache_rows,
        cache_ttl: Some(a.cache_ttl),
        miss_ttl: a.miss_ttl,
        retry: MissRetry {
            attempts: a.retry_attempts,
            delay: a.retry_delay,
            ..MissRetry::default()
        },
        reload: ReloadConfig {
            interval: a.reload_interval,
            ..ReloadConfig::default()
        },
        ..LookupJoinConfig::default()
    };
    let full = cache == Cache::Full;
    let join = if let Some(path) = &a.dim_file {
        anyhow::ensure!(full, "--dim-file needs --cache full");
        LookupJoin::full(file_table(path)?, config)
    } else if let Some(url) = &a.dim_redis {
        anyhow::ensure!(
            !full,
            "--dim-redis looks rows up by key: use --cache partial or none"
        );
        redis_join(url, &a.dim_redis_key, config)?
    } else if let Some(url) = sql {
        sql_join(url, &a.dim_table, full, config)?
    } else {
        let table = MemoryTable::new(
            (0..a.items as i64)
                .filter(|i| i % 50 != 49)
                .map(|i| (i, generated_item(i))),
        );
        if full {
            LookupJoin::full(table, config)
        } else {
            LookupJoin::partial(table, config)
        }
    };
    let counters = join.counters();
    Ok((join, counters))
}

/// The table in a local file or at an object-store URL.
fn file_table(location: &str) -> anyhow::Result<FileTable<i64, Item>> {
    if location.contains("://") {
        #[cfg(feature = "object-store")]
        return Ok(FileTable::at_url(location, "item_id", Default::default())?);
        #[cfg(not(feature = "object-store"))]
        anyhow::bail!(
            "--dim-file {location}: URLs need the `object-store` feature (on by default)"
        );
    }
    Ok(FileTable::new(location, "item_id")?)
}

#[cfg(feature = "redis")]
fn redis_join(
    url: &str,
    key: &str,
    config: LookupJoinConfig,
) -> anyhow::Result<LookupJoin<i64, Item>> {
    use ferroflow::connectors::redis::{RedisLookup, RedisRow};
    Ok(LookupJoin::partial(
        RedisLookup::new(url, key, RedisRow::Hash)?,
        config,
    ))
}

#[cfg(not(feature = "redis"))]
fn redis_join(_: &str, _: &str, _: LookupJoinConfig) -> anyhow::Result<LookupJoin<i64, Item>> {
    anyhow::bail!(
        "--dim-redis: this build has no Redis connector; build with the `redis` feature \
         (on by default)"
    )
}

#[cfg(feature = "sql")]
fn sql_join(
    url: &str,
    table: &str,
    full: bool,
    config: LookupJoinConfig,
) -> anyhow::Result<LookupJoin<i64, Item>> {
    let source = ferroflow::connectors::sql::SqlLookup::table(url, table, "item_id")?;
    Ok(if full {
        LookupJoin::full(source, config)
    } else {
        LookupJoin::partial(source, config)
    })
}

#[cfg(not(feature = "sql"))]
fn sql_join(
    _: &str,
    _: &str,
    _: bool,
    _: LookupJoinConfig,
) -> anyhow::Result<LookupJoin<i64, Item>> {
    anyhow::bail!(
        "--dim-postgres/--dim-mysql: this build has no SQL connector; build with the `sql` feature \
         (`cargo run --release --features sql --example dimension_join -- ...`)"
    )
}

#[cfg_attr(not(feature = "rocksdb"), allow(unused_variables))]
fn set_state(env: &StreamEnvironment, a: &Args) -> anyhow::Result<()> {
    match a.state {
        State::Memory => Ok(()),
        #[cfg(not(feature = "rocksdb"))]
        State::Rocksdb => anyhow::bail!(
            "--state rocksdb: this build has no RocksDB backend; build with the `rocksdb` feature \
             (needs a C++ compiler and libclang: `apt-get install build-essential libclang-dev`)"
        ),
        #[cfg(feature = "rocksdb")]
        State::Rocksdb => {
            let dir = a.checkpoint_dir.as_ref().map_or_else(
                || std::env::temp_dir().join("dimension-join-rocksdb"),
                |d| d.join("rocksdb-work"),
            );
            env.set_state_backend(ferroflow::state::RocksDbBackend::new(
                ferroflow::state::RocksDbConfig::default().with_local_dir(dir),
            )?);
            Ok(())
        }
    }
}

/// Joins the published parts into `output`; returns its lines.
fn join_parts(parts: &Path, output: &Path) -> anyhow::Result<u64> {
    let mut files = JsonLinesPartSink::<Value>::published(parts)
        .with_context(|| format!("listing {}", parts.display()))?;
    files.sort();
    let mut out = BufWriter::new(
        std::fs::File::create(output).with_context(|| format!("creating {}", output.display()))?,
    );
    let mut n = 0;
    for f in files {
        for line in std::io::BufReader::new(std::fs::File::open(&f)?).lines() {
            writeln!(out, "{}", line?)?;
            n += 1;
        }
    }
    out.flush()?;
    Ok(n)
}
