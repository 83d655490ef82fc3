//! A local S3 server for the tests that store files in S3.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A local S3 server (`moto_server`, from PyPI's `moto[server]`) on a free loopback port.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server with the bucket `bucket`.
pub fn server(bucket: &str) -> S3Server {
    let port = super::free_port();
    let child = match Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!(
            "moto_server could not start ({e}): run `bash scripts/test` (it installs it), \
             or `pip install 'moto[server]'`"
        ),
    };
    let server = S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if http_put(port, &format!("/{bucket}")).is_ok() {
            return server;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the S3 server on port {port} did not come up");
}

/// Creates a bucket with a bare HTTP request (the local server needs no signature).
fn http_put(port: u16, path: &str) -> std::io::Result<()> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    match super::http::try_request(addr, "PUT", path)? {
        (200, _) => Ok(()),
        (status, body) => Err(std::io::Error::other(format!("{status}: {body}"))),
    }
}

impl S3Server {
    /// The options that point an S3 client at this server.
    pub fn options(&self) -> BTreeMap<String, String> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_region", "us-east-1"),
            ("aws_access_key_id", "test"),
            ("aws_secret_access_key", "test"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}
