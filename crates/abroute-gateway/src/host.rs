//! The gateway as the management API's host: which routers the API may change, and where its
//! changes go.
//!
//! The adapter's management API validates a change in full and hands it over as a
//! [`RouterChange`] with a compare-and-set [`Expect`](abroute_http::Expect)ation
//! ([`abroute_http::RouterHost`]). [`GatewayHost`] answers the two questions the API asks:
//!
//! - **may this router change?** Not when it was loaded from the watched directory: its file is
//!   its source of truth, so the API answers 409 `FAILED_PRECONDITION` naming the directory,
//!   and the management wrapper counts it in `abroute_config_changes_total{source="api",result="refused"}`.
//! - **make this change**: sent to the [engine writer](crate::writer), which checks the
//!   expectation against the engine, records the change in the router store and applies it to
//!   the engine as one step, so no other write (the watched directory, the refresh timer,
//!   another API request) comes in between.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock, PoisonError};

use abroute_http::{CommitError, CommitFuture, RouterChange, RouterHost};

use crate::fleet::Fleet;

use crate::watch::WatchedNames;
use crate::writer::EngineWriter;

/// The gateway's [`RouterHost`]: refuses the watched directory's routers, commits through the
/// engine writer.
#[derive(Debug, Clone)]
pub struct GatewayHost {
    writer: EngineWriter,
    watched: WatchedNames,
    watch_dir: Option<PathBuf>,
    /// With a shared store (`[store] url`): the replica, once connected. Until then every
    /// write answers 503.
    fleet: Option<FleetSlot>,
}

/// The replica of a gateway with a shared store, set once the store was reached.
pub type FleetSlot = Arc<OnceLock<Arc<Fleet>>>;

impl GatewayHost {
    /// A host writing through `writer`, refusing the routers in `watched` (loaded from
    /// `watch_dir`).
    pub fn new(
        writer: EngineWriter,
        watched: WatchedNames,
        watch_dir: Option<PathBuf>,
    ) -> GatewayHost {
        GatewayHost {
            writer,
            watched,
            watch_dir,
            fleet: None,
        }
    }

    /// The same host, committing to the shared store of the replica in `fleet` (and answering
    /// 503 while it is not set).
    pub fn with_fleet(mut self, fleet: FleetSlot) -> GatewayHost {
        self.fleet = Some(fleet);
        self
    }
}

impl RouterHost for GatewayHost {
    fn may_change(&self, name: &str) -> Result<(), String> {
        let watched = self
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name);
        if !watched {
            return Ok(());
        }
        let dir = self
            .watch_dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        Err(format!(
            "router {name:?} is loaded from the watched directory {dir}; change its file there \
             instead"
        ))
    }

    fn commit(&self, change: RouterChange) -> CommitFuture<'_> {
        match &self.fleet {
            None => Box::pin(self.writer.commit(change)),
            Some(slot) => Box::pin(async move {
                match slot.get() {
                    Some(fleet) => fleet.commit(change).await,
                    None => Err(CommitError::Unavailable(
                        "the router store is unreachable (not connected since the start)".into(),
                    )),
                }
            }),
        }
    }

    fn experiment(&self, name: &str) -> Option<serde_json::Value> {
        crate::experiment::readout(name)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    use abroute::{Engine, RouterConfig};
    use abroute_http::Expect;

    use super::*;
    use crate::store::{MemoryStore, RouterStore};

    fn router(name: &str) -> RouterConfig {
        RouterConfig::from_json(&format!(
            r#"{{"name": "{name}", "defaultRoute": {{"route_id": "d", "variants": [
              {{"variant": {{"variant_id": "v", "model_id": "m/x"}}, "weight": 1}}]}}}}"#
        ))
        .expect("valid router")
    }

    #[tokio::test]
    async fn watched_routers_are_refused_and_others_commit_through_the_writer() {
        let engine = Arc::new(Engine::new());
        let store = Arc::new(MemoryStore::new());
        let (writer, _task) = EngineWriter::spawn(Arc::clone(&engine), store.clone());
        let watched: WatchedNames = Arc::new(Mutex::new(BTreeSet::from(["w".to_owned()])));
        let host = GatewayHost::new(writer, watched, Some(PathBuf::from("/etc/abroute/routers")));
        assert_eq!(
            host.may_change("w").unwrap_err(),
            "router \"w\" is loaded from the watched directory /etc/abroute/routers; change \
             its file there instead"
        );
        assert!(host.may_change("api-router").is_ok());
        let committed = host
            .commit(RouterChange::Put {
                config: router("api-router"),
                expect: Expect::Absent,
            })
            .await
            .unwrap();
        assert_eq!(
            engine
                .load()
                .router("api-router")
                .unwrap()
                .compiled()
                .version(),
            committed.version
        );
        assert_eq!(
            store.load_all().await.unwrap().configs().unwrap(),
            vec![router("api-router")]
        );
        assert!(matches!(
            host.commit(RouterChange::Put {
                config: router("api-router"),
                expect: Expect::Absent,
            })
            .await,
            Err(CommitError::Conflict { current: Some(v) }) if v == committed.version
        ));
    }
}
