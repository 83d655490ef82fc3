//! Checkpoints kept in an object store: a `file://` location, and S3 served by a local S3
//! server. The local checkpoint directory is deleted between runs (as on a new machine), so
//! every restore reads the storage; results stay exactly-once and unused files are
//! collected there.
#![cfg(feature = "object-store")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::counting::*;
use ferroflow::{CheckpointConfig, RestoreFrom};
use std::path::Path;
use std::time::Duration;

fn config(d: &Dirs, url: &str) -> CheckpointConfig {
    CheckpointConfig::new(&d.checkpoints)
        .with_interval(Duration::from_millis(25))
        .with_storage(url)
}

/// Removes the local working copies, as if the job moved to another machine.
fn lose_local_state(d: &Dirs) {
    for dir in [
        d.checkpoints.clone(),
        d.checkpoints.with_file_name("rocksdb"),
    ] {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

/// Files (not directories) under `dir`.
fn files_under(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| {
                if e.path().is_dir() {
                    files_under(&e.path())
                } else {
                    1
                }
            })
            .sum()
    })
}

/// A savepoint is stored under its own name and restores by that name on a machine
/// that never saw it.
#[test]
fn a_stored_savepoint_restores_by_name() {
    let d = dirs();
    let store = d._tmp.path().join("store");
    let url = format!("file://{}", store.display());
    let handle = job_with(&d, 2, None, RestoreFrom::Nothing, false, config(&d, &url))
        .start()
        .unwrap();
    std::thread::sleep(Duration::from_millis(250));
    let (savepoint, _) = handle.stop_with_savepoint().unwrap();
    let name = savepoint.file_name().unwrap().to_owned();
    assert!(store.join(&name).join("_metadata").is_file());
    let chk = store.join(name.to_string_lossy().replace("savepoint-", "chk-"));
    assert_eq!(
        files_under(&chk),
        0,
        "the savepoint's files moved to its name"
    );
    lose_local_state(&d);
    job_with(
        &d,
        3,
        None,
        RestoreFrom::Path(name.into()),
        false,
        config(&d, &url),
    )
    .execute()
    .unwrap();
    assert_eq!(published(&d.output), expected());
}

#[test]
fn storage_urls_are_checked_at_start() {
    let d = dirs();
    let cases = [
        (config(&d, "ftp://example/x"), "unsupported scheme `ftp`"),
        (config(&d, "not a url"), "checkpoint storage not a url"),
        (
            config(&d, "file:///nowhere").with_storage_option("region", "x"),
            "takes no options",
        ),
    ];
    for (checkpoints, wanted) in cases {
        let err = job_with(&d, 1, None, RestoreFrom::Nothing, false, checkpoints)
            .execute()
            .unwrap_err();
        assert!(err.to_string().contains(wanted), "{err}");
    }
}

/// Native RocksDB checkpoints in storage, `file://` and S3.
#[cfg(feature = "rocksdb")]
mod rocksdb {
    use super::*;
    use std::collections::BTreeSet;

    /// In a `file://` store at `root`: the complete checkpoints, the shared files their
    /// metadata lists, and the shared files present.
    fn stored(root: &Path) -> (Vec<String>, BTreeSet<String>, BTreeSet<String>) {
        let (mut complete, mut used) = (Vec::new(), BTreeSet::new());
        for entry in std::fs::read_dir(root).unwrap().flatten() {
            let meta = entry.path().join("_metadata");
            if !meta.is_file() {
                continue;
            }
            complete.push(entry.file_name().to_string_lossy().into_owned());
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
            for f in meta["state_files"].as_array().unwrap() {
                assert!(root.join(f["file"].as_str().unwrap()).is_file());
                for file in f["files"].as_array().into_iter().flatten() {
                    let path = file["path"].as_str().unwrap();
                    let size = std::fs::metadata(root.join(path)).unwrap().len();
                    assert_eq!(size, file["bytes"].as_u64().unwrap(), "{path}");
                    if path.starts_with("shared/") {
                        used.insert(path.to_string());
                    }
                }
            }
        }
        let present = std::fs::read_dir(root.join("shared"))
            .map(|e| {
                e.flatten()
                    .map(|e| format!("shared/{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        complete.sort();
        (complete, used, present)
    }

    /// RocksDB state checkpointed to a `file://` store survives the loss of every local file,
    /// across failures and a rescale 2 → 3 → 1.
    #[test]
    fn file_storage_restores_after_the_local_directory_is_lost() {
        let d = dirs();
        let store = d._tmp.path().join("store");
        let url = format!("file://{}", store.display());
        let latest = RestoreFrom::Latest { fallback: false };
        let run = |p: usize, fail: Option<u64>| {
            job_with(&d, p, fail, latest.clone(), true, config(&d, &url)).execute()
        };
        assert!(run(2, Some(14_000)).is_err());
        let (complete, used, present) = stored(&store);
        assert!(!complete.is_empty(), "checkpoints reached the storage");
        assert!(
            !used.is_empty(),
            "RocksDB checkpoints are native in storage too"
        );
        assert!(used.is_subset(&present));
        lose_local_state(&d);
        assert!(run(3, Some(11_000)).is_err());
        lose_local_state(&d);
        run(1, None).unwrap();
        assert_eq!(published(&d.output), expected());
        let (complete, used, present) = stored(&store);
        assert!(
            complete.len() <= 3,
            "only the retained checkpoints: {complete:?}"
        );
        assert_eq!(
            used, present,
            "unused shared files are deleted from storage"
        );
    }

    /// The exactly-once job checkpoints RocksDB state to S3, fails, loses its local files and
    /// resumes from S3 alone.
    #[test]
    fn s3_storage_restores_after_the_local_directory_is_lost() {
        let server = common::s3::server("checkpoints");
        let d = dirs();
        let s3 = |d: &Dirs| {
            config(d, "s3://checkpoints/jobs/count")
                .with_storage_option("aws_endpoint", &server.endpoint)
                .with_storage_option("aws_allow_http", "true")
                .with_storage_option("aws_region", "us-east-1")
                .with_storage_option("aws_access_key_id", "test")
                .with_storage_option("aws_secret_access_key", "test")
        };
        let latest = RestoreFrom::Latest { fallback: false };
        assert!(job_with(&d, 2, Some(15_000), latest.clone(), true, s3(&d))
            .execute()
            .is_err());
        lose_local_state(&d);
        job_with(&d, 2, None, latest, true, s3(&d))
            .execute()
            .unwrap();
        assert_eq!(published(&d.output), expected());
    }

    /// The same on a real HDFS (a NameNode and a DataNode started for the test).
    #[cfg(feature = "hdfs")]
    #[test]
    fn hdfs_storage_restores_after_the_local_directory_is_lost() {
        let hdfs = common::hdfs::start();
        let d = dirs();
        let url = format!("{}/checkpoints/jobs/count", hdfs.url);
        let latest = RestoreFrom::Latest { fallback: false };
        assert!(
            job_with(&d, 2, Some(15_000), latest.clone(), true, config(&d, &url))
                .execute()
                .is_err()
        );
        lose_local_state(&d);
        job_with(&d, 2, None, latest, true, config(&d, &url))
            .execute()
            .unwrap();
        assert_eq!(published(&d.output), expected());
    }
}
