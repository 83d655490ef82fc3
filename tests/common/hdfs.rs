//! A real HDFS for the tests: a NameNode and a DataNode of Hadoop 2.7.3 (the jars of
//! PyPI's pyspark 2.4.8 source package, which `scripts/test` fetches into
//! `FERROFLOW_HADOOP_JARS`, by default `~/.cache/ferroflow-hadoop/jars`) on free
//! loopback ports, run by Java. `FERROFLOW_HDFS_URL`
//! names a cluster of your own instead.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running HDFS (or one named by `FERROFLOW_HDFS_URL`).
pub struct Hdfs {
    daemons: Vec<Child>,
    /// `hdfs://127.0.0.1:<port>`.
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Hdfs {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

fn property(name: &str, value: &str) -> String {
    format!("  <property><name>{name}</name><value>{value}</value></property>\n")
}

/// Starts a NameNode and a DataNode and waits until a file can be written.
pub fn start() -> Hdfs {
    use ferroflow::storage::object_store::ObjectStoreExt;
    if let Ok(url) = std::env::var("FERROFLOW_HDFS_URL") {
        return Hdfs {
            daemons: Vec::new(),
            url,
            _dir: None,
        };
    }
    let jars = super::jars(
        "FERROFLOW_HADOOP_JARS",
        "ferroflow-hadoop",
        "hadoop-hdfs-2.7.3.jar",
        "FERROFLOW_HDFS_URL to a cluster of your own",
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    for app in ["hdfs", "datanode", "secondary", "static"] {
        std::fs::create_dir_all(conf.join("webapps").join(app)).unwrap();
    }
    let port = super::free_port;
    let (nn, nn_http, secondary, dn, dn_http, dn_ipc) =
        (port(), port(), port(), port(), port(), port());
    let at = |p: u16| format!("127.0.0.1:{p}");
    let url = format!("hdfs://127.0.0.1:{nn}");
    let site = |props: String| {
        format!("<?xml version=\"1.0\"?>\n<configuration>\n{props}</configuration>\n")
    };
    std::fs::write(
        conf.join("core-site.xml"),
        site(
            property("fs.defaultFS", &url) + &property("hadoop.security.authentication", "simple"),
        ),
    )
    .unwrap();
    let data = dir.path().display().to_string();
    let hdfs_props = [
        ("dfs.namenode.name.dir", format!("file://{data}/name")),
        ("dfs.datanode.data.dir", format!("file://{data}/data")),
        ("dfs.replication", "1".into()),
        ("dfs.permissions.enabled", "false".into()),
        ("dfs.webhdfs.enabled", "false".into()),
        ("dfs.namenode.rpc-address", at(nn)),
        ("dfs.namenode.http-address", at(nn_http)),
        ("dfs.namenode.secondary.http-address", at(secondary)),
        ("dfs.datanode.address", at(dn)),
        ("dfs.datanode.http.address", at(dn_http)),
        ("dfs.datanode.ipc.address", at(dn_ipc)),
        ("dfs.datanode.hostname", "127.0.0.1".into()),
        (
            "dfs.namenode.datanode.registration.ip-hostname-check",
            "false".into(),
        ),
        ("dfs.namenode.safemode.extension", "0".into()),
    ]
    .iter()
    .map(|(k, v)| property(k, v))
    .collect::<String>();
    std::fs::write(conf.join("hdfs-site.xml"), site(hdfs_props)).unwrap();
    std::fs::write(
        conf.join("log4j.properties"),
        "log4j.rootLogger=WARN, console\nlog4j.appender.console=org.apache.log4j.ConsoleAppender\n\
         log4j.appender.console.target=System.err\n\
         log4j.appender.console.layout=org.apache.log4j.PatternLayout\n",
    )
    .unwrap();
    let classpath = format!("{}:{jars}/*", conf.display());
    let java = |class: &str, args: &[&str]| {
        let mut cmd = Command::new("java");
        cmd.args(["-Xmx512m", "-cp", &classpath, class])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    };
    let formatted = java(
        "org.apache.hadoop.hdfs.server.namenode.NameNode",
        &["-format", "-nonInteractive"],
    )
    .status()
    .unwrap_or_else(|e| panic!("java could not run ({e}): `bash scripts/test` installs a JRE"));
    assert!(formatted.success(), "formatting the NameNode failed");
    let mut hdfs = Hdfs {
        daemons: Vec::new(),
        url,
        _dir: Some(dir),
    };
    hdfs.daemons.push(
        java("org.apache.hadoop.hdfs.server.namenode.NameNode", &[])
            .spawn()
            .unwrap(),
    );
    hdfs.daemons.push(
        java("org.apache.hadoop.hdfs.server.datanode.DataNode", &[])
            .spawn()
            .unwrap(),
    );
    // Ready once a file can be written (the DataNode registered).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    while Instant::now() < deadline {
        for d in &mut hdfs.daemons {
            assert!(d.try_wait().unwrap().is_none(), "an HDFS daemon exited");
        }
        let probe = ferroflow::storage::open_store(
            &format!("{}/_probe", hdfs.url),
            &Default::default(),
            runtime.handle(),
        );
        match probe {
            Ok((store, path)) => {
                let put =
                    runtime.block_on(store.put(&path.clone().join("ready"), b"ok".to_vec().into()));
                match put {
                    Ok(_) => return hdfs,
                    Err(e) => last = e.to_string(),
                }
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "HDFS at {} did not accept a write within 90 s: {last}",
        hdfs.url
    );
}
