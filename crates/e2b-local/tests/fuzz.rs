//! Fuzzing the real e2b-local server in-process: REST bodies and queries of every endpoint it
//! serves, path segments, and the Host / `E2b-Sandbox-Id` / `E2b-Sandbox-Port` routing. Client
//! garbage must get a 4xx with a `{code, message}` JSON body (routing may also answer E2B's
//! documented 502s), and a create that did not answer 201 must leave no sandbox behind.
//!
//! Needs root (the server spawns sandboxes). Bounded for CI; `PROPTEST_CASES=2000 cargo test
//! -p e2b-local --all-features --test fuzz -- --include-ignored` is the longer run (see the
//! README).

mod support;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};
use support::{TestServer, start};

/// `PROPTEST_CASES` when set (the longer run), else `ci_cases`.
fn config(ci_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A response, read whole.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A server and the runtime it runs on; requests are sent from the test's thread.
struct Target {
    rt: tokio::runtime::Runtime,
    server: Option<TestServer>,
}

impl Target {
    fn start() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(start());
        Self {
            rt,
            server: Some(server),
        }
    }

    fn server(&self) -> &TestServer {
        self.server.as_ref().unwrap()
    }

    /// Sends a request with raw headers (the API key unless `headers` has one) and body.
    fn send(
        &self,
        method: &Method,
        path: &str,
        headers: &[(&str, Vec<u8>)],
        body: Vec<u8>,
    ) -> Reply {
        let t = self.server();
        self.rt.block_on(async {
            let mut request = t
                .http
                .request(method.clone(), format!("{}{path}", t.url))
                .body(body);
            if !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("x-api-key"))
            {
                request = request.header("x-api-key", &t.key);
            }
            for (name, value) in headers {
                request = request.header(*name, value.as_slice());
            }
            let response = request.send().await.expect("e2b-local answered");
            let status = response.status().as_u16();
            let body = response.bytes().await.expect("body read").to_vec();
            Reply { status, body }
        })
    }

    fn json(&self, method: &Method, path: &str, body: &Value) -> Reply {
        self.send(
            method,
            path,
            &[("content-type", b"application/json".to_vec())],
            serde_json::to_vec(body).unwrap(),
        )
    }

    /// The ids `GET /v2/sandboxes` lists, running or paused.
    fn listed(&self) -> Result<Vec<String>, TestCaseError> {
        let reply = self.send(
            &Method::GET,
            "/v2/sandboxes?state=running&state=paused",
            &[],
            Vec::new(),
        );
        prop_assert_eq!(reply.status, 200, "{}", reply.text());
        let list: Value = serde_json::from_slice(&reply.body).unwrap();
        let mut ids: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sandboxID"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn kill(&self, id: &str) -> Result<(), TestCaseError> {
        let reply = self.send(
            &Method::DELETE,
            &format!("/sandboxes/{id}"),
            &[],
            Vec::new(),
        );
        prop_assert_eq!(reply.status, 204, "{}", reply.text());
        Ok(())
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.rt.block_on(server.shutdown());
        }
    }
}

/// Runs `cases` cases of `strategy` with `check` against one server, checking after each
/// that the server still answers `/health`.
fn fuzz<S: Strategy>(
    target: &Target,
    cases: u32,
    strategy: S,
    check: impl Fn(&Target, S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(config(cases));
    let result = runner.run(&strategy, |value| {
        check(target, value)?;
        let health = target.send(&Method::GET, "/health", &[], Vec::new());
        prop_assert_eq!(health.status, 200, "the server stopped serving");
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// An error E2B's way: `{code: <status>, message: <non-empty>}`.
fn check_error_body(reply: &Reply) -> Result<(), TestCaseError> {
    let body: Value = serde_json::from_slice(&reply.body).map_err(|e| {
        TestCaseError::fail(format!(
            "HTTP {} body is not JSON ({e}): {:?}",
            reply.status,
            reply.text()
        ))
    })?;
    prop_assert_eq!(&body["code"], &Value::from(reply.status), "{}", body);
    prop_assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error without a message: {}",
        body
    );
    Ok(())
}

/// A control-plane reply to client input: a success, or a 4xx with an E2B error body.
fn check_rest_reply(reply: &Reply) -> Result<(), TestCaseError> {
    prop_assert!(
        reply.status < 500,
        "server error for client input: {} {}",
        reply.status,
        reply.text()
    );
    if reply.status >= 400 {
        check_error_body(reply)?;
    }
    Ok(())
}

/// Sandbox ids: well-formed but unknown, malformed, and escaped, including invalid UTF-8.
fn sandbox_id() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "i[a-z0-9]{20}",
        1 => "[a-z0-9]{1,64}",
        1 => "[A-Za-z0-9._~-]{1,30}",
        1 => "%2[0-9A-F]|%[3-7][0-9A-F]|%C3%A9|%E2%82%AC",
        1 => "%[89A-F][0-9A-F]%[89A-F][0-9A-F]",
        1 => Just("a".repeat(65)),
        1 => Just("..".to_owned()),
    ]
}

/// Any JSON value.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-5i64..4000).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec(("\\PC{0,8}", inner), 0..4)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// A map of strings: ordinary, empty, long, or not strings at all.
fn string_map(key: BoxedStrategy<String>) -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => proptest::collection::vec((key, "\\PC{0,16}"), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k, Value::String(v))).collect())),
        1 => Just(json!({"BIG": "x".repeat(200_000)})),
        1 => json_value(),
    ]
}

/// An egress rule entry: addresses, CIDRs, domains and wildcards, well-formed or not.
fn network_entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => "(25[0-5]|2[0-4][0-9]|1?[0-9]{1,2})(\\.(25[0-5]|2[0-4][0-9]|1?[0-9]{1,2})){3}(/[0-9]{1,2})?",
        3 => "(\\*\\.)?[a-z0-9-]{0,12}(\\.[a-z0-9-]{0,12}){0,3}\\.?",
        1 => "[0-9.:/*a-fA-F]{0,20}",
        1 => "\\PC{0,300}",
    ]
    .prop_map(Value::String)
}

/// An `egressProxy`, valid or not. Addresses are loopback or `.test` names only: the fuzzed
/// server has no sandbox networks, and nothing may be dialed outside this machine anyway.
fn egress_proxy_value() -> impl Strategy<Value = Value> {
    let credential = || {
        proptest::option::of(prop_oneof![
            4 => "[a-z0-9]{1,12}",
            1 => Just(String::new()),
            1 => Just("x".repeat(256)),
        ])
    };
    let tls = prop_oneof![
        2 => (any::<bool>(), proptest::option::of("[a-z.!]{0,20}"), proptest::option::of("\\PC{0,40}"))
            .prop_map(|(enabled, name, ca)| json!({"enabled": enabled, "serverName": name, "caCert": ca})),
        1 => json_value(),
    ];
    prop_oneof![
        4 => (
            prop_oneof![
                Just("127.0.0.1:1080".to_owned()),
                Just("proxy.test:1080".to_owned()),
                Just("[::1]:1".to_owned()),
                "[a-z0-9.:\\[\\]*]{0,24}",
            ],
            credential(),
            credential(),
            proptest::option::weighted(0.3, tls),
        )
            .prop_map(|(address, username, password, tls)| {
                let mut proxy = json!({"address": address});
                for (k, v) in [("username", username), ("password", password)] {
                    if let Some(v) = v {
                        proxy[k] = json!(v);
                    }
                }
                if let Some(tls) = tls {
                    proxy["tls"] = tls;
                }
                proxy
            }),
        1 => json_value(),
    ]
}

/// A `network` object of create or `PUT .../network`: every field, valid or not.
fn network_value() -> impl Strategy<Value = Value> {
    let entries = || {
        prop_oneof![
            8 => proptest::collection::vec(network_entry(), 0..6).prop_map(Value::Array),
            1 => Just(Value::Array(vec![json!("10.0.0.0/8"); 1_001])),
            1 => json_value(),
        ]
    };
    let rules = prop_oneof![
        4 => proptest::collection::vec(
            (network_entry(), "[A-Za-z-]{0,10}", "\\PC{0,20}"),
            0..3,
        )
        .prop_map(|rs| {
            Value::Object(
                rs.into_iter()
                    .map(|(domain, name, value)| {
                        let domain = domain.as_str().unwrap_or_default().to_owned();
                        (domain, json!([{"transform": {"headers": {name: value}}}]))
                    })
                    .collect(),
            )
        }),
        1 => json_value(),
    ];
    (
        proptest::option::of(entries()),
        proptest::option::of(entries()),
        proptest::option::of(entries()),
        proptest::option::of(rules),
        proptest::option::of(any::<bool>()),
        proptest::option::weighted(0.2, "\\PC{0,30}"),
        proptest::option::weighted(0.3, egress_proxy_value()),
    )
        .prop_map(|(allow, deny, dns, rules, public, mask, proxy)| {
            let mut m = serde_json::Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            };
            put("allowOut", allow);
            put("denyOut", deny);
            put("dnsServers", dns);
            put("rules", rules);
            put("allowPublicTraffic", public.map(Value::Bool));
            put("maskRequestHost", mask.map(Value::String));
            put("egressProxy", proxy);
            Value::Object(m)
        })
}

/// Environment variable names, including the empty name, `=` and NUL (a 400 at create).
fn env_key() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[A-Z_][A-Z0-9_]{0,8}",
        1 => Just(String::new()),
        1 => ".{1,8}",
    ]
    .boxed()
}

/// A create body: each field well-typed most of the time, arbitrary JSON otherwise.
fn create_body() -> impl Strategy<Value = Value> {
    let template = prop_oneof![
        12 => Just(json!("base")),
        1 => Just(json!("base:default")),
        1 => Just(json!("")),
        1 => "[a-z0-9/:._-]{1,12}".prop_map(Value::String),
        1 => json_value(),
    ];
    let timeout = prop_oneof![
        8 => (1i64..3600).prop_map(Value::from),
        1 => (-5i64..=0).prop_map(Value::from),
        1 => json_value(),
    ];
    let flag = || prop_oneof![8 => any::<bool>().prop_map(Value::Bool), 1 => json_value()];
    let field = |name: &'static str, present: f64, value: BoxedStrategy<Value>| {
        proptest::option::weighted(present, value)
            .prop_map(move |v| v.map(|v| (name.to_owned(), v)))
    };
    (
        (
            field("templateID", 0.95, template.boxed()),
            field("timeout", 0.6, timeout.boxed()),
            field("metadata", 0.4, string_map("\\PC{0,8}".boxed()).boxed()),
            field("envVars", 0.5, string_map(env_key()).boxed()),
            field("autoPause", 0.3, flag().boxed()),
            field("allow_internet_access", 0.3, flag().boxed()),
        ),
        field("network", 0.3, network_value().boxed()),
        (
            field("secure", 0.1, flag().boxed()),
            proptest::option::weighted(0.05, ("\\PC{1,10}", json_value())),
            proptest::option::weighted(0.05, Just(("mcp".to_owned(), json!({"x": {}})))),
            proptest::option::weighted(
                0.05,
                Just((
                    "volumeMounts".to_owned(),
                    json!([{"name": "v", "path": "/v"}]),
                )),
            ),
        ),
    )
        .prop_map(|((a, b, c, d, e, f), n, (g, h, i, j))| {
            Value::Object(
                [a, b, c, d, e, f, n, g, h, i, j]
                    .into_iter()
                    .flatten()
                    .collect(),
            )
        })
}

#[test]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
fn create_bodies_leave_nothing_half_made() {
    let target = Target::start();
    let strategy = (
        any::<bool>(),
        prop_oneof![
            8 => create_body().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            1 => proptest::collection::vec(any::<u8>(), 0..64),
        ],
    );
    fuzz(&target, 500, strategy, |target, (v2, body)| {
        let path = if v2 { "/v2/sandboxes" } else { "/sandboxes" };
        let reply = target.send(
            &Method::POST,
            path,
            &[("content-type", b"application/json".to_vec())],
            body,
        );
        check_rest_reply(&reply)?;
        let listed = target.listed()?;
        if reply.status == 201 {
            let created: Value = serde_json::from_slice(&reply.body).unwrap();
            let id = created["sandboxID"].as_str().unwrap().to_owned();
            prop_assert_eq!(listed, vec![id.clone()]);
            target.kill(&id)?;
            prop_assert_eq!(target.listed()?, Vec::<String>::new());
        } else {
            prop_assert_eq!(
                listed,
                Vec::<String>::new(),
                "a refused create left a sandbox"
            );
        }
        Ok(())
    });
}

/// Every endpoint e2b-local serves, with an id where the path has one: the `live` sandbox's
/// for those that only read it.
fn endpoint(live: &str) -> impl Strategy<Value = (Method, String, bool)> {
    let with_id = |method: Method, template: &'static str, body: bool| {
        sandbox_id().prop_map(move |id| (method.clone(), template.replace("{id}", &id), body))
    };
    let reading = |template: &'static str| {
        prop_oneof![sandbox_id(), Just(live.to_owned())]
            .prop_map(move |id| (Method::GET, template.replace("{id}", &id), false))
    };
    prop_oneof![
        reading("/sandboxes/{id}"),
        with_id(Method::DELETE, "/sandboxes/{id}", false),
        reading("/sandboxes/{id}/logs"),
        reading("/v2/sandboxes/{id}/logs"),
        reading("/sandboxes/{id}/metrics"),
        with_id(Method::POST, "/sandboxes/{id}/pause", true),
        with_id(Method::POST, "/sandboxes/{id}/resume", true),
        with_id(Method::POST, "/sandboxes/{id}/connect", true),
        with_id(Method::POST, "/v2/sandboxes/{id}/connect", true),
        with_id(Method::POST, "/sandboxes/{id}/timeout", true),
        with_id(Method::POST, "/sandboxes/{id}/refreshes", true),
        with_id(Method::PUT, "/sandboxes/{id}/network", true),
        Just((Method::PUT, format!("/sandboxes/{live}/network"), true)),
        with_id(Method::POST, "/sandboxes/{id}/fork", true),
        with_id(Method::POST, "/sandboxes/{id}/snapshots", true),
        Just((Method::GET, "/snapshots".to_owned(), false)),
        with_id(Method::GET, "/templates/{id}", false),
        // Never `base`: the ids are 21 characters or malformed.
        with_id(Method::DELETE, "/templates/{id}", false),
        Just((Method::GET, "/sandboxes".to_owned(), false)),
        Just((Method::GET, "/v2/sandboxes".to_owned(), false)),
        Just((Method::GET, "/sandboxes/metrics".to_owned(), false)),
        Just((Method::GET, "/templates".to_owned(), false)),
        Just((Method::GET, "/v2/templates".to_owned(), false)),
        Just((Method::POST, "/v3/templates".to_owned(), true)),
        with_id(Method::GET, "/templates/{id}/files/{id}", false),
        with_id(Method::POST, "/v2/templates/{id}/builds/{id}", true),
        with_id(Method::GET, "/templates/{id}/builds/{id}/status", false),
        with_id(Method::GET, "/templates/{id}/builds/{id}/logs", false),
        with_id(Method::PATCH, "/v2/templates/{id}", true),
        with_id(Method::GET, "/templates/{id}/tags", false),
        with_id(Method::GET, "/templates/aliases/{id}", false),
        Just((Method::POST, "/templates/tags".to_owned(), true)),
        Just((Method::DELETE, "/templates/tags".to_owned(), true)),
        with_id(Method::PUT, "/template-files/{id}", true),
    ]
}

/// A query string of known and unknown parameters with ordinary, odd and escaped values.
fn query(live: &str) -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("metadata"),
        Just("state"),
        Just("limit"),
        Just("nextToken"),
        Just("sandbox_ids"),
        Just("start"),
        Just("end"),
        Just("cursor"),
        Just("direction"),
        Just("level"),
        Just("search"),
        Just("other"),
    ];
    let value = prop_oneof![
        "-?[0-9]{0,20}",
        "(running|paused|forward|backward|info|debug|warn|error)",
        "[a-z0-9]{1,8}(%3D|=)[a-z0-9]{0,8}(%26[a-z]=[a-z])?",
        "[A-Za-z0-9_-]{0,24}",
        "%[2-7][0-9A-F]|%C3%A9",
        Just(live.to_owned()),
        Just(format!("{live},inosuchsandbox0000000")),
    ];
    proptest::collection::vec((key, value), 0..4).prop_map(|kv| {
        if kv.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = kv.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("?{}", pairs.join("&"))
        }
    })
}

/// A JSON object with the fields the endpoints read, and arbitrary values.
fn endpoint_body() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just("timeout"),
        Just("duration"),
        Just("autoPause"),
        Just("memory"),
        Just("requireHealthyGuest"),
        Just("name"),
        Just("tags"),
        Just("target"),
        Just("public"),
        Just("steps"),
        Just("fromTemplate"),
        Just("other"),
    ];
    let typed = prop_oneof![
        (-5i64..4000).prop_map(Value::from),
        any::<bool>().prop_map(Value::Bool)
    ];
    let value = prop_oneof![3 => typed, 1 => json_value()];
    prop_oneof![
        2 => network_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        6 => proptest::collection::vec((field, value), 0..3).prop_map(|kv| {
            serde_json::to_vec(&Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())).unwrap()
        }),
        1 => Just(Vec::new()),
        1 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
    ]
}

#[test]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
fn endpoints_answer_client_garbage_with_4xx() {
    let (target, live, _) = with_sandbox();
    let strategy = (endpoint(&live), query(&live), endpoint_body());
    fuzz(
        &target,
        2000,
        strategy,
        |target, ((method, path, has_body), query, body)| {
            let body = if has_body { body } else { Vec::new() };
            let reply = target.send(
                &method,
                &format!("{path}{query}"),
                &[("content-type", b"application/json".to_vec())],
                body,
            );
            check_rest_reply(&reply)?;
            prop_assert_eq!(target.listed()?, vec![live.clone()]);
            Ok(())
        },
    );
}

/// One live sandbox on a server of its own: the server, the sandbox's id and envd token.
fn with_sandbox() -> (Target, String, String) {
    let target = Target::start();
    let reply = target.json(&Method::POST, "/sandboxes", &json!({"templateID": "base"}));
    assert_eq!(reply.status, 201, "{}", reply.text());
    let created: Value = serde_json::from_slice(&reply.body).unwrap();
    let id = created["sandboxID"].as_str().unwrap().to_owned();
    let token = created["envdAccessToken"].as_str().unwrap().to_owned();
    (target, id, token)
}

/// Pre-signed `/files` URLs, routed by their signature alone: valid for the live sandbox's
/// token (for reading or writing, expiring or not), or not.
fn signed_files_url(token: &str) -> impl Strategy<Value = String> {
    let token = token.to_owned();
    (
        "/[a-z]{1,8}",
        any::<bool>(),
        proptest::option::of(prop_oneof![
            Just(4_102_444_800i64),
            Just(1i64),
            any::<i64>()
        ]),
        proptest::bool::weighted(0.7),
        "[A-Za-z0-9+/_]{0,12}",
    )
        .prop_map(move |(path, write, expiration, valid, garbage)| {
            let operation = if write {
                e2b_envd::signature::Operation::Write
            } else {
                e2b_envd::signature::Operation::Read
            };
            let signature = if valid {
                e2b_envd::signature::sign(&path, operation, "", &token, expiration)
            } else {
                format!("v1_{garbage}")
            };
            let mut url = format!(
                "/files?path={path}&signature={}",
                signature.replace('+', "%2B").replace('/', "%2F")
            );
            if let Some(expiration) = expiration {
                url.push_str(&format!("&signature_expiration={expiration}"));
            }
            url
        })
}

/// A routed reply: the sandbox's own answer (envd refuses without a token), E2B's documented
/// 502s, or the router's 4xx; errors always `{code, message}` JSON.
fn check_routed_reply(reply: &Reply, live_id: &str) -> Result<(), TestCaseError> {
    if reply.status == 502 {
        let body: Value = serde_json::from_slice(&reply.body).map_err(|e| {
            TestCaseError::fail(format!("502 body is not JSON ({e}): {}", reply.text()))
        })?;
        let message = body["message"].as_str().unwrap_or_default();
        prop_assert!(
            matches!(
                message,
                "The sandbox was not found" | "The sandbox is running but port is not open"
            ),
            "undocumented 502: {}",
            body
        );
        prop_assert_eq!(&body["code"], &json!(502));
        prop_assert!(body["sandboxId"].is_string(), "{}", body);
        if message == "The sandbox was not found" {
            prop_assert_ne!(
                body["sandboxId"].as_str(),
                Some(live_id),
                "a live sandbox was not found"
            );
        }
        return Ok(());
    }
    prop_assert!(
        reply.status < 500,
        "server error for client input: {} {}",
        reply.status,
        reply.text()
    );
    if reply.status >= 400 {
        let body: Value = serde_json::from_slice(&reply.body).map_err(|e| {
            TestCaseError::fail(format!(
                "HTTP {} body is not JSON ({e}): {:?}",
                reply.status,
                reply.text()
            ))
        })?;
        // envd's RPC errors carry Connect's string codes, the rest the HTTP status.
        prop_assert!(
            body["code"] == json!(reply.status) || body["code"].is_string(),
            "{}",
            body
        );
        prop_assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error without a message: {}",
            body
        );
    }
    Ok(())
}

/// Header values: the live id or port, other well-formed ones, garbage and raw bytes.
fn header_value(live: &str) -> impl Strategy<Value = Option<Vec<u8>>> {
    let live = live.to_owned();
    prop_oneof![
        1 => Just(None),
        3 => Just(Some(live.into_bytes())),
        1 => Just(Some(b"49983".to_vec())),
        1 => any::<u16>().prop_map(|p| Some(p.to_string().into_bytes())),
        1 => "i[a-z0-9]{20}".prop_map(|s| Some(s.into_bytes())),
        1 => "[ -~]{0,20}".prop_map(|s| Some(s.into_bytes())),
        1 => proptest::collection::vec(0x20u8..=0xff, 0..12)
            .prop_filter("not a header value", |v| v.iter().all(|b| *b != 0x7f))
            .prop_map(Some),
    ]
}

/// Host headers: `<port>-<id>.<domain>` forms around the live sandbox, and garbage.
fn host(live: &str) -> impl Strategy<Value = Option<String>> {
    let live = live.to_owned();
    prop_oneof![
        1 => Just(None),
        3 => (prop_oneof![Just(49983u16), any::<u16>()], proptest::option::of("-[a-z0-9]{1,8}"), proptest::option::of(":[0-9]{1,5}"))
            .prop_map(move |(port, client, listen)| Some(format!(
                "{port}-{live}{}.e2b.local{}",
                client.unwrap_or_default(),
                listen.unwrap_or_default()
            ))),
        1 => "[0-9]{1,6}-i[a-z0-9]{20}\\.[a-z.]{0,10}".prop_map(Some),
        1 => "[!-~]{1,30}".prop_map(Some),
    ]
}

#[test]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
fn routing_headers_and_hosts() {
    let (target, live, token) = with_sandbox();
    let path = prop_oneof![
        Just("/health".to_owned()),
        Just("/files?path=/etc/hostname".to_owned()),
        signed_files_url(&token),
        Just("/process.Process/List".to_owned()),
        Just("/init".to_owned()),
        Just("/envs".to_owned()),
        "/[a-z0-9./_-]{0,20}",
    ];
    let strategy = (
        header_value(&live),
        prop_oneof![
            1 => Just(None),
            3 => Just(Some(b"49983".to_vec())),
            1 => header_value(&live),
        ],
        host(&live),
        path,
        prop_oneof![Just(Method::GET), Just(Method::POST)],
    );
    fuzz(
        &target,
        1500,
        strategy,
        |target, (id, port, host, path, method)| {
            let mut headers: Vec<(&str, Vec<u8>)> = Vec::new();
            if let Some(id) = id {
                headers.push(("e2b-sandbox-id", id));
            }
            if let Some(port) = port {
                headers.push(("e2b-sandbox-port", port));
            }
            if let Some(host) = host {
                headers.push(("host", host.into_bytes()));
            }
            let body = if method == Method::POST {
                headers.push(("content-type", b"application/json".to_vec()));
                b"{}".to_vec()
            } else {
                Vec::new()
            };
            let reply = target.send(&method, &path, &headers, body);
            check_routed_reply(&reply, &live)
        },
    );
    // The sandbox the fuzz routed to is still the only one, and still serves.
    assert_eq!(target.listed().unwrap(), vec![live.clone()]);
    let health = target.send(
        &Method::GET,
        "/health",
        &[
            ("e2b-sandbox-id", live.clone().into_bytes()),
            ("e2b-sandbox-port", b"49983".to_vec()),
        ],
        Vec::new(),
    );
    assert_eq!(health.status, 204, "{}", health.text());
    let killed = target.send(
        &Method::DELETE,
        &format!("/sandboxes/{live}"),
        &[],
        Vec::new(),
    );
    assert_eq!(killed.status, 204, "{}", killed.text());
}

// Failures the fuzz found, kept as plain cases.

#[test]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
fn a_wrong_method_on_health_is_a_405_with_an_error_body() {
    let target = Target::start();
    let reply = target.send(&Method::POST, "/health", &[], Vec::new());
    assert_eq!(reply.status, 405);
    assert_eq!(
        serde_json::from_slice::<Value>(&reply.body).unwrap(),
        json!({"code": 405, "message": "method POST is not allowed on /health"})
    );
}

#[test]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
fn invalid_utf8_in_a_path_segment_is_a_json_400() {
    let target = Target::start();
    let reply = target.send(&Method::GET, "/sandboxes/%ff%fe", &[], Vec::new());
    assert_eq!(reply.status, 400, "{}", reply.text());
    check_error_body(&reply).unwrap();
}

/// Sends `request` as raw bytes and returns the status line's code and the body.
fn raw_http(target: &Target, request: &[u8]) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let addr = target.server().server().local_addr();
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).unwrap_or_default().to_owned();
    (status, body.to_owned())
}

#[test]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
fn a_100_kb_path_is_a_json_414() {
    let target = Target::start();
    let request = format!(
        "GET /sandboxes/{} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(100 * 1024),
        target.server().key
    );
    let (status, body) = raw_http(&target, request.as_bytes());
    assert_eq!(status, "414", "{body}");
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(body["code"], 414, "{body}");
}

#[test]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
fn malformed_http_gets_an_error_body() {
    let target = Target::start();
    let (status, body) = raw_http(&target, b"NOT HTTP AT ALL\r\n\r\n");
    assert_eq!(status, "400", "{body}");
    let body: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    assert_eq!(body["code"], 400, "{body}");
}

#[test]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
fn env_var_keys_with_nul_or_equals_are_refused_at_create() {
    let target = Target::start();
    for key in ["A=B", "A\0B"] {
        let reply = target.json(
            &Method::POST,
            "/sandboxes",
            &json!({"templateID": "base", "envVars": {key: "1"}}),
        );
        if reply.status == 201 {
            let created: Value = serde_json::from_slice(&reply.body).unwrap();
            target.kill(created["sandboxID"].as_str().unwrap()).unwrap();
        }
        assert_eq!(target.listed().unwrap(), Vec::<String>::new());
        assert_eq!(reply.status, 400, "envVars key {key:?}: {}", reply.text());
        check_error_body(&reply).unwrap();
    }
}

/// A build step as the SDKs send it, with known and unknown types and odd arguments.
fn build_step() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        4 => "(RUN|COPY|ENV|WORKDIR|USER)",
        1 => "[A-Za-z]{0,8}",
    ];
    let arg = prop_oneof![
        4 => "(true|exit 3|echo x >&2|false|touch f|[a-z ]{0,12})",
        1 => "(\\.\\./[a-z]{1,4}|/[a-z/]{0,12}|[a-z]{1,6}|0[0-7]{3}|root|user|nobody|[0-9]{1,5})",
        1 => "\\PC{0,16}",
    ];
    let hash = prop_oneof![
        Just(Value::Null),
        "[0-9a-f]{64}".prop_map(Value::from),
        "[0-9a-zA-Z]{0,70}".prop_map(Value::from),
    ];
    (
        kind,
        proptest::collection::vec(arg, 0..5),
        hash,
        any::<bool>(),
    )
        .prop_map(|(kind, args, hash, force)| {
            let mut step = json!({"type": kind, "args": args, "force": force});
            if !hash.is_null() {
                step["filesHash"] = hash;
            }
            step
        })
}

#[test]
#[ignore = "needs root: builds run in sandboxes (namespaces, mounts, cgroups)"]
fn build_requests_are_refused_with_4xx_or_run_to_an_end() {
    let target = Target::start();
    let base = prop_oneof![
        Just(json!({"fromTemplate": "base"})),
        "[a-z:0-9.]{0,12}".prop_map(|t| json!({"fromTemplate": t})),
        // Only references that fail to parse, or name a closed port on loopback: a fuzzed
        // name must never send a pull to a real registry.
        "[A-Z /:]{1,16}".prop_map(|i| json!({"fromImage": i})),
        "[a-z/0-9]{0,12}(:[a-z0-9]{1,4})?"
            .prop_map(|i| json!({"fromImage": format!("127.0.0.1:1/{i}")})),
        Just(json!({"fromTemplate": "base", "fromImage": "e2bdev/base"})),
        Just(json!({})),
    ];
    let strategy = (
        base,
        proptest::collection::vec(build_step(), 0..4),
        any::<bool>(),
        prop_oneof![Just(Value::Null), "[a-z ]{0,10}".prop_map(Value::from)],
    );
    fuzz(
        &target,
        60,
        strategy,
        |target, (mut body, steps, force, ready)| {
            let reply = target.json(&Method::POST, "/v3/templates", &json!({"name": "fuzzed"}));
            prop_assert_eq!(reply.status, 202, "{}", reply.text());
            let created: Value = serde_json::from_slice(&reply.body).unwrap();
            let (id, build) = (
                created["templateID"].as_str().unwrap().to_owned(),
                created["buildID"].as_str().unwrap().to_owned(),
            );
            body["steps"] = Value::from(steps);
            body["force"] = Value::Bool(force);
            if !ready.is_null() {
                body["readyCmd"] = ready;
            }
            let reply = target.json(
                &Method::POST,
                &format!("/v2/templates/{id}/builds/{build}"),
                &body,
            );
            check_rest_reply(&reply)?;
            if reply.status == 202 {
                // A started build ends, ready or failed, and leaves no build sandbox behind.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                loop {
                    let r = target.send(
                        &Method::GET,
                        &format!("/templates/{id}/builds/{build}/status"),
                        &[],
                        Vec::new(),
                    );
                    prop_assert_eq!(r.status, 200, "{}", r.text());
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    if matches!(v["status"].as_str(), Some("ready" | "error")) {
                        break;
                    }
                    prop_assert!(
                        std::time::Instant::now() < deadline,
                        "the build did not end: {}",
                        v
                    );
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                let sandboxes = target.server().dir.path().join("sandboxes");
                prop_assert_eq!(std::fs::read_dir(sandboxes).map_or(0, Iterator::count), 0);
            }
            prop_assert_eq!(target.listed()?, Vec::<String>::new());
            Ok(())
        },
    );
}

/// A path for the volume content API: ordinary, traversing (`..`, absolute host paths,
/// escaped), odd (NUL, long, empty), each naming a file only this test writes.
fn volume_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => "[a-z]{1,6}",
        2 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just("%2e%2e".to_owned()),
        1 => Just("%00".to_owned()),
        1 => Just("".to_owned()),
        1 => "[a-z]{300}",
        1 => Just("tmp".to_owned()),
        1 => Just("etc".to_owned()),
    ];
    (any::<bool>(), proptest::collection::vec(segment, 0..5)).prop_map(|(absolute, parts)| {
        let joined = parts.join("/");
        let lead = if absolute { "/" } else { "" };
        format!("{lead}{joined}/{FUZZ_MARK}")
    })
}

/// The file name every write of the volume fuzz ends in: found anywhere outside the
/// volume, it escaped.
const FUZZ_MARK: &str = "e2b-volume-fuzz-mark";

/// Every file named [`FUZZ_MARK`] under `dir`, at most `depth` levels down (not following
/// links), but not under `skip`.
fn marks_under(
    dir: &std::path::Path,
    depth: usize,
    skip: &std::path::Path,
) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![(dir.to_path_buf(), depth)];
    while let Some((d, left)) = todo.pop() {
        if d == skip {
            continue;
        }
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() && left > 0 => todo.push((path, left - 1)),
                _ if entry.file_name() == FUZZ_MARK => found.push(path),
                _ => {}
            }
        }
    }
    found
}

#[test]
#[ignore = "needs root: volumes are ext4 images on loop devices"]
fn the_volume_content_api_answers_garbage_with_4xx_and_writes_only_inside_the_volume() {
    let target = Target::start();
    let reply = target.json(&Method::POST, "/volumes", &json!({"name": "fuzz"}));
    assert_eq!(reply.status, 201, "{}", reply.text());
    let volume: Value = serde_json::from_slice(&reply.body).unwrap();
    let (id, token) = (
        volume["volumeID"].as_str().unwrap().to_owned(),
        volume["token"].as_str().unwrap().to_owned(),
    );
    let endpoint = prop_oneof![
        Just((Method::GET, "dir")),
        Just((Method::POST, "dir")),
        Just((Method::GET, "path")),
        Just((Method::PATCH, "path")),
        Just((Method::DELETE, "path")),
        Just((Method::GET, "file")),
        Just((Method::PUT, "file")),
    ];
    let extra = proptest::collection::vec(
        (
            prop_oneof![
                Just("depth"),
                Just("uid"),
                Just("gid"),
                Just("mode"),
                Just("force"),
                Just("other")
            ],
            prop_oneof!["-?[0-9]{0,12}", "(true|false|yes)", "[a-z%]{0,6}"],
        ),
        0..3,
    );
    let auth = prop_oneof![
        6 => Just(Some(format!("Bearer {token}"))),
        1 => Just(None),
        1 => Just(Some("Bearer wrong".to_owned())),
        1 => Just(Some(token.clone())),
    ];
    let strategy = (
        endpoint,
        volume_path(),
        extra,
        auth,
        proptest::collection::vec(any::<u8>(), 0..32),
    );
    let data_dir = target.server().dir.path().to_path_buf();
    fuzz(
        &target,
        300,
        strategy,
        |target, ((method, kind), path, extra, auth, body)| {
            let mut query = format!("path={path}");
            for (k, v) in extra {
                query.push_str(&format!("&{k}={v}"));
            }
            let mut headers = vec![("content-type", b"application/octet-stream".to_vec())];
            if let Some(a) = auth {
                headers.push(("authorization", a.into_bytes()));
            }
            let reply = target.send(
                &method,
                &format!("/volumecontent/{id}/{kind}?{query}"),
                &headers,
                body,
            );
            prop_assert!(
                reply.status < 500 || reply.status == 507,
                "server error for client input: {} {}",
                reply.status,
                reply.text()
            );
            if reply.status >= 400 {
                // The content API's errors carry the status as a string, as E2B's SDKs read it.
                let body: Value = serde_json::from_slice(&reply.body).map_err(|e| {
                    TestCaseError::fail(format!("HTTP {} body is not JSON ({e})", reply.status))
                })?;
                prop_assert_eq!(
                    &body["code"],
                    &Value::from(reply.status.to_string()),
                    "{}",
                    body
                );
                prop_assert!(
                    body["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "{}",
                    body
                );
            }
            // Nothing written outside the volume's own filesystem: a path of at most 4
            // directories before the mark that climbed out of it would land at most 4 levels
            // up and 3 down.
            let volume_root = data_dir.join("volumes").join(&id).join("disk");
            let escaped: Vec<_> = volume_root
                .ancestors()
                .skip(1)
                .take(4)
                .flat_map(|d| marks_under(d, 3, &volume_root))
                .collect();
            prop_assert!(
                escaped.is_empty(),
                "written outside the volume: {escaped:?}"
            );
            Ok(())
        },
    );
}
