//! The memory store: the routers of a gateway without `[store] path`.
//!
//! Routers created through the management API live as long as the process: nothing is written
//! anywhere, so nothing survives a restart (the banner says so). It implements the same
//! [`RouterStore`] as the state file, so the engine writer treats both alike.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use abroute::RouterConfig;

use super::{RouterStore, StoreFuture, Stored};

/// A [`RouterStore`] in memory only. Its calls complete when first polled (no I/O).
#[derive(Debug, Default)]
pub struct MemoryStore {
    routers: Mutex<BTreeMap<String, RouterConfig>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, RouterConfig>) -> T) -> T {
        f(&mut self.routers.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl RouterStore for MemoryStore {
    fn load_all(&self) -> StoreFuture<'_, Stored> {
        Box::pin(async move {
            let routers = self.with(|m| m.values().cloned().collect());
            Ok(Stored { routers })
        })
    }

    fn put<'a>(&'a self, router: &'a RouterConfig) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.with(|m| m.insert(router.name.clone(), router.clone()));
            Ok(())
        })
    }

    fn delete<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.with(|m| m.remove(name));
            Ok(())
        })
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
        store.put(&router).await.unwrap();
        assert_eq!(store.load_all().await.unwrap().routers, vec![router]);
        store.delete("r").await.unwrap();
        store.delete("r").await.unwrap();
        assert!(store.load_all().await.unwrap().routers.is_empty());
    }
}
