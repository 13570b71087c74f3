//! One keep-alive HTTP/1.1 connection per virtual user, on hyper directly: no pool lookup,
//! no URL parsing per request, nothing allocated per request but the request itself.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::options::{Endpoint, Target};

/// A request that has not answered after this long counts as a failure.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a request got no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Could not open a connection (the target is down, or the address is wrong).
    Connect(String),
    Timeout,
    /// The connection broke mid-request.
    Broken(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Connect(cause) => write!(f, "cannot connect: {cause}"),
            RequestError::Timeout => write!(f, "no answer within {} s", REQUEST_TIMEOUT.as_secs()),
            RequestError::Broken(cause) => write!(f, "connection broke: {cause}"),
        }
    }
}

/// A virtual user's connection; reconnects after an error.
pub struct Connection {
    address: SocketAddr,
    host: http::HeaderValue,
    /// Each endpoint's path, made once: parsing it per request was measurable at full
    /// speed (docs/benchmarks.md).
    paths: [http::Uri; Endpoint::ALL.len()],
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Connection {
    pub fn new(address: SocketAddr, target: &Target) -> anyhow::Result<Connection> {
        Ok(Connection {
            address,
            host: http::HeaderValue::from_str(&target.authority)?,
            paths: Endpoint::ALL.map(|endpoint| http::Uri::from_static(endpoint.path())),
            sender: None,
        })
    }

    /// Sends one request and reads the whole answer; returns the status code.
    pub async fn send(&mut self, endpoint: Endpoint) -> Result<u16, RequestError> {
        let result = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(endpoint))
            .await
            .unwrap_or(Err(RequestError::Timeout));
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn exchange(&mut self, endpoint: Endpoint) -> Result<u16, RequestError> {
        let sender = match &mut self.sender {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.sender.insert(connect(self.address).await?),
        };
        sender
            .ready()
            .await
            .map_err(|e| RequestError::Broken(e.to_string()))?;
        let mut request = http::Request::new(Empty::new());
        *request.method_mut() = endpoint.method();
        *request.uri_mut() = self.paths[endpoint.index()].clone();
        request
            .headers_mut()
            .insert(http::header::HOST, self.host.clone());
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| RequestError::Broken(e.to_string()))?;
        let status = response.status().as_u16();
        // Read the body to the end so the connection can carry the next request.
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| RequestError::Broken(e.to_string()))?;
        Ok(status)
    }
}

async fn connect(address: SocketAddr) -> Result<SendRequest<Empty<Bytes>>, RequestError> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| {
            RequestError::Connect(format!(
                "no answer from {address} within {} s",
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| RequestError::Connect(format!("{address}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| RequestError::Connect(e.to_string()))?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Resolves the target and checks that it answers `GET /health`, so a target that is down
/// is reported at once, in one sentence, instead of as a wall of failed requests.
pub async fn preflight(target: &Target) -> anyhow::Result<SocketAddr> {
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot resolve {}: {e}", target.host))?
        .collect();
    let mut last_error = None;
    for address in addresses {
        let mut connection = Connection::new(address, target)?;
        match tokio::time::timeout(CONNECT_TIMEOUT, connection.send(Endpoint::Health)).await {
            Ok(Ok(_)) => return Ok(address),
            Ok(Err(error)) => last_error = Some(error.to_string()),
            Err(_) => {
                last_error = Some(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()));
            }
        }
    }
    anyhow::bail!(
        "{} is not answering ({}). Is the mesh running? Start it with `cargo xtask local` \
         (or `cargo xtask up` for the kind cluster), or point --target at it.",
        target.url,
        last_error.unwrap_or_else(|| "no address".into())
    )
}
