//! Arbitrary bytes as an upstream's server-sent event stream, cut into arbitrary frames, through
//! the scanner that places the metadata event (`abroute_http::SseScanner`). Nothing may panic,
//! and:
//!
//! - the output is the input with at most one metadata event inserted: removing the event gives
//!   the input back, byte for byte (nothing lost, reordered or duplicated, held bytes included);
//! - the framing changes nothing: the stream cut into the fuzzer's frames gives the same output
//!   as the stream in one frame;
//! - the event itself is well formed: its `data:` line is a JSON object holding the metadata;
//! - the usage reader (`abroute_http::stream_usage::UsageReader`) finds the same usage
//!   whatever the framing;
//! - the stream tap (`abroute_http::stream_tap::StreamTap`) gives the input back byte for byte
//!   when it removes nothing, and the same output whatever the framing when it removes the
//!   usage-only chunk; a break ends it with the API's error event.
#![no_main]

use std::sync::Arc;
use std::time::Duration;

use abroute::DecisionRecord;
use abroute_http::stream_tap::{StreamError, StreamTap, error_event};
use abroute_http::stream_usage::UsageReader;
use abroute_http::{Api, SseScanner};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

/// Runs `frames` through a scanner; the output, and where the event went (if it did).
fn run(api: Api, frames: &[&[u8]], event: &mut Vec<u8>) -> (Vec<u8>, Option<usize>) {
    let mut meta = Map::new();
    meta.insert("router".into(), Value::from("r"));
    let mut sc = SseScanner::new(api);
    let mut out = Vec::new();
    let mut at = None;
    let mut insert = |sc: &SseScanner, out: &mut Vec<u8>| {
        assert!(at.is_none(), "one event at most");
        at = Some(out.len());
        *event = sc.metadata_event(&meta, "served/model");
        out.extend_from_slice(event);
    };
    for frame in frames {
        let scan = sc.scan(frame);
        assert!(scan.emit <= frame.len());
        let mut piece = scan.released.to_vec();
        piece.extend_from_slice(&frame[..scan.emit]);
        match scan.insert_at {
            Some(i) => {
                assert!(i <= piece.len());
                out.extend_from_slice(&piece[..i]);
                insert(&sc, &mut out);
                out.extend_from_slice(&piece[i..]);
            }
            None => out.extend_from_slice(&piece),
        }
    }
    let fin = sc.finish();
    if fin.insert {
        insert(&sc, &mut out);
    }
    out.extend_from_slice(fin.released);
    (out, at)
}

fn record() -> DecisionRecord {
    serde_json::from_str(
        r#"{"router":"r","route_id":"d","assigned_variant_id":"a","assigned_model_id":"m",
          "served_variant_id":"a","served_model_id":"m","version":1,
          "assignment":{"kind":"random","draw":"0000000000000001"},"attempts":[],"fail_open":false}"#,
    )
    .expect("a valid record")
}

/// Runs `frames` through a stream tap; its output (a break at the end when `fail`).
fn tap(api: Api, suppress: bool, frames: &[&[u8]], fail: bool) -> Vec<u8> {
    let observer = Arc::new(|_end: abroute_http::stream_tap::StreamEnd| {});
    let mut t = StreamTap::new(
        api,
        suppress,
        record(),
        Duration::ZERO,
        Arc::new(|| Duration::ZERO),
        observer,
    );
    let mut out = Vec::new();
    let mut drain = |t: &mut StreamTap, out: &mut Vec<u8>| {
        while let Some(f) = t.pop() {
            if let Some(d) = f.data_ref() {
                out.extend_from_slice(d);
            }
        }
    };
    for f in frames {
        t.push(Bytes::copy_from_slice(f));
        drain(&mut t, &mut out);
    }
    if fail {
        t.fail(StreamError::UpstreamReset);
    } else {
        t.end();
    }
    drain(&mut t, &mut out);
    out
}

fn usage(api: Api, frames: &[&[u8]]) -> abroute_http::stream_usage::StreamUsage {
    let mut r = UsageReader::new(api);
    for f in frames {
        r.read(f);
    }
    r.usage()
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let api = match selector % 3 {
        0 => Api::ChatCompletions,
        1 => Api::Messages,
        _ => Api::Responses,
    };
    // The first bytes pick cut points; the rest is the stream.
    let cuts = usize::from(selector / 3 % 8).min(rest.len());
    let (cut_bytes, stream) = rest.split_at(cuts);
    let mut points: Vec<usize> = cut_bytes
        .iter()
        .map(|&b| usize::from(b) % (stream.len() + 1))
        .collect();
    points.sort_unstable();
    let mut frames = Vec::new();
    let mut from = 0;
    for p in points {
        frames.push(&stream[from..p]);
        from = p;
    }
    frames.push(&stream[from..]);

    let mut event = Vec::new();
    let (whole, at_whole) = run(api, &[stream], &mut event);
    let mut event_framed = Vec::new();
    let (framed, at_framed) = run(api, &frames, &mut event_framed);
    assert_eq!(framed, whole, "the framing changes the output");
    assert_eq!(at_framed, at_whole);

    // Without the event, the output is the input.
    let mut without = whole.clone();
    if let Some(at) = at_whole {
        without.drain(at..at + event.len());
        // The event is well formed: its data line is JSON with the metadata.
        let text = String::from_utf8_lossy(&event);
        let data = text
            .lines()
            .find_map(|l| l.strip_prefix("data: "))
            .expect("the event has a data line");
        let v: Value = serde_json::from_str(data).expect("the data line is JSON");
        assert_eq!(v["metadata"]["router"], "r");
        assert!(event.ends_with(b"\n\n"), "the event ends with a blank line");
    }
    assert_eq!(without, stream, "bytes were lost, reordered or duplicated");

    // Usage: the framing changes nothing.
    assert_eq!(usage(api, &frames), usage(api, &[stream]), "usage depends on the framing");
    // The tap: identity when it removes nothing; framing-independent when it does.
    assert_eq!(tap(api, false, &frames, false), stream, "the tap changed the stream");
    assert_eq!(
        tap(api, true, &frames, false),
        tap(api, true, &[stream], false),
        "the removal depends on the framing"
    );
    let broken = tap(api, false, &frames, true);
    assert!(broken.ends_with(error_event(api)), "a break ends with the error event");
});
