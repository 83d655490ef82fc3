//! The lookup join against real PostgreSQL and MariaDB servers: a partial cache equals a
//! brute-force join, rows inserted after the start are joined through retries, a full
//! cache loads the table, and prices keep their two decimals exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::connectors::sql::SqlLookup;
use ferroflow::operators::lookup_join::{CacheMode, LookupJoin, LookupJoinConfig, MissRetry};
use ferroflow::sinks::CollectSink;
use serde::{Deserialize, Serialize};
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    item_id: i64,
    brand: String,
    category1: String,
    category2: Option<String>,
    /// `numeric(12,2)`: exact, as text.
    price: String,
}

fn item(i: i64) -> Item {
    Item {
        item_id: i,
        brand: format!("brand-{}", i % 17),
        category1: format!("c{}", i % 5),
        category2: (i % 3 != 0).then(|| format!("c{}-{}", i % 5, i % 3)),
        price: format!("{}.{:02}", i % 500, (i * 7) % 100),
    }
}

#[derive(Clone, Copy, Debug)]
enum Server {
    Postgres,
    MariaDb,
}

impl Server {
    fn url(self) -> String {
        match self {
            Self::Postgres => std::env::var("FERROFLOW_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into()),
            Self::MariaDb => std::env::var("FERROFLOW_MYSQL_URL")
                .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        }
    }

    /// Runs SQL through the server's command-line client.
    fn exec(self, sql: &str) {
        let url = self.url();
        let out = match self {
            Self::Postgres => Command::new("psql")
                .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
                .output(),
            Self::MariaDb => {
                let (host, port, user, db) = mysql_parts(&url);
                Command::new("mariadb")
                    .args(["-h", &host, "-P", &port, "-u", &user, &db, "-e", sql])
                    .output()
            }
        }
        .unwrap_or_else(|e| panic!("{self:?} client not found ({e}): run `bash scripts/test`"));
        assert!(
            out.status.success(),
            "{self:?} at {url}: {}\n(run `bash scripts/test`, which starts the servers)",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn create(self, table: &str, rows: impl Iterator<Item = i64>) {
        self.exec(&format!("DROP TABLE IF EXISTS {table}"));
        self.exec(&format!(
            "CREATE TABLE {table} (item_id bigint PRIMARY KEY, brand varchar(64) NOT NULL, \
             category1 varchar(64) NOT NULL, category2 varchar(64), price numeric(12,2) NOT NULL)"
        ));
        self.insert(table, rows);
    }

    fn insert(self, table: &str, rows: impl Iterator<Item = i64>) {
        let values: Vec<String> = rows
            .map(|i| {
                let it = item(i);
                let c2 = it
                    .category2
                    .map_or("NULL".to_string(), |c| format!("'{c}'"));
                format!(
                    "({i}, '{}', '{}', {c2}, {})",
                    it.brand, it.category1, it.price
                )
            })
            .collect();
        for chunk in values.chunks(500) {
            self.exec(&format!("INSERT INTO {table} VALUES {}", chunk.join(", ")));
        }
    }
}

/// (host, port, user, database) of `mysql://user@host:port/db`.
fn mysql_parts(url: &str) -> (String, String, String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (auth, rest) = rest.split_once('@').unwrap_or(("root", rest));
    let user = auth.split(':').next().unwrap_or("root").to_string();
    let (hostport, db) = rest.split_once('/').unwrap_or((rest, "test"));
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    (host.to_string(), port.to_string(), user, db.to_string())
}

type Click = (u64, i64);

fn clicks(n: u64, items: i64) -> Vec<Click> {
    (0..n)
        .map(|i| (i, ((i * 13 + i / 7) % items as u64) as i64))
        .collect()
}

fn brute(input: &[Click], present: impl Fn(i64) -> bool) -> Vec<(u64, Option<Item>)> {
    let mut rows: Vec<_> = input
        .iter()
        .map(|&(s, i)| (s, present(i).then(|| item(i))))
        .collect();
    rows.sort_by_key(|r| r.0);
    rows
}

fn run(input: Vec<Click>, join: LookupJoin<i64, Item>) -> Vec<(u64, Option<Item>)> {
    common::left_join(2, input, join)
}

fn table_name(server: Server, what: &str) -> String {
    format!("ff_dim_{what}_{:?}_{}", server, std::process::id()).to_lowercase()
}

fn joins_like_a_brute_force_join(server: Server) {
    let table = table_name(server, "item");
    server.create(&table, 0..400);
    let input = clicks(20_000, 500);
    let config = LookupJoinConfig {
        retry: MissRetry {
            attempts: 1,
            delay: Duration::from_millis(10),
            ..MissRetry::default()
        },
        ..LookupJoinConfig::default()
    };
    let source = SqlLookup::table(&server.url(), &table, "item_id").unwrap();
    let rows = run(input.clone(), LookupJoin::partial(source, config));
    assert_eq!(rows, brute(&input, |i| i < 400), "{server:?}");
    // Exact decimals: 7.70 stays 7.70.
    assert!(rows
        .iter()
        .any(|r| r.1.as_ref().is_some_and(|it| it.price.ends_with('0'))));
    server.exec(&format!("DROP TABLE {table}"));
}

fn late_rows_join_through_retries(server: Server) {
    let table = table_name(server, "late");
    server.create(&table, 0..50);
    let writer = {
        let table = table.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            server.insert(&table, 50..100);
        })
    };
    let config = LookupJoinConfig {
        retry: MissRetry {
            attempts: 40,
            delay: Duration::from_millis(50),
            multiplier: 1.0,
            ..MissRetry::default()
        },
        ..LookupJoinConfig::default()
    };
    let input = clicks(5_000, 100);
    let source = SqlLookup::table(&server.url(), &table, "item_id").unwrap();
    let rows = run(input.clone(), LookupJoin::partial(source, config));
    writer.join().unwrap();
    assert_eq!(rows, brute(&input, |_| true), "{server:?}");
    server.exec(&format!("DROP TABLE {table}"));
}

fn a_full_cache_loads_the_table(server: Server) {
    let table = table_name(server, "full");
    server.create(&table, 0..300);
    let config = LookupJoinConfig {
        cache: CacheMode::Full,
        retry: MissRetry {
            attempts: 0,
            ..MissRetry::default()
        },
        ..LookupJoinConfig::default()
    };
    let input = clicks(10_000, 400);
    let source = SqlLookup::table(&server.url(), &table, "item_id").unwrap();
    let rows = run(input.clone(), LookupJoin::full(source, config));
    assert_eq!(rows, brute(&input, |i| i < 300), "{server:?}");
    server.exec(&format!("DROP TABLE {table}"));
}

#[test]
fn postgres_joins_like_a_brute_force_join() {
    joins_like_a_brute_force_join(Server::Postgres);
}

#[test]
fn mariadb_joins_like_a_brute_force_join() {
    joins_like_a_brute_force_join(Server::MariaDb);
}

#[test]
fn postgres_rows_inserted_later_join_through_retries() {
    late_rows_join_through_retries(Server::Postgres);
}

#[test]
fn mariadb_rows_inserted_later_join_through_retries() {
    late_rows_join_through_retries(Server::MariaDb);
}

#[test]
fn postgres_full_cache() {
    a_full_cache_loads_the_table(Server::Postgres);
}

#[test]
fn mariadb_full_cache() {
    a_full_cache_loads_the_table(Server::MariaDb);
}

#[test]
fn a_bad_query_fails_the_job_without_retrying() {
    let env = common::env(1);
    let source =
        SqlLookup::<i64, Item>::table(&Server::Postgres.url(), "ff_no_such_table", "item_id")
            .unwrap();
    LookupJoin::partial(source, LookupJoinConfig::default())
        .left(env.from_iter(vec![(0u64, 1i64)]), |c: &Click| c.1)
        .unwrap()
        .sink(CollectSink::new());
    let started = std::time::Instant::now();
    let err = env.execute().unwrap_err().to_string();
    assert!(err.contains("ff_no_such_table"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "not retried");
}
