//! object_store's S3 client speaking through the workspace's reqwest (0.12, rustls with
//! ring), which the search client already builds: object_store's own reqwest feature
//! would bring a second reqwest and the aws-lc C build.

use std::{error::Error as _, time::Duration};

use async_trait::async_trait;
use http_body_util::BodyExt;
use object_store::{
    client::{
        HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpResponseBody, HttpService,
    },
    ClientOptions,
};

/// How long connecting may take; an upload's whole request has `REQUEST_TIMEOUT`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
pub struct ReqwestConnector;

impl HttpConnector for ReqwestConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| object_store::Error::Generic { store: "S3", source: Box::new(e) })?;
        Ok(HttpClient::new(Service(client)))
    }
}

#[derive(Debug)]
struct Service(reqwest::Client);

#[async_trait]
impl HttpService for Service {
    async fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let url = parts.uri.to_string().parse().map_err(|e| HttpError::new(HttpErrorKind::Request, e))?;
        let mut outgoing = reqwest::Request::new(parts.method, url);
        *outgoing.headers_mut() = parts.headers;
        *outgoing.body_mut() = Some(reqwest::Body::wrap(body));
        let response = self.0.execute(outgoing).await.map_err(classify)?;
        let status = response.status().as_u16();
        if status == 401 || status == 403 {
            let body = response.text().await.unwrap_or_default();
            let code = between(&body, "<Code>", "</Code>").unwrap_or("no error code").to_string();
            return Err(HttpError::new(HttpErrorKind::Unknown, CredentialsRefused { status, code }));
        }
        let (parts, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        Ok(HttpResponse::from_parts(parts, HttpResponseBody::new(body.map_err(classify))))
    }
}

/// The store answered 401 or 403: the keys are wrong or lack the permission. Carried
/// as an error of its own, so the archive can tell it from every other failure
/// (object_store reports a refused listing as a generic error).
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}, S3 error code {code}")]
pub struct CredentialsRefused {
    pub status: u16,
    pub code: String,
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    Some(&text[from..from + text[from..].find(end)?])
}

/// The kind decides whether object_store retries: a refused connection, a timeout or a
/// connection cut mid-request are worth another try.
fn classify(error: reqwest::Error) -> HttpError {
    let kind = if error.is_timeout() {
        HttpErrorKind::Timeout
    } else if error.is_connect() {
        HttpErrorKind::Connect
    } else if error.is_decode() {
        HttpErrorKind::Decode
    } else if cut_mid_request(&error) {
        HttpErrorKind::Interrupted
    } else {
        HttpErrorKind::Unknown
    };
    HttpError::new(kind, error.without_url())
}

fn cut_mid_request(error: &reqwest::Error) -> bool {
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(io.kind(), ConnectionAborted | ConnectionReset | BrokenPipe | UnexpectedEof) {
                return true;
            }
        }
        source = cause.source();
    }
    // hyper says "connection closed before message completed" without an io error.
    error.is_request() || error.is_body()
}
