//! The upstream call: the inner service of the adapter's layer.
//!
//! The layer hands each attempt over as an `http::Request<Bytes>` whose body is already
//! rewritten for the attempt's model, with an [`UpstreamAttempt`](abroute_http::UpstreamAttempt)
//! in its extensions. [`UpstreamService`] picks the provider by the provider part of the model
//! id (`openai` in `openai/gpt-4.1`, else the `*` provider), points the request at the
//! provider's base URL, replaces the client's credentials with the provider's key, and sends it
//! over a pooled connection: HTTP/2 when an `https://` upstream agrees to it in the TLS
//! handshake (one multiplexed connection per host; a provider's `http2 = false` turns the offer
//! off), else keep-alive HTTP/1.1. An event stream is passed on as it arrives; a successful
//! JSON answer is read whole and checked to be JSON (the layer reads it whole anyway); every
//! answer of a network upstream is held to [`ResponseLimits`] (head size, body size, silence).
//!
//! The clients serve `http://` and `https://` base URLs alike. TLS is rustls with the `ring`
//! provider (TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`), trusting Mozilla's root certificates
//! built into the binary (`webpki-roots`, so no system CA bundle is needed). A provider's
//! `ca_file` adds root certificates (a private CA, a self-signed dev certificate) for that
//! provider's host only: the other hosts are still checked against Mozilla's roots alone. A TLS
//! connection is pooled like a plain one, so the handshake is paid once per connection, not
//! per request.
//!
//! Requests that do not name a router (a plain `openai/gpt-4.1`, say) come without an
//! `UpstreamAttempt`; their body's `model` picks the provider the same way.
//!
//! The parts, each in its own module:
//!
//! | module | holds |
//! |---|---|
//! | `url` | [`BaseUrl`]: a provider's base URL, parsed at start and joined per request |
//! | `tls` | [`read_ca_file`], the per-host certificate checks and the TLS client settings |
//! | `limits` | [`ResponseLimits`]: what an upstream's answer may cost (head, body, silence, JSON) |
//! | `connect` | the connector (TCP and TLS under one timeout) and the two pooled clients |
//! | `provider` | [`Provider`] and the list [`Providers`] picks from by model id |
//! | `transport` | [`Transport`]: the network, or a service in this process ([`InProcess`]) |
//! | `service` | [`UpstreamService`], and the answers it makes itself (no provider: 502) |

mod connect;
mod limits;
mod provider;
mod service;
mod tls;
mod transport;
mod url;

use abroute_http::BoxError;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

pub use limits::{GuardedBody, ResponseLimits};
pub use provider::{Provider, Providers};
pub use service::UpstreamService;
pub use tls::read_ca_file;
pub use transport::{InProcess, Transport};
pub use url::BaseUrl;

/// The body of an upstream response as the layer sees it.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;
