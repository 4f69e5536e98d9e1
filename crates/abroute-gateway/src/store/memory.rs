//! The memory store: the routers of a gateway without `[store] path`.
//!
//! Routers created through the management API live as long as the process: nothing is written
//! anywhere, so nothing survives a restart (the banner says so). It implements the same
//! [`RouterStore`] as the state file, revisions and watch included (its watch yields its own
//! changes), so the engine writer treats both alike.

use std::sync::Arc;

use abroute::RouterConfig;

use super::local::{LocalState, Shared};
use super::{Expect, Revision, RouterStore, StoreError, StoreFuture, Stored, Watch};

/// A [`RouterStore`] in memory only, starting empty at revision 0.
#[derive(Debug)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore {
            shared: Shared::new(LocalState::default()),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Forgets the history kept for watchers (as a compaction): a watcher behind the current
    /// revision gets a reset. Returns the horizon.
    pub async fn compact(&self) -> Revision {
        self.shared.lock().await.compact()
    }

    async fn write(
        &self,
        name: &str,
        config: Option<&RouterConfig>,
        expect: Expect,
    ) -> Result<Revision, StoreError> {
        let revision = self
            .shared
            .lock()
            .await
            .write(name, config, expect)
            .map_err(StoreError::Conflict)?;
        self.shared.changed(revision);
        Ok(revision)
    }
}

impl RouterStore for MemoryStore {
    fn load_all(&self) -> StoreFuture<'_, Stored> {
        Box::pin(async move { Ok(self.shared.lock().await.stored()) })
    }

    fn put<'a>(&'a self, router: &'a RouterConfig, expect: Expect) -> StoreFuture<'a, Revision> {
        Box::pin(self.write(&router.name, Some(router), expect))
    }

    fn delete<'a>(&'a self, name: &'a str, expect: Expect) -> StoreFuture<'a, Revision> {
        Box::pin(self.write(name, None, expect))
    }

    fn watch(&self, from: Revision) -> Watch {
        self.shared.watch(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_what_it_is_given() {
        let store = MemoryStore::new();
        let router = RouterConfig::from_json(
            r#"{ "name": "r", "defaultRoute": { "route_id": "d", "variants": [
            { "variant": { "variant_id": "a", "model_id": "m/a" }, "weight": 1 } ] } }"#,
        )
        .unwrap();
        assert_eq!(
            store.put(&router, Expect::Absent).await.unwrap(),
            Revision(1)
        );
        let stored = store.load_all().await.unwrap();
        assert_eq!(stored.revision, Revision(1));
        assert_eq!(stored.configs().unwrap(), vec![router]);
        assert_eq!(store.delete("r", Expect::Any).await.unwrap(), Revision(2));
        assert!(store.delete("r", Expect::Any).await.is_err());
        assert!(store.load_all().await.unwrap().routers.is_empty());
    }
}
