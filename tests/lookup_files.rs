//! File dimensions in S3 (a local S3 server): a CSV table (and, with the `parquet`
//! feature, a Parquet one) loaded into the lookup join's full cache, and reloaded when
//! the object is rewritten while the job runs.
#![cfg(feature = "object-store")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::connectors::dimension::FileTable;
use ferroflow::operators::lookup_join::{
    CacheMode, LookupJoin, LookupJoinConfig, MissRetry, ReloadConfig,
};
use ferroflow::storage::object_store::{path::Path as StorePath, ObjectStoreExt, PutPayload};
use ferroflow::storage::open_store;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    brand: String,
    price: String,
}

fn item(i: i64) -> Item {
    Item {
        brand: format!("brand-{i}"),
        price: format!("{i}.{}0", i % 10),
    }
}

fn csv(items: std::ops::Range<i64>) -> Vec<u8> {
    let mut text = String::from("item_id,brand,price\n");
    for i in items {
        let it = item(i);
        text.push_str(&format!("{i},{},{}\n", it.brand, it.price));
    }
    text.into_bytes()
}

/// Writes `bytes` to `url` on the server.
fn put(url: &str, options: &BTreeMap<String, String>, bytes: Vec<u8>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (store, path): (_, StorePath) = open_store(url, options, rt.handle()).unwrap();
    rt.block_on(store.put(&path, PutPayload::from(bytes)))
        .unwrap();
}

fn config(watch: Option<Duration>, attempts: u32) -> LookupJoinConfig {
    LookupJoinConfig {
        cache: CacheMode::Full,
        reload: ReloadConfig {
            watch_interval: watch,
            ..ReloadConfig::default()
        },
        retry: MissRetry {
            attempts,
            delay: Duration::from_millis(30),
            multiplier: 1.0,
            ..MissRetry::default()
        },
        ..LookupJoinConfig::default()
    }
}

fn brute(input: &[(u64, i64)], present: impl Fn(i64) -> bool) -> Vec<(u64, Option<Item>)> {
    input
        .iter()
        .map(|&(s, i)| (s, present(i).then(|| item(i))))
        .collect()
}

#[test]
fn a_csv_table_in_s3_is_joined_and_reloaded_when_rewritten() {
    let server = common::s3::server("dims");
    let options = server.options();
    let url = "s3://dims/items/items.csv";
    put(url, &options, csv(0..50));
    let rewriter = {
        let options = options.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            put(url, &options, csv(0..100));
        })
    };
    let input: Vec<(u64, i64)> = (0..4_000u64).map(|s| (s, (s * 7 % 100) as i64)).collect();
    let table = FileTable::<i64, Item>::at_url(url, "item_id", options).unwrap();
    let join = LookupJoin::full(table, config(Some(Duration::from_millis(50)), 100));
    let counters = join.counters();
    let rows = common::left_join(2, input.clone(), join);
    rewriter.join().unwrap();
    assert_eq!(rows, brute(&input, |_| true));
    // Both workers loaded at the start, and again after the rewrite.
    assert!(counters.reloads.load(std::sync::atomic::Ordering::Relaxed) >= 4);
}

#[cfg(feature = "parquet")]
#[test]
fn a_parquet_table_in_s3_keeps_exact_prices() {
    use arrow::datatypes::{DataType, Field};
    #[derive(Serialize)]
    struct Row {
        item_id: i64,
        brand: String,
        price: String,
    }
    let server = common::s3::server("dims");
    let options = server.options();
    let rows: Vec<Row> = (0..80)
        .map(|i| {
            let it = item(i);
            Row {
                item_id: i,
                brand: it.brand,
                price: it.price,
            }
        })
        .collect();
    let fields = vec![
        std::sync::Arc::new(Field::new("item_id", DataType::Int64, false)),
        std::sync::Arc::new(Field::new("brand", DataType::Utf8, false)),
        std::sync::Arc::new(Field::new("price", DataType::Utf8, false)),
    ];
    let batch = serde_arrow::to_record_batch(&fields, &rows).unwrap();
    let mut bytes = Vec::new();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    let url = "s3://dims/items.parquet";
    put(url, &options, bytes);
    let input: Vec<(u64, i64)> = (0..3_000u64).map(|s| (s, (s * 11 % 100) as i64)).collect();
    let table = FileTable::<i64, Item>::at_url(url, "item_id", options).unwrap();
    let rows = common::left_join(2, input.clone(), LookupJoin::full(table, config(None, 0)));
    assert_eq!(rows, brute(&input, |i| i < 80));
    assert!(rows
        .iter()
        .any(|r| r.1.as_ref().is_some_and(|it| it.price == "70.00")));
}
