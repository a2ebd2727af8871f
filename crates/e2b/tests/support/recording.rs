//! A recording server that answers like E2B's API and envd would, and remembers every
//! request.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// The JSON message inside the first Connect envelope.
    pub fn envelope_json(&self) -> serde_json::Value {
        assert!(self.body.len() >= 5, "no envelope in {:?}", self.body);
        let len = u32::from_be_bytes([self.body[1], self.body[2], self.body[3], self.body[4]]);
        serde_json::from_slice(&self.body[5..5 + len as usize]).unwrap()
    }
}

#[derive(Clone, Default)]
pub struct Log(pub Arc<Mutex<Vec<Recorded>>>);

impl Log {
    pub fn all(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().clone()
    }

    pub fn find(&self, method: &str, path: &str) -> Recorded {
        self.all()
            .into_iter()
            .find(|r| r.method.as_str() == method && r.path == path)
            .unwrap_or_else(|| panic!("no {method} {path} in {:#?}", self.paths()))
    }

    pub fn paths(&self) -> Vec<String> {
        self.all()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

pub struct Server {
    pub base: String,
    pub log: Log,
}

pub async fn start() -> Server {
    let log = Log::default();
    let app = axum::Router::new().fallback(handle).with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        log,
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
        .into_response()
}

fn sandbox_json(id: &str) -> serde_json::Value {
    serde_json::json!({
        "sandboxID": id, "templateID": "base", "clientID": "c", "envdVersion": "0.6.13",
        "envdAccessToken": "tok-123", "trafficAccessToken": null, "domain": null
    })
}

fn listed(id: &str) -> serde_json::Value {
    serde_json::json!({
        "sandboxID": id, "templateID": "base", "clientID": "c", "envdVersion": "0.6.13",
        "startedAt": "2026-01-01T00:00:00Z", "endAt": "2026-01-01T00:05:00Z",
        "cpuCount": 2, "memoryMB": 512, "diskSizeMB": 1024, "state": "running",
        "metadata": {"k": "v"}
    })
}

fn envelope(flags: u8, value: &serde_json::Value) -> Bytes {
    let payload = value.to_string().into_bytes();
    let mut out = vec![flags];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    Bytes::from(out)
}

async fn handle(State(log): State<Log>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    let recorded = Recorded {
        method: parts.method.clone(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers.clone(),
        body: body.clone(),
    };
    log.0.lock().unwrap().push(recorded.clone());
    let method = parts.method.as_str();
    match (method, path.as_str()) {
        ("POST", "/v2/sandboxes") => {
            let attempts = log
                .all()
                .iter()
                .filter(|r| r.path == "/v2/sandboxes")
                .count();
            match recorded.json()["templateID"].as_str() {
                // Busy twice, as an overloaded API is, then created.
                Some("busy") if attempts <= 2 => {
                    let mut r = json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({"code": 503, "message": "try again"}),
                    );
                    r.headers_mut().insert("retry-after", "0".parse().unwrap());
                    r
                }
                Some("refused") => {
                    let mut r = json(
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({"code": 503, "message": "do not retry"}),
                    );
                    r.headers_mut()
                        .insert("should-retry", "false".parse().unwrap());
                    r
                }
                Some("later") => {
                    let mut r = json(
                        StatusCode::TOO_MANY_REQUESTS,
                        serde_json::json!({"code": 429, "message": "come back in an hour"}),
                    );
                    r.headers_mut()
                        .insert("retry-after", "3600".parse().unwrap());
                    r
                }
                Some("private") => {
                    let mut v = sandbox_json("sbx1");
                    v["trafficAccessToken"] = "traffic-tok".into();
                    json(StatusCode::CREATED, v)
                }
                _ => json(StatusCode::CREATED, sandbox_json("sbx1")),
            }
        }
        ("PUT", "/sandboxes/sbx1/network") => StatusCode::NO_CONTENT.into_response(),
        ("PUT", "/sandboxes/rejects/network") => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"code": 400, "message": "denyOut: \"example.com\" is not a CIDR or IP address"}),
        ),
        ("PUT", _) => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"code": 404, "message": "sandbox not found"}),
        ),
        ("POST", "/v2/sandboxes/sbx1/connect") => json(StatusCode::OK, sandbox_json("sbx1")),
        ("POST", "/v2/sandboxes/gone/connect") => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"code": 404, "message": "sandbox gone not found"}),
        ),
        ("DELETE", "/sandboxes/sbx1") => StatusCode::NO_CONTENT.into_response(),
        ("DELETE", _) => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"code": 404, "message": "not found"}),
        ),
        ("POST", "/sandboxes/sbx1/timeout") => StatusCode::NO_CONTENT.into_response(),
        ("POST", "/sandboxes/sbx1/pause") => StatusCode::NO_CONTENT.into_response(),
        ("POST", "/sandboxes/paused/pause") => json(
            StatusCode::CONFLICT,
            serde_json::json!({"code": 409, "message": "already paused"}),
        ),
        ("GET", "/sandboxes/sbx1") => {
            let mut v = listed("sbx1");
            v["allowInternetAccess"] = true.into();
            json(StatusCode::OK, v)
        }
        ("GET", "/sandboxes/net1") => {
            // As E2B answers for a sandbox created with a full network config: the proxy
            // without its password or CA certificate.
            let mut v = listed("net1");
            v["allowInternetAccess"] = false.into();
            v["network"] = serde_json::json!({
                "allowPublicTraffic": false,
                "allowOut": ["api.example.com", "*.pypi.org"],
                "denyOut": ["0.0.0.0/0"],
                "dnsServers": [],
                "egressProxy": {"address": "proxy.example.com:1080", "username": "u", "tls": {"enabled": true, "serverName": "socks.internal"}},
                "maskRequestHost": "${PORT}-myapp.example.com",
                "httpsPorts": [8443],
                "rules": {"api.example.com": [{"transform": {"headers": {"Authorization": "Bearer k"}}}, {}]},
            });
            json(StatusCode::OK, v)
        }
        ("GET", "/sandboxes/missing") => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"code": 404, "message": "nope"}),
        ),
        ("GET", "/sandboxes/unauthorized") => json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"code": 401, "message": "Invalid API key"}),
        ),
        ("GET", "/v2/sandboxes") => {
            let query = parts.uri.query().unwrap_or("");
            if query.contains("nextToken=page2") {
                json(StatusCode::OK, serde_json::json!([listed("c")]))
            } else {
                let mut r = json(
                    StatusCode::OK,
                    serde_json::json!([listed("a"), listed("b")]),
                );
                r.headers_mut()
                    .insert("x-next-token", "page2".parse().unwrap());
                r
            }
        }
        ("GET", "/health") => json(
            StatusCode::BAD_GATEWAY,
            serde_json::json!({"sandboxId": "sbx1", "message": "The sandbox was not found", "code": 502}),
        ),
        ("POST", "/process.Process/Start") => {
            let start = envelope(0, &serde_json::json!({"event": {"start": {"pid": 7}}}));
            let cmd = recorded.envelope_json()["process"]["args"][2]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let stream: futures_util::stream::BoxStream<'static, Result<Bytes, std::io::Error>> =
                if cmd == "die" {
                    // Start, some output, then the connection is cut as when a sandbox is
                    // killed: no end-of-stream frame.
                    let data = envelope(
                        0,
                        &serde_json::json!({"event": {"data": {"stdout": "aGk="}}}),
                    );
                    Box::pin(futures_util::stream::iter([Ok(start), Ok(data)]).chain(
                        futures_util::stream::once(async {
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            Err(std::io::Error::other("sandbox killed"))
                        }),
                    ))
                } else {
                    let data = envelope(
                        0,
                        &serde_json::json!({"event": {"data": {"stdout": "aGk="}}}),
                    );
                    let end = envelope(
                        0,
                        &serde_json::json!({"event": {"end": {"exited": true, "status": "exit status 0"}}}),
                    );
                    let trailer = envelope(2, &serde_json::json!({}));
                    Box::pin(futures_util::stream::iter([
                        Ok(start),
                        Ok(data),
                        Ok(end),
                        Ok(trailer),
                    ]))
                };
            Response::builder()
                .header(header::CONTENT_TYPE, "application/connect+json")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        ("POST", "/filesystem.Filesystem/Stat") => json(
            StatusCode::OK,
            serde_json::json!({"entry": {"name": "a.txt", "type": "FILE_TYPE_FILE", "path": "/home/user/a.txt", "size": "3", "mode": 420, "permissions": "-rw-r--r--", "owner": "user", "group": "user"}}),
        ),
        ("POST", "/filesystem.Filesystem/ListDir") => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"code": "not_found", "message": "path '/nope' does not exist"}),
        ),
        ("POST", "/process.Process/SendSignal") => json(StatusCode::OK, serde_json::json!({})),
        ("POST", "/files") => json(
            StatusCode::OK,
            serde_json::json!([{"name": "a.txt", "path": "/home/user/a.txt", "type": "file"}]),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"code": 404, "message": format!("no route {method} {path}")}),
        ),
    }
}
