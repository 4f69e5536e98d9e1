//! The providers step of the start: the upstream service over the configured providers, and
//! the built-in mock where a provider uses it.
//!
//! This is where the gateway decides how each provider is reached. A real provider goes over
//! the network to its base URL. A provider with `mock = true` is the built-in mock: called in
//! process by default ([`Transport::InProcess`] over the mock's router, no socket), or, with
//! `[mock] in_process = false`, started once as a server on `[mock] listen` and reached over
//! loopback like any upstream. The mock lives in [`crate::mock`]; the upstream's providers do
//! not know it exists.

use std::sync::Arc;

use crate::config::GatewayConfig;
use crate::mock::{self, MockControl, MockServer};
use crate::upstream::{
    BaseUrl, InProcess, Provider, Providers, ResponseLimits, Transport, UpstreamService,
};

use super::keys::env_secret;
use super::{StartError, start_error};

/// What the providers step made.
pub(super) struct Upstreams {
    /// The service the chat layer calls.
    pub(super) service: UpstreamService,
    /// The mock's server, when a provider reaches the mock over loopback.
    pub(super) mock: Option<MockServer>,
    /// One line per provider, for the banner: `name/* → where (with key)`.
    pub(super) banner: Vec<String>,
}

/// The providers of `config`, the built-in mock scripted by `mock_control`.
///
/// # Errors
///
/// A base URL, `ca_file` or key that cannot be used, or a mock that cannot listen.
pub(super) async fn providers(
    config: &GatewayConfig,
    mock_control: MockControl,
) -> Result<Upstreams, StartError> {
    let mut mock = None;
    let mut list = Vec::new();
    let mut banner = Vec::new();
    let ca_roots = config.read_ca_files().map_err(start_error)?;
    for (p, roots) in config.providers.iter().zip(ca_roots) {
        let in_process = p.mock && config.mock.in_process;
        let (base, transport) = if in_process {
            let base = BaseUrl::parse(mock::IN_PROCESS_BASE).map_err(start_error)?;
            let local = InProcess::new(mock::router(mock_control.clone()));
            (base, Transport::InProcess(local))
        } else if p.mock {
            if mock.is_none() {
                let server = MockServer::start(config.mock.listen, mock_control.clone())
                    .await
                    .map_err(|e| {
                        start_error(format!(
                            "cannot start the mock upstream on {}: {e}",
                            config.mock.listen
                        ))
                    })?;
                mock = Some(server);
            }
            let addr = mock
                .as_ref()
                .map(MockServer::addr)
                .unwrap_or(config.mock.listen);
            let base = BaseUrl::parse(&format!("http://{addr}/v1")).map_err(start_error)?;
            (base, Transport::Network)
        } else {
            let url = p.base_url.as_deref().unwrap_or_default();
            (
                BaseUrl::parse(url).map_err(start_error)?,
                Transport::Network,
            )
        };
        let key = match (&p.api_key, &p.api_key_env) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(var)) => Some(env_secret(var, &format!("provider {:?}", p.name))?),
            (None, None) => None,
        };
        banner.push(format!(
            "{} → {}{}",
            if p.name == "*" {
                "* (any model)".to_owned()
            } else {
                format!("{}/*", p.name)
            },
            if in_process {
                "built-in mock upstream (in process)".to_owned()
            } else if p.mock {
                format!("built-in mock upstream at {base}")
            } else {
                base.to_string()
            },
            if key.is_some() { " (with key)" } else { "" }
        ));
        let provider = Provider::new(&p.name, base, key.as_deref())
            .map_err(start_error)?
            .trust(roots)
            .http2(p.http2);
        list.push((provider, transport));
    }
    let limits = ResponseLimits {
        head_bytes: config.limits.max_upstream_head_bytes,
        body_bytes: config.limits.max_upstream_body_bytes,
        idle: config.limits.upstream_idle_timeout,
    };
    let service = UpstreamService::with_limits(
        Arc::new(Providers::new(list)),
        config.limits.connect_timeout,
        config.routing.strip_provider,
        limits,
    )
    .map_err(start_error)?;
    Ok(Upstreams {
        service,
        mock,
        banner,
    })
}
