//! The management API: create, list, get, update, delete; validation with every problem and its
//! path; every change through the host, nothing changed when it fails; pagination; the tower
//! service.
// Helpers outside `#[test]` functions unwrap too; a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use abroute::{Engine, ValidationOptions};
use abroute_http::{ApiKeys, Full, ManagementApi, ManagementService, Permissions};
use bytes::Bytes;
use common::{TestHost, block_on, body_bytes, json};
use http::{Method, Request, Response};
use serde_json::{Value, json};
use tower::Service;

const KEY: &str = "Bearer admin";

struct Fixture {
    engine: Arc<Engine>,
    store: Arc<TestHost>,
    api: ManagementApi,
}

fn fixture() -> Fixture {
    fixture_on(Engine::new(), |api| api)
}

/// An API over `engine` and a test host, set up by `options`.
fn fixture_on(engine: Engine, options: impl FnOnce(ManagementApi) -> ManagementApi) -> Fixture {
    let engine = Arc::new(engine);
    let store = Arc::new(TestHost::new(Arc::clone(&engine)));
    let api = options(ManagementApi::new(
        Arc::clone(&engine),
        Arc::clone(&store) as Arc<dyn abroute_http::RouterHost>,
        ApiKeys::new().with_key("admin", Permissions::ADMIN),
    ));
    Fixture { engine, store, api }
}

/// A fixture holding the router `demo`.
fn with_demo() -> Fixture {
    let f = fixture();
    let (status, op) = create(&f.api, &router("demo", (1, 1)));
    assert_eq!(status, 200, "{op}");
    f
}

/// `POST /router/v1/routers` with `body`.
fn create(api: &ManagementApi, body: &str) -> (u16, Value) {
    send(api, Method::POST, "/router/v1/routers", body)
}

fn request(method: Method, uri: &str, body: &str) -> Request<Bytes> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", KEY)
        .body(Bytes::from(body.to_owned()))
        .unwrap()
}

fn send(api: &ManagementApi, method: Method, uri: &str, body: &str) -> (u16, Value) {
    let r: Response<Bytes> = block_on(api.handle(request(method, uri, body)));
    let status = r.status().as_u16();
    assert_eq!(r.headers()["content-type"], "application/json");
    (status, json(r.body()))
}

fn router(name: &str, weights: (u32, u32)) -> String {
    format!(
        r#"{{ "name": "{name}", "displayName": "Router {name}", "defaultRoute": {{ "route_id": "default",
          "variants": [
            {{ "variant": {{ "variant_id": "a", "model_id": "openai/gpt-4o-mini" }}, "weight": {} }},
            {{ "variant": {{ "variant_id": "b", "model_id": "openai/gpt-4.1" }}, "weight": {} }} ] }} }}"#,
        weights.0, weights.1
    )
}

#[test]
fn create_get_delete() {
    let f = fixture();
    let (status, op) = send(
        &f.api,
        Method::POST,
        "/router/v1/routers",
        &router("routers/demo", (50, 50)),
    );
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["done"], true);
    assert_eq!(op["metadata"]["router"], "routers/demo");
    assert_eq!(op["metadata"]["operation"], "create");
    assert_eq!(op["metadata"]["version"], f.engine.version());
    assert!(op["name"].as_str().unwrap().starts_with("operations/"));
    assert_eq!(op["response"]["name"], "demo");
    assert_eq!(op["response"]["displayName"], "Router routers/demo");
    assert!(op.get("error").is_none());
    assert_eq!(f.store.names(), ["demo"]);
    assert!(f.engine.load().router("demo").is_some());

    for path in ["/router/v1/routers/demo", "/router/v1/routers/routers/demo"] {
        let (status, got) = send(&f.api, Method::GET, path, "");
        assert_eq!(status, 200);
        assert_eq!(got, op["response"]);
    }

    let (status, e) = send(
        &f.api,
        Method::POST,
        "/router/v1/routers",
        &router("demo", (1, 1)),
    );
    assert_eq!(status, 409);
    assert_eq!(e["error"]["status"], "ALREADY_EXISTS");

    let (status, empty) = send(
        &f.api,
        Method::DELETE,
        "/router/v1/routers/routers/demo",
        "",
    );
    assert_eq!((status, empty), (200, json!({})));
    assert!(f.store.names().is_empty());
    assert!(f.engine.load().router("demo").is_none());
    let (status, e) = send(&f.api, Method::GET, "/router/v1/routers/demo", "");
    assert_eq!(status, 404);
    assert_eq!(e["error"]["status"], "NOT_FOUND");
    let (status, _) = send(&f.api, Method::DELETE, "/router/v1/routers/demo", "");
    assert_eq!(status, 404);
}

#[test]
fn every_problem_is_listed_with_its_path() {
    let f = fixture();
    let bad = r#"{ "name": "Bad Name", "defaultRoute": { "route_id": "default", "variants": [
        { "variant": { "variant_id": "a", "model_id": "m" }, "weight": -1 },
        { "variant": { "variant_id": "b", "model_id": "m" }, "wieght": 5 } ] } }"#;
    let (status, e) = send(&f.api, Method::POST, "/router/v1/routers", bad);
    assert_eq!(status, 400);
    assert_eq!(e["error"]["status"], "INVALID_ARGUMENT");
    let violations = &e["error"]["details"][0]["fieldViolations"];
    assert_eq!(
        e["error"]["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    let fields: Vec<&str> = violations
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "defaultRoute.variants[0].weight",
            "defaultRoute.variants[1]",
            "defaultRoute.variants[1]"
        ]
    );
    // Structural problems first; the name is checked once the shape is right.
    let semantic = router("Bad Name", (0, 0));
    let (status, e) = send(&f.api, Method::POST, "/router/v1/routers", &semantic);
    assert_eq!(status, 400);
    let fields: Vec<&str> = e["error"]["details"][0]["fieldViolations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["name", "defaultRoute.variants"]);
    assert!(f.store.names().is_empty());
    assert_eq!(f.engine.version(), 0);
    let (status, e) = send(&f.api, Method::POST, "/router/v1/routers", "{\"name\": ");
    assert_eq!(status, 400);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1 column")
    );
}

#[test]
fn strict_validation_matches_the_engine() {
    let engine = Arc::new(Engine::with_options(ValidationOptions::strict()));
    let api = ManagementApi::new(
        Arc::clone(&engine),
        Arc::new(TestHost::new(Arc::clone(&engine))),
        ApiKeys::new().with_key("admin", Permissions::ADMIN),
    );
    // The engine's own options, with nothing to configure twice.
    let (status, e) = send(
        &api,
        Method::POST,
        "/router/v1/routers",
        &router("s", (1, 2)),
    );
    assert_eq!(status, 400);
    assert_eq!(
        e["error"]["details"][0]["fieldViolations"][0]["field"],
        "defaultRoute.variants"
    );
    let (status, _) = send(
        &api,
        Method::POST,
        "/router/v1/routers",
        &router("s", (40, 60)),
    );
    assert_eq!(status, 200);
}

#[test]
fn nothing_changes_when_the_host_fails() {
    let f = fixture();
    f.store.set_failing(true);
    let (status, e) = send(
        &f.api,
        Method::POST,
        "/router/v1/routers",
        &router("demo", (1, 1)),
    );
    assert_eq!(status, 503);
    assert_eq!(e["error"]["status"], "UNAVAILABLE");
    assert!(
        !e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("told to fail")
    );
    assert!(f.engine.load().router("demo").is_none(), "nothing swapped");
    f.store.set_failing(false);
    assert_eq!(
        send(
            &f.api,
            Method::POST,
            "/router/v1/routers",
            &router("demo", (1, 1))
        )
        .0,
        200
    );
    f.store.set_failing(true);
    let (status, _) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/demo?update_mask=displayName",
        r#"{"displayName":"new"}"#,
    );
    assert_eq!(status, 503);
    assert_eq!(
        f.engine
            .load()
            .router("demo")
            .unwrap()
            .config()
            .display_name
            .as_deref(),
        Some("Router demo")
    );
    assert_eq!(
        send(&f.api, Method::DELETE, "/router/v1/routers/demo", "").0,
        503
    );
    assert!(f.engine.load().router("demo").is_some());

    // What the host stored is what a restart loads.
    f.store.set_failing(false);
    let restarted = Arc::new(Engine::new());
    restarted.replace_all(f.store.stored()).unwrap();
    assert_eq!(restarted.load().names(), ["demo"]);
}

#[test]
fn update_with_mask() {
    let f = fixture();
    assert_eq!(
        send(
            &f.api,
            Method::POST,
            "/router/v1/routers",
            &router("demo", (50, 50))
        )
        .0,
        200
    );
    let v0 = f.engine.version();

    // Only the masked field changes; the body's other fields are ignored.
    let (status, op) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/routers/demo?update_mask=displayName",
        r#"{"name":"routers/demo","displayName":"Renamed","defaults":{"x":1}}"#,
    );
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["metadata"]["operation"], "update");
    assert_eq!(op["response"]["displayName"], "Renamed");
    assert!(op["response"].get("defaults").is_none());
    assert_eq!(f.engine.version(), v0 + 1);
    assert_eq!(
        f.store.get("demo").unwrap().display_name.as_deref(),
        Some("Renamed")
    );

    // The other spelling, percent-encoded commas, and a field in the mask but not the body is
    // cleared.
    let (status, op) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/demo?update_mask=default_route%2CdisplayName",
        r#"{"default_route":{"route_id":"d2","variants":[{"variant":{"variant_id":"c","model_id":"m"},"weight":1}]}}"#,
    );
    assert_eq!(status, 200, "{op}");
    assert_eq!(op["response"]["defaultRoute"]["route_id"], "d2");
    assert!(op["response"].get("displayName").is_none());

    // No mask: the fields present in the body.
    let (status, op) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/demo",
        r#"{"defaults":{"text_generation_config":{"temperature":0.1}}}"#,
    );
    assert_eq!(status, 200);
    assert_eq!(
        op["response"]["defaults"]["text_generation_config"]["temperature"],
        0.1
    );
    assert_eq!(op["response"]["defaultRoute"]["route_id"], "d2");

    // Validation errors carry the body's paths.
    let (status, e) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/demo?update_mask=defaultRoute",
        r#"{"defaultRoute":{"route_id":"d","variants":[{"variant":{"variant_id":"c","model_id":"m"},"weight":"1"}]}}"#,
    );
    assert_eq!(status, 400);
    assert_eq!(
        e["error"]["details"][0]["fieldViolations"][0]["field"],
        "defaultRoute.variants[0].weight"
    );
    // Clearing the only route is refused: a router needs a route.
    let (status, e) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/demo?update_mask=defaultRoute",
        "{}",
    );
    assert_eq!(status, 400, "{e}");
}

#[test]
fn update_refusals() {
    let f = fixture();
    assert_eq!(
        send(
            &f.api,
            Method::POST,
            "/router/v1/routers",
            &router("demo", (50, 50))
        )
        .0,
        200
    );
    let v = f.engine.version();
    for (uri, body, field) in [
        (
            "/router/v1/routers/demo?update_mask=name",
            r#"{}"#,
            "update_mask",
        ),
        (
            "/router/v1/routers/demo?update_mask=routes,weights",
            r#"{}"#,
            "update_mask",
        ),
        ("/router/v1/routers/demo", r#"{"name":"other"}"#, "name"),
        (
            "/router/v1/routers/demo",
            r#"{"displayNme":"x"}"#,
            "displayNme",
        ),
        (
            "/router/v1/routers/demo",
            r#"{"defaultRoute":{},"default_route":{}}"#,
            "defaultRoute",
        ),
    ] {
        let (status, e) = send(&f.api, Method::PATCH, uri, body);
        assert_eq!(status, 400, "{uri} {body}");
        assert_eq!(
            e["error"]["details"][0]["fieldViolations"][0]["field"], field,
            "{uri} {body}: {e}"
        );
    }
    let (status, _) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/nope?update_mask=displayName",
        "{}",
    );
    assert_eq!(status, 404);
    assert_eq!(f.engine.version(), v, "nothing changed");
}

#[test]
fn list_pages_through_every_router() {
    let f = fixture();
    for name in ["e", "a", "c", "b", "d"] {
        assert_eq!(
            send(
                &f.api,
                Method::POST,
                "/router/v1/routers",
                &router(name, (1, 1))
            )
            .0,
            200
        );
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let (status, page) = send(
            &f.api,
            Method::GET,
            &format!("/router/v1/routers?page_size=2&page_token={token}"),
            "",
        );
        assert_eq!(status, 200);
        pages += 1;
        for r in page["routers"].as_array().unwrap() {
            seen.push(r["name"].as_str().unwrap().to_owned());
        }
        token = page["next_page_token"].as_str().unwrap().to_owned();
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e"]);
    assert_eq!(pages, 3);
    let (_, all) = send(&f.api, Method::GET, "/router/v1/routers", "");
    assert_eq!(all["routers"].as_array().unwrap().len(), 5);
    assert_eq!(all["next_page_token"], "");
    for bad in ["page_size=-1", "page_size=x", "page_token=zz"] {
        let (status, _) = send(
            &f.api,
            Method::GET,
            &format!("/router/v1/routers?{bad}"),
            "",
        );
        assert_eq!(status, 400, "{bad}");
    }
}

#[test]
fn routing_and_methods() {
    let f = fixture();
    assert_eq!(send(&f.api, Method::GET, "/router/v2/routers", "").0, 404);
    assert_eq!(
        send(&f.api, Method::GET, "/router/v1/routers/a/b", "").0,
        404
    );
    let r = block_on(
        f.api
            .handle(request(Method::PUT, "/router/v1/routers/x", "")),
    );
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, PATCH, DELETE");
    let r = block_on(
        f.api
            .handle(request(Method::DELETE, "/router/v1/routers", "")),
    );
    assert_eq!(r.headers()["allow"], "GET, POST");
    let engine = Arc::new(Engine::new());
    let custom = ManagementApi::new(
        Arc::clone(&engine),
        Arc::new(TestHost::new(engine)),
        ApiKeys::new().with_key("admin", Permissions::ADMIN),
    )
    .base_path("/admin/");
    assert_eq!(send(&custom, Method::GET, "/admin/routers", "").0, 200);
}

#[test]
fn tower_service_reads_with_a_limit() {
    let f = fixture();
    let api = Arc::new(f.api.max_body_bytes(64));
    let mut svc = ManagementService::new(Arc::clone(&api));
    let req = |body: String| {
        Request::post("/router/v1/routers")
            .header("authorization", KEY)
            .body(Full::new(Bytes::from(body)))
            .unwrap()
    };
    let r = block_on(svc.call(req(router("x", (1, 1))))).unwrap();
    assert_eq!(r.status(), 413);
    let v = json(&body_bytes(r.into_body()));
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    // Without a key, the body is not even read: 401, not 413.
    let anonymous = Request::post("/router/v1/routers")
        .body(Full::new(Bytes::from(router("x", (1, 1)))))
        .unwrap();
    assert_eq!(block_on(svc.call(anonymous)).unwrap().status(), 401);
    let small = r#"{"name":"x","defaultRoute":{"route_id":"d","variants":[]}}"#;
    let r = block_on(svc.call(req(small.to_owned()))).unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn the_host_may_refuse_a_router() {
    let f = fixture();
    assert_eq!(create(&f.api, &router("kept", (1, 1))).0, 200);
    f.store
        .protect("kept", "router \"kept\" is loaded from a file");
    f.store.protect("w", "router \"w\" is loaded from a file");
    let v = f.engine.version();
    let commits = f.store.commits().len();
    // A create names its router in the body: refused even when the rest of it is invalid.
    for body in [
        router("routers/w", (1, 1)),
        r#"{"name":"w","defaultRoute":7}"#.to_owned(),
    ] {
        let (status, e) = create(&f.api, &body);
        assert_eq!(status, 409, "{body}");
        assert_eq!(e["error"]["status"], "FAILED_PRECONDITION");
        assert_eq!(e["error"]["message"], "router \"w\" is loaded from a file");
    }
    for (method, uri, body) in [
        (
            Method::PATCH,
            "/router/v1/routers/kept?update_mask=displayName",
            r#"{"displayName":"x"}"#,
        ),
        (Method::PATCH, "/router/v1/routers/kept", "not json"),
        (Method::DELETE, "/router/v1/routers/routers/kept", ""),
    ] {
        let (status, e) = send(&f.api, method.clone(), uri, body);
        assert_eq!(status, 409, "{method} {uri}");
        assert_eq!(e["error"]["status"], "FAILED_PRECONDITION");
    }
    // Reads are not asked about; a caller without the write permission gets 401 first.
    assert_eq!(
        send(&f.api, Method::GET, "/router/v1/routers/kept", "").0,
        200
    );
    let anonymous = Request::delete("/router/v1/routers/kept")
        .body(Bytes::new())
        .unwrap();
    assert_eq!(block_on(f.api.handle(anonymous)).status(), 401);
    assert_eq!(f.engine.version(), v, "nothing changed");
    assert_eq!(
        f.store.commits().len(),
        commits,
        "nothing was asked of the host"
    );
}

#[test]
fn changes_go_to_the_host_with_their_expectation() {
    use abroute_http::{Expect, RouterChange};
    let f = with_demo();
    let v1 = f.engine.load().router("demo").unwrap().compiled().version();
    send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/demo?update_mask=displayName",
        r#"{"displayName":"new"}"#,
    );
    let v2 = f.engine.load().router("demo").unwrap().compiled().version();
    send(&f.api, Method::DELETE, "/router/v1/routers/demo", "");
    let commits = f.store.commits();
    let expectations: Vec<(bool, &str, Expect)> = commits
        .iter()
        .map(|c| (matches!(c, RouterChange::Put { .. }), c.name(), c.expect()))
        .collect();
    assert_eq!(
        expectations,
        [
            (true, "demo", Expect::Absent),
            (true, "demo", Expect::Version(v1)),
            (false, "demo", Expect::Version(v2)),
        ]
    );
    assert!(f.store.names().is_empty());
}

#[test]
fn an_update_racing_another_writer_is_merged_again() {
    let f = with_demo();
    // Another writer renames the router between the API's read and its commit.
    let engine = Arc::clone(&f.engine);
    f.store.before_next_commit(move || {
        let mut config = engine.load().router("demo").unwrap().config().clone();
        config.display_name = Some("renamed meanwhile".into());
        engine.upsert(config).unwrap();
    });
    let (status, op) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/demo?update_mask=defaults",
        r#"{"defaults":{"text_generation_config":{"temperature":0.3}}}"#,
    );
    assert_eq!(status, 200, "{op}");
    // Neither change is lost.
    assert_eq!(op["response"]["displayName"], "renamed meanwhile");
    assert_eq!(
        op["response"]["defaults"]["text_generation_config"]["temperature"],
        0.3
    );
    assert_eq!(op["metadata"]["version"], f.engine.version());
    let stored = f.store.get("demo").unwrap();
    assert_eq!(stored.display_name.as_deref(), Some("renamed meanwhile"));

    // Deleted meanwhile: 404, as for a router that was never there.
    let engine = Arc::clone(&f.engine);
    f.store.before_next_commit(move || {
        engine.remove("demo");
    });
    let (status, e) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/demo?update_mask=displayName",
        r#"{"displayName":"x"}"#,
    );
    assert_eq!(status, 404, "{e}");
    assert_eq!(e["error"]["status"], "NOT_FOUND");
}

#[test]
fn a_delete_racing_another_writer_deletes_what_is_there() {
    let f = with_demo();
    let engine = Arc::clone(&f.engine);
    f.store.before_next_commit(move || {
        let config = engine.load().router("demo").unwrap().config().clone();
        engine.upsert(config).unwrap();
    });
    assert_eq!(
        send(&f.api, Method::DELETE, "/router/v1/routers/demo", "").0,
        200
    );
    assert!(f.engine.load().router("demo").is_none());
    // A create that loses the race to another create: 409, as for one that came second.
    let engine = Arc::clone(&f.engine);
    f.store.before_next_commit(move || {
        engine
            .upsert(abroute::RouterConfig::from_json(&router("demo", (2, 2))).unwrap())
            .unwrap();
    });
    let (status, e) = create(&f.api, &router("demo", (1, 1)));
    assert_eq!(status, 409, "{e}");
    assert_eq!(e["error"]["status"], "ALREADY_EXISTS");
}

#[test]
fn an_engine_that_refuses_gets_400() {
    // The engine validates strictly, the API leniently: the host's refusal is the answer.
    let f = fixture_on(Engine::with_options(ValidationOptions::strict()), |api| {
        api.validation(ValidationOptions::default())
    });
    let (status, e) = create(&f.api, &router("s", (1, 2)));
    assert_eq!(status, 400, "{e}");
    assert_eq!(
        e["error"]["details"][0]["fieldViolations"][0]["field"],
        "defaultRoute.variants"
    );
    assert!(f.store.names().is_empty());
    assert!(f.engine.load().router("s").is_none());
}

#[test]
fn idempotent_create_answers_an_unchanged_router_as_done() {
    let Fixture {
        engine,
        store: host,
        api,
    } = fixture_on(Engine::new(), |api| api.idempotent_create(true));
    let body = router("demo", (1, 1));
    let (status, first) = create(&api, &body);
    assert_eq!(status, 200);
    assert!(first["metadata"].get("unchanged").is_none());
    let version = engine.version();
    let commits = host.commits().len();
    let (status, again) = create(&api, &body);
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again,
        json!({
            "name": format!("operations/create-demo-v{version}"),
            "metadata": {
                "router": "routers/demo",
                "version": version,
                "operation": "create",
                "unchanged": true,
            },
            "done": true,
            "response": first["response"],
        })
    );
    assert_eq!(host.commits().len(), commits, "nothing was committed");
    // Another config under the same name is still a conflict; without the option, so is this.
    let (status, _) = create(&api, &router("demo", (2, 1)));
    assert_eq!(status, 409);
    let f = fixture();
    create(&f.api, &body);
    assert_eq!(create(&f.api, &body).0, 409);
}

#[test]
fn etags_guard_updates_and_deletes() {
    let f = with_demo();
    let (status, got) = send(&f.api, Method::GET, "/router/v1/routers/demo", "");
    assert_eq!(status, 200);
    let etag = got["etag"].as_str().unwrap().to_owned();
    assert_eq!(etag, f.engine.version().to_string());
    // A PATCH with the current etag lands, and its answer carries the new one.
    let body = format!(r#"{{ "displayName": "one", "etag": "{etag}" }}"#);
    let (status, op) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/demo?update_mask=displayName",
        &body,
    );
    assert_eq!(status, 200, "{op}");
    let fresh = op["response"]["etag"].as_str().unwrap().to_owned();
    assert_ne!(fresh, etag);
    let served = f.engine.load_full();
    assert_eq!(
        served
            .router("demo")
            .unwrap()
            .config()
            .display_name
            .as_deref(),
        Some("one")
    );
    // The stale etag is refused, naming both, and nothing changes.
    let (status, e) = send(
        &f.api,
        Method::PATCH,
        "/router/v1/routers/demo?update_mask=displayName",
        &body.replace("one", "two"),
    );
    assert_eq!(
        (status, e["error"]["status"].as_str()),
        (409, Some("ABORTED")),
        "{e}"
    );
    let message = e["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&etag) && message.contains(&fresh),
        "{message}"
    );
    let delete = |etag: &str| {
        let uri = format!("/router/v1/routers/demo?etag={etag}");
        send(&f.api, Method::DELETE, &uri, "")
    };
    let (status, e) = delete(&etag);
    assert_eq!(
        (status, e["error"]["status"].as_str()),
        (409, Some("ABORTED")),
        "{e}"
    );
    assert!(f.engine.load().router("demo").is_some());
    // An etag this API never gave is a 400.
    assert_eq!(delete("x").0, 400);
    // The current etag deletes.
    let (status, e) = delete(&fresh);
    assert_eq!(status, 200, "{e}");
    assert!(f.engine.load().router("demo").is_none());
}

/// Inworld's router product page's router, as printed: no name, no route_id, no variant_id.
const USER_AWARE: &str = include_str!("../../abroute/tests/data/user_aware.json");

#[test]
fn a_router_without_ids_is_created_with_them_derived_and_stored_explicitly() {
    let f = fixture();
    let (status, op) = create(&f.api, USER_AWARE);
    assert_eq!(status, 200, "{op}");
    let router = &op["response"];
    assert_eq!(router["name"], "user-aware", "{op}");
    assert_eq!(router["routes"][0]["route"]["route_id"], "route-1");
    assert_eq!(
        router["routes"][1]["route"]["variants"][0]["variant"]["variant_id"],
        "anthropic/claude-haiku-4-5"
    );
    assert_eq!(router["defaultRoute"]["route_id"], "default");
    // Read back, every id is there, and reading it again derives nothing.
    let (status, got) = send(&f.api, Method::GET, "/router/v1/routers/user-aware", "");
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        got["defaultRoute"]["variants"][0]["variant"]["variant_id"],
        "anthropic/claude-sonnet-4-6"
    );
    let stored = f
        .engine
        .load()
        .router("user-aware")
        .unwrap()
        .config()
        .to_json();
    let (_, derived) = abroute::RouterConfig::from_json_derived(&stored).unwrap();
    assert!(derived.is_empty(), "{derived:?}");
    // The same display name again is a clash on the derived name, as for a named router.
    let (status, e) = create(&f.api, USER_AWARE);
    assert_eq!(status, 409, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("user-aware"),
        "{e}"
    );
    // Neither name nor display name: a clear error naming the field.
    let (status, e) = create(
        &f.api,
        r#"{ "defaultRoute": { "variants": [ { "variant": { "modelId": "m" }, "weight": 1 } ] } }"#,
    );
    assert_eq!(status, 400, "{e}");
    assert!(
        e.to_string().contains("no `displayName` to derive it from"),
        "{e}"
    );
}
