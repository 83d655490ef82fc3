//! The file sink's Hive metastore policy against a real Hive metastore 2.3.9: the
//! `kafka_to_hive` job creates its table and registers every partition it commits, with
//! the partition's location and the table's ORC storage; committing again changes
//! nothing, a moved partition is moved in the metastore, and a path whose keys are not
//! the table's is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use ferroflow::connectors::filesystem::{
    CommittedPartition, HiveMetastoreConfig, HiveMetastorePolicy, PartitionCommitPolicy,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

/// Partition directories under `root` that hold `_SUCCESS` (`dt=.../hm=...`).
fn committed(root: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for dt in std::fs::read_dir(root).unwrap() {
        let dt = dt.unwrap().path();
        if !dt.file_name().unwrap().to_str().unwrap().starts_with("dt=") {
            continue;
        }
        for hm in std::fs::read_dir(&dt).unwrap() {
            let hm = hm.unwrap().path();
            if hm.join("_SUCCESS").is_file() {
                out.insert(hm.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    out
}

#[test]
fn the_job_registers_every_committed_partition_in_the_metastore() {
    let metastore = common::hive::start();
    let dir = tempfile::tempdir().unwrap();
    let table_dir = dir.path().join("clicks");
    let out = metastore
        .command(common::example("kafka_to_hive"))
        .args(["--events", "30000", "--hours", "1"])
        .args(["--output", table_dir.to_str().unwrap()])
        .args(["--checkpoint-dir", dir.path().join("run").to_str().unwrap()])
        .args(["--checkpoint-interval", "200ms", "--commit-delay", "0s"])
        .args(["--parallelism", "2", "--table", "lake.clicks"])
        .args(["--hive-metastore", &metastore.uri])
        .args(["--ddl", dir.path().join("clicks.sql").to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the job failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let on_disk = committed(&table_dir);
    assert!(
        on_disk.len() >= 12,
        "an hour of 5-minute partitions: {on_disk:?}"
    );
    let root = format!("file://{}", table_dir.display());
    // Hive keeps local locations as `file:/path`.
    let hive_root = format!("file:{}", table_dir.display());

    let config = HiveMetastoreConfig {
        uri: metastore.uri.clone(),
        ..HiveMetastoreConfig::default()
    };
    metastore.inside(|| {
        let policy = HiveMetastorePolicy::new(config, "lake.clicks").unwrap();
        let listed = policy.partitions().unwrap();
        let registered: BTreeSet<String> = listed
            .iter()
            .map(|p| format!("dt={}/hm={}", p.values[0], p.values[1]))
            .collect();
        assert_eq!(
            registered, on_disk,
            "partitions in the metastore = committed ones"
        );
        for p in &listed {
            let path = format!("dt={}/hm={}", p.values[0], p.values[1]);
            assert_eq!(p.location, format!("{hive_root}/{path}"));
            assert_eq!(
                p.input_format,
                "org.apache.hadoop.hive.ql.io.orc.OrcInputFormat"
            );
        }

        // Committing a partition again (late data, a restore) changes nothing.
        let first = listed[0].clone();
        let path = format!("dt={}/hm={}", first.values[0], first.values[1]);
        let again = CommittedPartition {
            path: path.clone(),
            url: format!("{root}/{path}"),
            end: None,
        };
        policy.commit(&again).unwrap();
        assert_eq!(policy.partitions().unwrap(), listed);

        // A partition whose files moved is moved in the metastore.
        let moved = CommittedPartition {
            url: format!("file:/elsewhere/{path}"),
            ..again.clone()
        };
        policy.commit(&moved).unwrap();
        let now = policy.partitions().unwrap();
        assert_eq!(now.len(), listed.len());
        let entry = now.iter().find(|p| p.values == first.values).unwrap();
        assert_eq!(entry.location, moved.url);

        // A new partition is added; keys that are not the table's are refused.
        let new = CommittedPartition {
            path: "dt=2030-01-01/hm=0000".into(),
            url: format!("{root}/dt=2030-01-01/hm=0000"),
            end: None,
        };
        policy.commit(&new).unwrap();
        assert_eq!(policy.partitions().unwrap().len(), listed.len() + 1);
        let wrong = CommittedPartition {
            path: "day=2030-01-01".into(),
            url: format!("{root}/day=2030-01-01"),
            end: None,
        };
        let err = policy.commit(&wrong).unwrap_err().to_string();
        assert!(err.contains("day") && err.contains("lake.clicks"), "{err}");
    });

    // The job created the table it printed.
    let ddl = std::fs::read_to_string(dir.path().join("clicks.sql")).unwrap();
    assert!(
        ddl.contains("CREATE EXTERNAL TABLE IF NOT EXISTS lake.clicks"),
        "{ddl}"
    );
    assert!(ddl.contains(&format!("LOCATION '{root}'")), "{ddl}");
}

#[test]
fn an_unreachable_metastore_fails_the_commit_as_retryable() {
    let port = common::free_port();
    let config = HiveMetastoreConfig {
        uri: format!("thrift://127.0.0.1:{port}"),
        timeout: std::time::Duration::from_secs(2),
        attempts: 2,
    };
    let policy = HiveMetastorePolicy::new(config, "lake.clicks").unwrap();
    let err = policy
        .commit(&CommittedPartition {
            path: "dt=2026-12-05/hm=0000".into(),
            url: "file:///x/dt=2026-12-05/hm=0000".into(),
            end: None,
        })
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("hive metastore"), "{err}");
    assert!(HiveMetastorePolicy::new(
        HiveMetastoreConfig {
            uri: "http://127.0.0.1:1".into(),
            ..HiveMetastoreConfig::default()
        },
        "t"
    )
    .is_err());
}
