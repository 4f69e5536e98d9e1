//! `GET /v1/models` in the OpenAI shape: the routers, then the catalog's models, so that SDK
//! clients discover both (`client.models.list()`).
//!
//! A router is listed as `<prefix><name>` (`inworld/user-aware`) owned by `abroute`; a catalog
//! model by its id (`openai/gpt-4.1`) owned by its provider, with `auto` (request-level
//! selection over the catalog) listed once after them when the catalog is not empty. `created`
//! is 0: abroute does not know when a model was made.

use abroute::{Catalog, Snapshot};
use serde_json::{Value, json};

/// The `{"object": "list", "data": [...]}` of `GET /v1/models`.
pub fn models_list(snapshot: &Snapshot, catalog: &Catalog, model_prefix: &str) -> Value {
    let routers = snapshot.names().into_iter().map(|n| {
        json!({"id": format!("{model_prefix}{n}"), "object": "model", "created": 0,
               "owned_by": "abroute"})
    });
    let models = catalog
        .iter()
        .map(|m| json!({"id": m.id, "object": "model", "created": 0, "owned_by": m.provider()}));
    let auto = (!catalog.is_empty()).then(|| {
        json!({"id": abroute::select::AUTO, "object": "model", "created": 0,
               "owned_by": "abroute"})
    });
    let data: Vec<Value> = routers.chain(models).chain(auto).collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;
    use abroute::{Engine, RouterConfig};

    #[test]
    fn routers_then_catalog_models_then_auto() {
        let engine = Engine::new();
        let router = r#"{ "displayName": "User-Aware", "defaultRoute": { "variants": [
            { "variant": { "modelId": "openai/gpt-4.1" }, "weight": 1 } ] } }"#;
        engine
            .upsert(RouterConfig::from_json(router).unwrap())
            .unwrap();
        let list = models_list(&engine.load_full(), engine.catalog(), "inworld/");
        let data = list["data"].as_array().unwrap();
        assert_eq!(list["object"], "list");
        assert_eq!(data[0]["id"], "inworld/user-aware");
        assert_eq!(data[0]["owned_by"], "abroute");
        assert_eq!(data.len(), engine.catalog().len() + 2);
        assert!(
            data.iter()
                .any(|m| m["id"] == "openai/gpt-4.1" && m["owned_by"] == "openai")
        );
        assert_eq!(data[data.len() - 1]["id"], "auto");
        assert!(
            data.iter()
                .all(|m| m["object"] == "model" && m["created"] == 0)
        );
    }
}
