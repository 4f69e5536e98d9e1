//! The answer: what the client gets once the attempt loop ended.
//!
//! - a served attempt ([`served`]): the upstream's head and body, the frames the loop already
//!   read replayed first; with the metadata merge, a JSON answer read whole gets Inworld's
//!   `metadata` (and its usage is read in the same pass, for the [`Usage`] extension and the
//!   model's throughput), and an event stream gets the metadata as one more event
//!   ([`stream`](crate::stream));
//! - a refused attempt (a 4xx other than 429) or, when every attempt failed, the last upstream
//!   error response, as it came ([`refused`], [`failed`]); with none, 502 or 504;
//! - on each of them the `x-abroute-*` decision headers ([`with_decision`]) and, when asked,
//!   the [`DecisionRecord`](abroute::DecisionRecord) in the extensions.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::CONTENT_LENGTH;
use http::{HeaderValue, Response};

use crate::attempts::{Failed, Peeked, Served};
use crate::body::AbrouteBody;
use crate::error::ApiError;
use crate::extract::Api;
use crate::include_usage::UsageAsk;
use crate::options::LayerOptions;
use crate::plan::Plan;
use crate::response::{Usage, merge_metadata_and_usage, metadata_value};
use crate::stream::{MetadataTap, is_event_stream};
use crate::stream_tap::StreamTap;
use crate::time::Clock;

/// An error answered by the layer itself.
pub(crate) fn error_response<B>(e: &ApiError) -> Response<AbrouteBody<B>> {
    e.to_response().map(AbrouteBody::full)
}

/// The answer of a served attempt. `start` is when the plan was made (for
/// `total_duration_ms`); `clock` gives the clock an event stream reads when it ends.
pub(crate) fn served<P: Plan, B>(
    served: Served<P::Attempt, B>,
    plan: &P,
    api: Api,
    start: Duration,
    options: &LayerOptions,
    clock: impl FnOnce() -> Arc<dyn Clock>,
) -> Response<AbrouteBody<B>> {
    let Served {
        attempt,
        response,
        peeked,
        latency,
        now,
        usage_ask,
    } = served;
    let (mut head, body) = response.into_parts();
    // Built once: for the merged metadata and for the response extension.
    let mut record = None;
    let mut usage: Option<Usage> = None;
    let body = match peeked {
        Some(Peeked::All(all)) => {
            let total = now.saturating_sub(start);
            let rec = record.insert(plan.record());
            // One pass over the answer: the metadata merged, and its usage.
            let (merged, found) = merge_metadata_and_usage(api, &all, metadata_value(rec, total));
            usage = found;
            // Read whole, so the latency covers the whole answer: with its output tokens,
            // the model's throughput.
            if let Some(tokens) = usage.and_then(|u| u.output_tokens) {
                plan.report_output_tokens(&attempt, tokens, latency);
            }
            match merged {
                Some(merged) => {
                    head.headers
                        .insert(CONTENT_LENGTH, HeaderValue::from(merged.len()));
                    AbrouteBody::full(Bytes::from(merged))
                }
                None => AbrouteBody::full(all),
            }
        }
        Some(Peeked::Frame(f)) => AbrouteBody::replay(None, Some(f), body),
        Some(Peeked::Partial(data, frame)) => AbrouteBody::replay(Some(data), frame, body),
        Some(Peeked::End) | None => AbrouteBody::replay(None, None, body),
    };
    // An event stream gets the metadata as one more event (see `stream`), written when the
    // stream ends; its length changes.
    let observer = options.get_stream_observer();
    let tapped = options.get_merge_metadata() || observer.is_some();
    let clock = (tapped && is_event_stream(&head.headers)).then(clock);
    let body = match &clock {
        Some(clock) if options.get_merge_metadata() => {
            head.headers.remove(CONTENT_LENGTH);
            let rec = record.get_or_insert_with(|| plan.record()).clone();
            body.with_tap(MetadataTap::new(api, rec, start, clock.clone()))
        }
        _ => body,
    };
    // A host that observes streams gets each routed one through the stream tap.
    let body = match (&clock, observer) {
        (Some(clock), Some(observer)) => {
            head.headers.remove(CONTENT_LENGTH);
            let rec = record.get_or_insert_with(|| plan.record()).clone();
            let suppress = usage_ask == UsageAsk::Injected;
            let tap = StreamTap::new(api, suppress, rec, start, clock.clone(), observer.clone());
            body.with_stream_tap(tap)
        }
        _ => body,
    };
    let mut response = with_decision(Response::from_parts(head, body), plan, &attempt, false);
    if options.get_record_extension() {
        let record = record.unwrap_or_else(|| plan.record());
        response.extensions_mut().insert(record);
    }
    if let Some(usage) = usage {
        response.extensions_mut().insert(usage);
    }
    response
}

/// The answer of a refused attempt: its response as it came.
pub(crate) fn refused<P: Plan, B>(
    response: Response<B>,
    plan: &P,
    attempt: &P::Attempt,
    options: &LayerOptions,
) -> Response<AbrouteBody<B>> {
    with_decision(
        response.map(AbrouteBody::inner),
        plan,
        attempt,
        options.get_record_extension(),
    )
}

/// The answer when every attempt failed: the last upstream error response, or why there is
/// none (504 when every attempt timed out, else 502).
pub(crate) fn failed<P: Plan, B>(
    failed: Failed<P::Attempt, B>,
    plan: &P,
    options: &LayerOptions,
) -> Response<AbrouteBody<B>> {
    let record = options.get_record_extension();
    if let Some((response, attempt)) = failed.last_response {
        return with_decision(response.map(AbrouteBody::inner), plan, &attempt, record);
    }
    let Failed {
        tried, timeouts, ..
    } = failed;
    let e = if timeouts == tried && tried > 0 {
        ApiError::upstream_timeout(tried)
    } else {
        ApiError::upstream_unavailable(tried)
    };
    let response = error_response(&e);
    match failed.last_attempt {
        Some(a) => with_decision(response, plan, &a, record),
        None => response,
    }
}

/// Adds the decision headers (and, with `record`, the record) to a response.
pub(crate) fn with_decision<P: Plan, B>(
    mut response: Response<B>,
    plan: &P,
    attempt: &P::Attempt,
    record: bool,
) -> Response<B> {
    plan.headers(attempt).apply(response.headers_mut());
    if record {
        response.extensions_mut().insert(plan.record());
    }
    response
}
