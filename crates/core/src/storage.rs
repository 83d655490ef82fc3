//! Object storage (feature `object-store`): S3 (and servers that speak its protocol),
//! `file://` and, with the `hdfs` feature, HDFS, opened from a URL. Checkpoint storage
//! uses it, and so can connectors that read or write files.

pub use object_store;
use object_store::path::Path as StorePath;
use object_store::ObjectStore;

use crate::{Error, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Runs `work` to its end on `runtime` from synchronous code. Called from a thread that
/// is itself inside an async runtime (a job started from async code), it runs on a
/// helper thread, since a runtime cannot block inside another. `Err` holds the panic of
/// that helper thread.
pub fn block_on<T: Send>(
    runtime: &tokio::runtime::Runtime,
    work: impl std::future::Future<Output = T> + Send,
) -> std::thread::Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(runtime.block_on(work));
    }
    std::thread::scope(|s| s.spawn(|| runtime.block_on(work)).join())
}

/// Whether trying `e` again may succeed: not for a missing object, a bad path or
/// configuration, an unsupported call or refused credentials.
pub fn is_retryable(e: &object_store::Error) -> bool {
    !matches!(
        e,
        object_store::Error::NotFound { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
    )
}

fn config_err(url: &str, why: impl std::fmt::Display) -> Error {
    Error::Config(format!("{url}: {why}"))
}

/// The S3 bucket an `s3://bucket/prefix` URL names, as its concrete store (for its
/// multipart API), and the path inside it; credentials and options as [`open_store`].
///
/// # Errors
/// [`Error::Config`] for a URL or option that cannot be used.
pub fn open_s3(
    url_text: &str,
    options: &BTreeMap<String, String>,
) -> Result<(Arc<object_store::aws::AmazonS3>, StorePath)> {
    let url = url::Url::parse(url_text).map_err(|e| config_err(url_text, e))?;
    let path = StorePath::parse(url.path()).map_err(|e| config_err(url_text, e))?;
    let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(url_text);
    for (key, value) in options {
        let key = key.parse().map_err(|e| config_err(url_text, e))?;
        builder = builder.with_config(key, value);
    }
    Ok((
        Arc::new(builder.build().map_err(|e| config_err(url_text, e))?),
        path,
    ))
}

/// The store a URL names and the path inside it: `s3://bucket/prefix` (credentials and
/// region from the environment, overridden by `options` such as `aws_endpoint`,
/// `aws_region`, `aws_access_key_id`, `aws_secret_access_key`, `aws_allow_http`),
/// `file:///dir`, or `hdfs://namenode:9000/dir` (with the `hdfs` feature; `options` go to
/// the HDFS client). `io` runs the HDFS client's background work.
///
/// # Errors
/// [`Error::Config`] for a URL, scheme or option that cannot be used.
pub fn open_store(
    url_text: &str,
    options: &BTreeMap<String, String>,
    io: &tokio::runtime::Handle,
) -> Result<(Arc<dyn ObjectStore>, StorePath)> {
    #[cfg(not(feature = "hdfs"))]
    let _ = io;
    let url = url::Url::parse(url_text).map_err(|e| config_err(url_text, e))?;
    let path = StorePath::parse(url.path()).map_err(|e| config_err(url_text, e))?;
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => open_s3(url_text, options)?.0,
        #[cfg(feature = "hdfs")]
        "hdfs" | "viewfs" => {
            let _entered = io.enter();
            let authority = &url[..url::Position::BeforePath];
            let store = hdfs_native_object_store::HdfsObjectStoreBuilder::new()
                .with_url(authority)
                .with_config(options.clone())
                .with_io_runtime(io.clone())
                .build()
                .map_err(|e| config_err(url_text, e))?;
            Arc::new(store)
        }
        #[cfg(not(feature = "hdfs"))]
        "hdfs" | "viewfs" => {
            return Err(config_err(
                url_text,
                "HDFS needs ferroflow built with the `hdfs` feature",
            ))
        }
        "file" => {
            if let Some(key) = options.keys().next() {
                return Err(config_err(
                    url_text,
                    format!("a file:// location takes no options (got `{key}`)"),
                ));
            }
            let none = std::iter::empty::<(&str, &str)>();
            let (store, _) =
                object_store::parse_url_opts(&url, none).map_err(|e| config_err(url_text, e))?;
            Arc::from(store)
        }
        other => {
            return Err(config_err(
                url_text,
                format!("unsupported scheme `{other}` (use s3, file or hdfs)"),
            ))
        }
    };
    Ok((store, path))
}
