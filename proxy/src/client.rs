//! The HTTP client for upstream calls. Normally hyper's pooled client with rustls, called
//! with each deployment's prebuilt URI: reqwest parses every request's URL twice into a
//! `url::Url` (its redirect policy and its response), which a profile put at a twentieth
//! of the proxy's CPU. When the environment names an HTTP(S) proxy, reqwest is used
//! instead, since it honours `HTTPS_PROXY`/`NO_PROXY` as LiteLLM (httpx) does.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use std::{error::Error as StdError, time::Duration};

pub type BoxError = Box<dyn StdError + Send + Sync>;
/// An upstream response body, whichever client fetched it.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Environment variables that make upstream calls go through a proxy.
const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

#[derive(Clone, Debug)]
pub enum Upstream {
    Direct(Box<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>),
    /// Through the proxy the environment names.
    Proxied(reqwest::Client),
}

impl Upstream {
    pub fn new() -> Result<Self, BoxError> {
        let proxied = PROXY_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()));
        if proxied {
            let client = reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(256)
                .tcp_nodelay(true)
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::none())
                .build()?;
            return Ok(Upstream::Proxied(client));
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config()?)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Upstream::Direct(Box::new(client)))
    }

    /// Sends a request and returns the response head with its body still to read.
    /// Redirects are not followed (an API answering one is misconfigured).
    pub async fn send(&self, req: Request<Bytes>) -> Result<Response<Body>, BoxError> {
        match self {
            Upstream::Direct(client) => {
                let resp = client.request(req.map(Full::new)).await?;
                Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
            }
            Upstream::Proxied(client) => {
                let req = reqwest::Request::try_from(req)?;
                let resp = client.execute(req).await.map_err(|e| e.without_url())?;
                let resp: Response<reqwest::Body> = resp.into();
                Ok(resp.map(|b| b.map_err(BoxError::from).boxed_unsync()))
            }
        }
    }
}

/// Public roots (webpki-roots) plus the system's, so a private CA installed in the image
/// works for self-hosted upstreams.
fn tls_config() -> Result<rustls::ClientConfig, BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot use is skipped, as reqwest does.
        let _ = roots.add(cert);
    }
    let provider = rustls::crypto::ring::default_provider();
    Ok(rustls::ClientConfig::builder_with_provider(provider.into())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An error and its causes on one line (hyper's top-level message alone is "client
/// error (Connect)").
pub fn describe(e: &(dyn StdError + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg = format!("{msg}: {text}");
        }
        source = s.source();
    }
    msg
}
