//! Arbitrary bytes as an upstream's server-sent event stream, cut into arbitrary frames, through
//! the scanner that places the metadata event (`abroute_http::SseScanner`). Nothing may panic,
//! and:
//!
//! - the output is the input with at most one metadata event inserted: removing the event gives
//!   the input back, byte for byte (nothing lost, reordered or duplicated, held bytes included);
//! - the framing changes nothing: the stream cut into the fuzzer's frames gives the same output
//!   as the stream in one frame;
//! - the event itself is well formed: its `data:` line is a JSON object holding the metadata.
#![no_main]

use abroute_http::{Api, SseScanner};
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
});
