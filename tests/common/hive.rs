//! A real Hive metastore (2.3.9, Thrift, Derby storage) for the tests: the jars of PyPI's
//! pyspark 3.5 source package, which `scripts/test` fetches into `FERROFLOW_HIVE_JARS`
//! (by default `~/.cache/ferroflow-hive/jars`), run by Java. Hive 2 listens on every
//! interface, so it runs in a private network namespace that has only loopback; a test
//! reaches it from inside: [`Metastore::command`] runs a program there and
//! [`Metastore::inside`] runs a closure on a thread moved there. `FERROFLOW_HIVE_METASTORE`
//! (`thrift://host:port`) names a metastore of your own instead, reached directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running metastore.
pub struct Metastore {
    child: Option<Child>,
    /// `thrift://127.0.0.1:9083`, as seen from inside the namespace.
    pub uri: String,
    /// The namespace's handle (`/proc/<pid>/ns/net`), when the metastore is ours.
    namespace: Option<PathBuf>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Metastore {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn property(name: &str, value: &str) -> String {
    format!("  <property><name>{name}</name><value>{value}</value></property>\n")
}

/// Starts a metastore in a new network namespace and waits until it accepts connections.
pub fn start() -> Metastore {
    if let Ok(uri) = std::env::var("FERROFLOW_HIVE_METASTORE") {
        return Metastore {
            child: None,
            uri,
            namespace: None,
            _dir: None,
        };
    }
    let jars = super::jars(
        "FERROFLOW_HIVE_JARS",
        "ferroflow-hive",
        "hive-metastore-2.3.9.jar",
        "FERROFLOW_HIVE_METASTORE to a metastore of your own",
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let data = dir.path().display().to_string();
    let props = [
        (
            "javax.jdo.option.ConnectionURL",
            format!("jdbc:derby:;databaseName={data}/metastore_db;create=true"),
        ),
        ("datanucleus.schema.autoCreateAll", "true".into()),
        ("hive.metastore.schema.verification", "false".into()),
        ("hive.async.log.enabled", "false".into()),
        (
            "hive.metastore.warehouse.dir",
            format!("file://{data}/warehouse"),
        ),
    ]
    .iter()
    .map(|(k, v)| property(k, v))
    .collect::<String>();
    std::fs::write(
        conf.join("hive-site.xml"),
        format!("<?xml version=\"1.0\"?>\n<configuration>\n{props}</configuration>\n"),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("metastore.log")).unwrap();
    // `unshare -n` gives the shell a network namespace of its own; `exec` keeps its PID
    // for Java, so /proc/<pid>/ns/net names the namespace.
    let script = format!(
        "ip link set lo up && exec java -Xmx512m -Dderby.system.home={data} \
         --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED \
         --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED \
         -cp '{}:{jars}/*' org.apache.hadoop.hive.metastore.HiveMetaStore -p 9083",
        conf.display()
    );
    let child = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("unshare could not run ({e}): it is in util-linux"));
    let namespace = PathBuf::from(format!("/proc/{}/ns/net", child.id()));
    let metastore = Metastore {
        child: Some(child),
        uri: "thrift://127.0.0.1:9083".into(),
        namespace: Some(namespace),
        _dir: Some(dir),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let up = metastore.inside(|| std::net::TcpStream::connect("127.0.0.1:9083").is_ok());
        if up {
            return metastore;
        }
        let log = metastore
            ._dir
            .as_ref()
            .unwrap()
            .path()
            .join("metastore.log");
        assert!(
            Instant::now() < deadline,
            "the Hive metastore did not start in 120 s (needs root for `unshare -n`): {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

impl Metastore {
    /// `program` run where the metastore is reachable at [`Metastore::uri`].
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.namespace {
            Some(ns) => {
                let mut cmd = Command::new("nsenter");
                cmd.arg(format!("--net={}", ns.display()))
                    .arg("--")
                    .arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    /// Runs `f` on a thread inside the metastore's network namespace (threads it starts
    /// are inside too).
    pub fn inside<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        std::thread::scope(|s| {
            s.spawn(|| {
                if let Some(ns) = &self.namespace {
                    let handle = std::fs::File::open(ns).unwrap();
                    nix::sched::setns(&handle, nix::sched::CloneFlags::CLONE_NEWNET)
                        .expect("entering the metastore's network namespace (needs root)");
                }
                f()
            })
            .join()
            .unwrap()
        })
    }
}
