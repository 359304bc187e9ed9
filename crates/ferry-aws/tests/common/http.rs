//! A tiny HTTP/1 server for test doubles of AWS endpoints (the Lambda Invoke
//! API in front of moto, the Lambda Runtime API), and a forwarding client.

use std::convert::Infallible;
use std::sync::Arc;

use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub type Req = Request<Bytes>;
pub type Resp = Response<Full<Bytes>>;
pub type Handler = Arc<dyn Fn(Req) -> BoxFuture<'static, Resp> + Send + Sync>;

/// Stops the server when dropped (also when a test panics).
pub struct Server(JoinHandle<()>);

impl Drop for Server {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Serve `handler` on `listener`, each request with its whole body read.
pub fn serve(listener: TcpListener, handler: Handler) -> Server {
    Server(tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let handler = Arc::clone(&handler);
                    async move {
                        let (parts, body) = req.into_parts();
                        let bytes = body
                            .collect()
                            .await
                            .map(|c| c.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, Infallible>(handler(Request::from_parts(parts, bytes)).await)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    }))
}

pub fn response(status: StatusCode, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Resp {
    let mut r = Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(body.into())).expect("a valid response")
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Send `req` to `authority` (host:port) as it is, and return the answer whole.
pub async fn forward(client: &HttpClient, authority: &str, req: Req) -> Resp {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut out = Request::builder()
        .method(req.method())
        .uri(format!("http://{authority}{path}"));
    for (k, v) in req.headers() {
        if k != HOST && k != TRANSFER_ENCODING && k != CONTENT_LENGTH {
            out = out.header(k, v);
        }
    }
    let out = out
        .body(Full::new(req.into_body()))
        .expect("a valid request");
    match client.request(out).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            parts.headers.remove(TRANSFER_ENCODING);
            parts.headers.remove(CONTENT_LENGTH);
            Response::from_parts(parts, Full::new(bytes))
        }
        Err(e) => response(
            StatusCode::BAD_GATEWAY,
            &[],
            format!("forwarding to {authority}: {e}"),
        ),
    }
}

/// GET `url`'s status, or None when nothing answers.
pub async fn get_status(client: &HttpClient, url: &str) -> Option<StatusCode> {
    let req = Request::get(url).body(Full::new(Bytes::new())).ok()?;
    client.request(req).await.ok().map(|r| r.status())
}

/// POST a JSON body; the status and body.
pub async fn post_json(
    client: &HttpClient,
    url: &str,
    body: &serde_json::Value,
) -> (StatusCode, String) {
    let req = Request::post(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid request");
    let resp = client
        .request(req)
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = resp.status();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
