//! Where an archive lives, behind one interface (the `object_store` crate): a local
//! directory (a path or `file://` URL).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{local::LocalFileSystem, path::Path, ObjectStore, ObjectStoreExt, PutPayload};

use super::ArchiveError;

/// An archive's root.
#[derive(Clone)]
pub struct ArchiveStore {
    /// As the operator named it, credentials left out.
    pub location: String,
    store: Arc<dyn ObjectStore>,
}

impl std::fmt::Debug for ArchiveStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchiveStore").field("location", &self.location).finish()
    }
}

impl ArchiveStore {
    /// A directory (created if missing), given as a path or a `file://` URL.
    pub fn open(location: &str) -> Result<Self, ArchiveError> {
        let invalid = |reason: String| ArchiveError::Location { location: location.into(), reason };
        let directory = location.strip_prefix("file://").unwrap_or(location);
        if directory.contains("://") {
            return Err(invalid("only local directories (a path or file:///path) are supported".into()));
        }
        std::fs::create_dir_all(directory).map_err(|e| invalid(format!("cannot create the directory: {e}")))?;
        let store = LocalFileSystem::new_with_prefix(directory).map_err(|e| invalid(e.to_string()))?;
        Ok(Self { location: location.into(), store: Arc::new(store) })
    }

    /// Stores `bytes` under `name`, visible only once complete.
    pub async fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        self.store.put(&Path::from(name), PutPayload::from(bytes)).await?;
        Ok(())
    }

    pub async fn get(&self, name: &str) -> Result<Bytes, ArchiveError> {
        Ok(self.store.get(&Path::from(name)).await?.bytes().await?)
    }

    /// The names under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ArchiveError> {
        let mut names: Vec<String> =
            self.store.list(Some(&Path::from(prefix))).map_ok(|meta| meta.location.to_string()).try_collect().await?;
        names.sort();
        Ok(names)
    }
}
