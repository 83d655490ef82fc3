//! A minimal HTTP/1.1 client for the job's own listener on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Sends `method path` (no body) to `addr`; returns the status code and body, or why
/// no HTTP answer came.
pub fn try_request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let bad = || std::io::Error::other(format!("no HTTP response from {addr}{path}: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_string()))
}

/// As [`try_request`], panicking when no HTTP answer comes.
pub fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    try_request(addr, method, path).unwrap_or_else(|e| panic!("{method} {addr}{path}: {e}"))
}

/// `GET path`, which must answer 200; returns the body.
pub fn get(addr: SocketAddr, path: &str) -> String {
    let (status, body) = request(addr, "GET", path);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// The value of the Prometheus series whose name and labels contain every part of
/// `parts`, summed over matching series.
pub fn series_sum(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = series.split('{').next().unwrap_or_default();
        if metric == name && labels.iter().all(|l| series.contains(l)) {
            let v: f64 = value.parse().unwrap();
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}
