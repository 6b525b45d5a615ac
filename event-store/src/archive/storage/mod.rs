//! Where an archive lives, behind one interface (the `object_store` crate): a local
//! directory (a path or `file://` URL) or an S3-compatible store (`s3://bucket/prefix`,
//! MinIO in production). S3's credentials and endpoint come from the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, `AWS_REGION`)
//! and are never part of the location, so nothing prints them.

mod s3_http;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{
    aws::AmazonS3Builder, local::LocalFileSystem, path::Path, prefix::PrefixStore, BackoffConfig, ObjectStore,
    ObjectStoreExt, PutPayload, RetryConfig,
};

use super::ArchiveError;

/// A failed request to S3 is tried again this often, within `S3_RETRY_TIMEOUT`.
const S3_RETRIES: usize = 3;
const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// An archive's root.
#[derive(Clone)]
pub struct ArchiveStore {
    /// `s3://bucket/prefix`, or the directory's canonical path: the archive's name
    /// (its cursor's key), never holding credentials.
    pub location: String,
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for ArchiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveStore").field("location", &self.location).finish()
    }
}

impl ArchiveStore {
    /// An archive to write: `s3://bucket[/prefix]`, or a directory (created if
    /// missing) given as a path or a `file://` URL.
    pub fn create(location: &str) -> Result<Self, ArchiveError> {
        Self::open_directory_or_s3(location, true)
    }

    /// An archive to read: as [`ArchiveStore::create`], but a directory must exist.
    pub fn open(location: &str) -> Result<Self, ArchiveError> {
        Self::open_directory_or_s3(location, false)
    }

    fn open_directory_or_s3(location: &str, create: bool) -> Result<Self, ArchiveError> {
        let invalid = |reason: String| ArchiveError::Location { location: location.into(), reason };
        if let Some(bucket_and_prefix) = location.strip_prefix("s3://") {
            let (location, store) = open_s3(bucket_and_prefix).map_err(invalid)?;
            return Ok(Self { location, store });
        }
        let directory = location.strip_prefix("file://").unwrap_or(location);
        if directory.contains("://") {
            return Err(invalid("an archive is a directory (a path or file:///path) or s3://bucket/prefix".into()));
        }
        if create {
            std::fs::create_dir_all(directory).map_err(|e| invalid(format!("cannot create the directory: {e}")))?;
        } else if !std::path::Path::new(directory).is_dir() {
            return Err(invalid("no such directory".into()));
        }
        // One directory, one name (and one cursor), however it is spelled.
        let canonical = std::fs::canonicalize(directory).map_err(|e| invalid(e.to_string()))?;
        let store = LocalFileSystem::new_with_prefix(&canonical).map_err(|e| invalid(e.to_string()))?;
        Ok(Self { location: canonical.to_string_lossy().into_owned(), store: Arc::new(store) })
    }

    /// Stores `bytes` under `name`, visible only once complete.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        self.store.put(&Path::from(name), PutPayload::from(bytes)).await.map_err(|e| self.refused(e))?;
        Ok(())
    }

    /// The object, or `None` when there is none of that name.
    pub async fn get(&self, name: &str) -> Result<Option<Bytes>, ArchiveError> {
        let fetched = async { self.store.get(&Path::from(name)).await?.bytes().await };
        match fetched.await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.refused(e)),
        }
    }

    /// The names under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ArchiveError> {
        let mut names: Vec<String> = self
            .store
            .list(Some(&Path::from(prefix)))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .map_err(|e| self.refused(e))?;
        names.sort();
        Ok(names)
    }

    /// A refusal of the credentials says so, apart from other failures.
    fn refused(&self, error: object_store::Error) -> ArchiveError {
        let mut cause: Option<&dyn std::error::Error> = Some(&error);
        while let Some(current) = cause {
            if let Some(refusal) = current.downcast_ref::<s3_http::CredentialsRefused>() {
                return ArchiveError::Refused { location: self.location.clone(), answer: refusal.to_string() };
            }
            cause = current.source();
        }
        ArchiveError::Storage(error)
    }
}

/// The store, and its name: `s3://bucket[/prefix]` with the prefix's slashes trimmed,
/// so one archive has one name (and one cursor) however it is written.
fn open_s3(bucket_and_prefix: &str) -> Result<(String, Arc<dyn ObjectStore>), String> {
    let (bucket, prefix) = bucket_and_prefix.split_once('/').unwrap_or((bucket_and_prefix, ""));
    if bucket.contains('@') || bucket.contains(':') {
        return Err("credentials belong in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, not in the location".into());
    }
    if bucket.is_empty() {
        return Err("name the bucket: s3://bucket or s3://bucket/prefix".into());
    }
    // Without both keys object_store would ask the EC2 metadata service, which a MinIO
    // deployment does not have: the operator would wait for a timeout, not an answer.
    let missing: Vec<&str> = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]
        .into_iter()
        .filter(|name| std::env::var_os(name).is_none_or(|v| v.is_empty()))
        .collect();
    if !missing.is_empty() {
        return Err(format!("an S3 archive needs {} in the environment", missing.join(" and ")));
    }
    let retry =
        RetryConfig { max_retries: S3_RETRIES, retry_timeout: S3_RETRY_TIMEOUT, backoff: BackoffConfig::default() };
    let s3 = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_http_connector(s3_http::ReqwestConnector)
        .with_retry(retry)
        .build()
        .map_err(|e| e.to_string())?;
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        Ok((format!("s3://{bucket}"), Arc::new(s3)))
    } else {
        Ok((format!("s3://{bucket}/{prefix}"), Arc::new(PrefixStore::new(s3, prefix))))
    }
}
