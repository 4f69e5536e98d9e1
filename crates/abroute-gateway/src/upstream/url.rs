//! Providers' base URLs: parsed once at start and split for fast joining.
//!
//! A provider is configured as an OpenAI-compatible base URL (`https://api.openai.com/v1`). It
//! is parsed here, at start, into scheme, authority and path prefix, so that each request only
//! joins its own path to them ([`BaseUrl::join`]); the TLS checks name the host the way
//! certificates do ([`BaseUrl::tls_host`]).

use std::fmt;
use std::net::IpAddr;

use http::Uri;
use http::uri::{Authority, PathAndQuery, Scheme};

/// An OpenAI-compatible base URL, split for fast joining: `http(s)://host:port/prefix`.
#[derive(Debug, Clone)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// The path without a trailing `/` (`/v1`), possibly empty.
    prefix: String,
}

impl BaseUrl {
    /// Parses `http://host:port/path` or `https://host:port/path`.
    ///
    /// # Errors
    ///
    /// When it is not an absolute `http` or `https` URL, or has a query.
    pub fn parse(text: &str) -> Result<BaseUrl, String> {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("{text:?} needs a scheme (http:// or https://)"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!(
                "{text:?}: the scheme must be http:// or https://, not {scheme}://"
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{text:?} needs a host"))?;
        if uri.query().is_some() {
            return Err(format!("{text:?}: a base URL cannot have a query"));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(BaseUrl {
            scheme,
            authority,
            prefix,
        })
    }

    /// Whether requests to it go over TLS.
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }

    /// The host as TLS names it: a DNS name as written (lowercased), an IP address in its
    /// canonical form, without brackets.
    pub(super) fn tls_host(&self) -> String {
        let host = self.authority.host();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => bare.to_ascii_lowercase(),
        }
    }

    /// The URL for a request path: `/v1/chat/completions` becomes
    /// `<base>/chat/completions` (the base URL carries its own version prefix).
    ///
    /// # Errors
    ///
    /// When the joined path is not a valid URI path.
    pub fn join(&self, path_and_query: &str) -> Result<Uri, http::Error> {
        let rest = path_and_query
            .strip_prefix("/v1")
            .filter(|r| r.is_empty() || r.starts_with('/') || r.starts_with('?'))
            .unwrap_or(path_and_query);
        let mut pq = String::with_capacity(self.prefix.len() + rest.len());
        pq.push_str(&self.prefix);
        pq.push_str(rest);
        let pq: PathAndQuery = pq.parse()?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_paths() {
        let b = BaseUrl::parse("http://127.0.0.1:8000/v1/").unwrap();
        assert_eq!(
            b.join("/v1/chat/completions").unwrap().to_string(),
            "http://127.0.0.1:8000/v1/chat/completions"
        );
        let b = BaseUrl::parse("http://h/openai/v1").unwrap();
        assert_eq!(
            b.join("/v1/chat/completions?x=1").unwrap().to_string(),
            "http://h/openai/v1/chat/completions?x=1"
        );
        assert_eq!(
            b.join("/other").unwrap().to_string(),
            "http://h/openai/v1/other"
        );
        assert_eq!(
            b.join("/v1x").unwrap().to_string(),
            "http://h/openai/v1/v1x"
        );
        assert!(BaseUrl::parse("localhost:80").is_err());
    }

    #[test]
    fn accepts_http_and_https_only() {
        let b = BaseUrl::parse("https://api.openai.com/v1").unwrap();
        assert!(b.is_https());
        assert_eq!(b.to_string(), "https://api.openai.com/v1");
        assert_eq!(
            b.join("/v1/chat/completions").unwrap().to_string(),
            "https://api.openai.com/v1/chat/completions"
        );
        assert!(!BaseUrl::parse("http://h/v1").unwrap().is_https());
        for bad in [
            "ftp://h/v1",
            "ws://h/v1",
            "file:///etc/passwd",
            "/v1",
            "https://h/v1?x=1",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad} was accepted");
        }
        let e = BaseUrl::parse("ftp://h/v1").unwrap_err();
        assert!(e.contains("http:// or https://"), "{e}");
    }

    #[test]
    fn tls_hosts_are_canonical() {
        let host = |u: &str| BaseUrl::parse(u).unwrap().tls_host();
        assert_eq!(host("https://API.OpenAI.com/v1"), "api.openai.com");
        assert_eq!(host("https://localhost:8443/v1"), "localhost");
        assert_eq!(host("https://127.0.0.1:8443/v1"), "127.0.0.1");
        assert_eq!(host("https://[0:0::1]:8443/v1"), "::1");
    }
}
