//! The exact requests the SDK sends, checked against a recording server that answers as E2B's
//! API and envd do (`docs/control-plane.md`, `docs/envd.md`).

mod support;

use std::time::Duration;

use e2b::{
    ALL_TRAFFIC, ConnectionConfig, EgressProxy, EgressProxyTls, NetworkConfig, NetworkRule,
    NetworkUpdate, OnTimeout, PauseMode, RunOptions, Sandbox, SandboxQuery, SandboxState,
    WriteEntry,
};
use futures_util::TryStreamExt as _;
use serde_json::json;

const UA: &str = concat!("e2b-rust-sdk/", env!("CARGO_PKG_VERSION"));

fn config(server: &support::recording::Server) -> ConnectionConfig {
    ConnectionConfig::new()
        .with_api_key("e2b_0123abcd")
        .with_api_url(&server.base)
        .with_sandbox_url(&server.base)
}

#[tokio::test]
async fn create_sends_new_sandbox_json_with_key_and_user_agent() {
    let server = support::recording::start().await;
    let sbx = Sandbox::builder()
        .config(config(&server))
        .template("my-template")
        .timeout(Duration::from_secs(120))
        .metadata("k", "v")
        .env("A", "1")
        .allow_internet_access(false)
        .create()
        .await
        .unwrap();
    assert_eq!(sbx.sandbox_id(), "sbx1");
    assert_eq!(sbx.envd_version(), "0.6.13");
    assert_eq!(sbx.sandbox_domain(), "e2b.app");
    assert_eq!(sbx.get_host(3000), "3000-sbx1.e2b.app");

    let r = server.log.find("POST", "/v2/sandboxes");
    assert_eq!(r.header("x-api-key"), Some("e2b_0123abcd"));
    let key = r.header("idempotency-key").unwrap();
    assert!((1..=255).contains(&key.len()));
    assert!(
        key.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    );
    assert_eq!(r.header("user-agent"), Some(UA));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["templateID"], "my-template");
    assert_eq!(body["timeout"], 120);
    // v2 creates are always secured: there is no `secure` field.
    assert!(body.get("secure").is_none());
    assert_eq!(body["allow_internet_access"], false);
    assert_eq!(body["metadata"], serde_json::json!({"k": "v"}));
    assert_eq!(body["envVars"], serde_json::json!({"A": "1"}));
    assert_eq!(body["autoPause"], false);
}

#[tokio::test]
async fn lifecycle_options_become_auto_pause_fields_and_pause_sends_memory() {
    let server = support::recording::start().await;
    let create = |on_timeout, auto_resume| {
        Sandbox::builder()
            .config(config(&server))
            .lifecycle(on_timeout, auto_resume)
            .create()
    };
    let sbx = create(OnTimeout::Pause(PauseMode::Full), true)
        .await
        .unwrap();
    let body = server.log.find("POST", "/v2/sandboxes").json();
    assert_eq!(
        (
            &body["autoPause"],
            &body["autoPauseMemory"],
            &body["autoResume"]
        ),
        (&json!(true), &json!(true), &json!({"enabled": true}))
    );
    server.log.clear();
    create(OnTimeout::Pause(PauseMode::Filesystem), false)
        .await
        .unwrap();
    let body = server.log.find("POST", "/v2/sandboxes").json();
    assert_eq!(
        (&body["autoPause"], &body["autoPauseMemory"]),
        (&json!(true), &json!(false))
    );
    assert!(body.get("autoResume").is_none(), "{body}");
    server.log.clear();
    sbx.pause_with(PauseMode::Filesystem).await.unwrap();
    let r = server.log.find("POST", "/sandboxes/sbx1/pause");
    assert_eq!(r.json(), json!({"memory": false}));
}

/// The create body's `network` and `allow_internet_access`, byte for byte as e2b 2.63 (PyPI)
/// sends them for the same options (captured from `Sandbox.create` against a local server).
#[tokio::test]
async fn create_sends_the_network_as_python_2_63_does() {
    let server = support::recording::start().await;
    let network = NetworkConfig::new()
        .allow_out(["api.example.com", "*.pypi.org", "10.1.2.0/24"])
        .deny_out([ALL_TRAFFIC])
        .dns_servers(Vec::<String>::new())
        .egress_proxy(
            EgressProxy::new("proxy.example.com:1080")
                .username("u")
                .password("p")
                .tls(
                    EgressProxyTls::new()
                        .server_name("socks.internal")
                        .ca_cert("PEM"),
                ),
        )
        .rules(
            "api.example.com",
            [
                NetworkRule::new().header("Authorization", "Bearer k"),
                NetworkRule::new(),
            ],
        )
        .allow_public_traffic(false)
        .mask_request_host("${PORT}-myapp.example.com")
        .https_ports([8443]);
    let sbx = Sandbox::builder()
        .config(config(&server))
        .template("private")
        .allow_internet_access(false)
        .network(network)
        .create()
        .await
        .unwrap();
    assert_eq!(sbx.traffic_access_token(), Some("traffic-tok"));
    let body = server.log.find("POST", "/v2/sandboxes").json();
    assert_eq!(body["allow_internet_access"], false);
    let py: serde_json::Value = serde_json::from_str(
        r#"{"allowPublicTraffic":false,"allowOut":["api.example.com","*.pypi.org","10.1.2.0/24"],"denyOut":["0.0.0.0/0"],"dnsServers":[],"egressProxy":{"address":"proxy.example.com:1080","username":"u","password":"p","tls":{"enabled":true,"serverName":"socks.internal","caCert":"PEM"}},"maskRequestHost":"${PORT}-myapp.example.com","httpsPorts":[8443],"rules":{"api.example.com":[{"transform":{"headers":{"Authorization":"Bearer k"}}},{}]}}"#,
    )
    .unwrap();
    assert_eq!(body["network"], py);

    // py `tls=True`: TLS with the system trust store.
    server.log.clear();
    Sandbox::builder()
        .config(config(&server))
        .network(
            NetworkConfig::new().egress_proxy(EgressProxy::new("h:1").tls(EgressProxyTls::new())),
        )
        .create()
        .await
        .unwrap();
    let body = server.log.find("POST", "/v2/sandboxes").json();
    assert_eq!(
        body["network"],
        serde_json::json!({"egressProxy": {"address": "h:1", "tls": {"enabled": true}}})
    );
    assert!(body.get("allow_internet_access").is_none(), "{body}");

    // Nothing set: neither field is sent, as py leaves both out.
    server.log.clear();
    Sandbox::builder()
        .config(config(&server))
        .network(NetworkConfig::new())
        .create()
        .await
        .unwrap();
    let body = server.log.find("POST", "/v2/sandboxes").json();
    assert!(body.get("network").is_none(), "{body}");
    assert!(body.get("allow_internet_access").is_none(), "{body}");

    // A port the wire cannot carry is refused before any request.
    server.log.clear();
    let err = Sandbox::builder()
        .config(config(&server))
        .network(NetworkConfig::new().https_ports([0]))
        .create()
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
    assert_eq!(
        err.to_string(),
        "network https_ports: 0 is not a port (1 to 65535)"
    );
    assert!(server.log.paths().is_empty());
}

/// `PUT /sandboxes/{id}/network` with the bodies e2b 2.63 sends (captured as above; key order
/// aside): only what is set, the rest being cleared by the server, and
/// `allow_internet_access` in snake_case.
#[tokio::test]
async fn update_network_replaces_the_whole_config() {
    let server = support::recording::start().await;
    let config = config(&server);
    let sbx = Sandbox::builder()
        .config(config.clone())
        .create()
        .await
        .unwrap();
    sbx.update_network(
        NetworkUpdate::new()
            .allow_out(["pypi.org"])
            .deny_out([ALL_TRAFFIC])
            .rules("pypi.org", [NetworkRule::new().header("X", "y")])
            .egress_proxy(EgressProxy::new("h:1"))
            .dns_servers(["1.1.1.1"])
            .allow_internet_access(false),
    )
    .await
    .unwrap();
    let r = server.log.find("PUT", "/sandboxes/sbx1/network");
    assert_eq!(r.header("x-api-key"), Some("e2b_0123abcd"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let py: serde_json::Value = serde_json::from_str(
        r#"{"allowOut":["pypi.org"],"denyOut":["0.0.0.0/0"],"dnsServers":["1.1.1.1"],"egressProxy":{"address":"h:1"},"rules":{"pypi.org":[{"transform":{"headers":{"X":"y"}}}]},"allow_internet_access":false}"#,
    )
    .unwrap();
    assert_eq!(r.json(), py);

    // An empty update is `{}`: every rule is cleared.
    server.log.clear();
    Sandbox::update_network_by_id(&config, "sbx1", NetworkUpdate::new())
        .await
        .unwrap();
    assert_eq!(
        server
            .log
            .find("PUT", "/sandboxes/sbx1/network")
            .body
            .as_ref(),
        b"{}"
    );

    let err = Sandbox::update_network_by_id(&config, "missing", NetworkUpdate::new())
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert_eq!(err.to_string(), "Sandbox missing not found");
    assert_eq!(err.http_status(), Some(404));

    // As py and js: a 400 is the generic class with the server's message.
    let err = Sandbox::update_network_by_id(
        &config,
        "rejects",
        NetworkUpdate::new().deny_out(["example.com"]),
    )
    .await
    .unwrap_err();
    assert!(err.is_sandbox(), "{err}");
    assert_eq!(
        err.to_string(),
        r#"400: denyOut: "example.com" is not a CIDR or IP address"#
    );
    assert_eq!(err.http_status(), Some(400));

    let err = Sandbox::update_network_by_id(&config, "a/b", NetworkUpdate::new())
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument(), "{err}");
}

#[tokio::test]
async fn get_info_reads_the_network() {
    let server = support::recording::start().await;
    let info = Sandbox::get_info_by_id(&config(&server), "net1")
        .await
        .unwrap();
    assert_eq!(info.allow_internet_access, Some(false));
    let network = info.network.expect("network");
    assert_eq!(network.allow_out, ["api.example.com", "*.pypi.org"]);
    assert_eq!(network.deny_out, [ALL_TRAFFIC]);
    assert_eq!(network.dns_servers, Some(vec![]));
    assert_eq!(network.allow_public_traffic, Some(false));
    assert_eq!(
        network.mask_request_host.as_deref(),
        Some("${PORT}-myapp.example.com")
    );
    assert_eq!(network.https_ports, [8443]);
    let rules = &network.rules["api.example.com"];
    assert_eq!(rules.len(), 2);
    assert_eq!(
        rules[0].transform.as_ref().unwrap().headers["Authorization"],
        "Bearer k"
    );
    assert_eq!(rules[1].transform, None);
    let proxy = network.egress_proxy.expect("egress proxy");
    assert_eq!(proxy.address, "proxy.example.com:1080");
    assert_eq!(proxy.username.as_deref(), Some("u"));
    assert_eq!(
        proxy.tls.and_then(|tls| tls.server_name).as_deref(),
        Some("socks.internal")
    );

    // A listed sandbox has no network; nor does a detail without one.
    let info = Sandbox::get_info_by_id(&config(&server), "sbx1")
        .await
        .unwrap();
    assert_eq!(info.network, None);
}

#[tokio::test]
async fn a_busy_create_is_retried_with_the_same_idempotency_key() {
    let server = support::recording::start().await;
    let sbx = Sandbox::builder()
        .config(config(&server))
        .template("busy")
        .create()
        .await
        .unwrap();
    assert_eq!(sbx.sandbox_id(), "sbx1");
    let creates: Vec<_> = server
        .log
        .all()
        .into_iter()
        .filter(|r| r.path == "/v2/sandboxes")
        .collect();
    assert_eq!(creates.len(), 3);
    let key = creates[0].header("idempotency-key").unwrap();
    assert!(
        creates
            .iter()
            .all(|r| r.header("idempotency-key") == Some(key))
    );

    // A second create is another sandbox: another key.
    server.log.clear();
    Sandbox::builder()
        .config(config(&server))
        .template("busy")
        .create()
        .await
        .unwrap();
    let other = server.log.find("POST", "/v2/sandboxes");
    assert_ne!(other.header("idempotency-key"), Some(key));
}

#[tokio::test]
async fn should_retry_false_is_not_retried() {
    let server = support::recording::start().await;
    let err = Sandbox::builder()
        .config(config(&server))
        .template("refused")
        .create()
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "503: do not retry");
    assert_eq!(server.log.paths(), ["POST /v2/sandboxes"]);
}

#[tokio::test]
async fn a_retry_after_beyond_the_request_timeout_is_not_waited_for() {
    let server = support::recording::start().await;
    let err = Sandbox::builder()
        .config(config(&server))
        .template("later")
        .create()
        .await
        .unwrap_err();
    assert!(err.is_rate_limit(), "{err}");
    assert_eq!(server.log.paths(), ["POST /v2/sandboxes"]);
}

#[tokio::test]
async fn lifecycle_calls_and_their_statuses() {
    let server = support::recording::start().await;
    let config = config(&server);
    let sbx = Sandbox::builder()
        .config(config.clone())
        .timeout(Duration::from_secs(60))
        .connect("sbx1")
        .await
        .unwrap();
    let r = server.log.find("POST", "/v2/sandboxes/sbx1/connect");
    assert_eq!(r.json(), serde_json::json!({"timeout": 60}));

    let err = Sandbox::builder()
        .config(config.clone())
        .connect("gone")
        .await
        .unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "Paused sandbox gone not found");

    sbx.set_timeout(Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        server.log.find("POST", "/sandboxes/sbx1/timeout").json(),
        serde_json::json!({"timeout": 30})
    );
    assert!(sbx.pause().await.unwrap());
    assert_eq!(
        server.log.find("POST", "/sandboxes/sbx1/pause").json(),
        serde_json::json!({"memory": true})
    );
    assert!(!Sandbox::pause_by_id(&config, "paused").await.unwrap());

    let info = sbx.get_info().await.unwrap();
    assert_eq!(info.sandbox_id, "sbx1");
    assert_eq!(info.state, SandboxState::Running);
    assert_eq!(info.cpu_count, 2);
    assert_eq!(info.allow_internet_access, Some(true));
    let err = Sandbox::get_info_by_id(&config, "missing")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "Sandbox missing not found");
    let err = Sandbox::get_info_by_id(&config, "unauthorized")
        .await
        .unwrap_err();
    assert!(err.is_authentication());
    assert_eq!(
        err.to_string(),
        "401: Unauthorized, please check your credentials. - Invalid API key"
    );

    assert!(sbx.kill().await.unwrap());
    assert!(!Sandbox::kill_by_id(&config, "other").await.unwrap());
    let kill = server.log.find("DELETE", "/sandboxes/sbx1");
    assert_eq!(kill.header("x-api-key"), Some("e2b_0123abcd"));

    let err = Sandbox::kill_by_id(&config, "").await.unwrap_err();
    assert!(err.is_invalid_argument());
    let err = Sandbox::builder()
        .config(config.clone())
        .timeout(Duration::ZERO)
        .create()
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument());
}

#[tokio::test]
async fn list_pages_with_query_and_next_token() {
    let server = support::recording::start().await;
    let query = SandboxQuery::new()
        .metadata("k", "v")
        .state(SandboxState::Running)
        .state(SandboxState::Paused)
        .limit(2);
    let all: Vec<_> = Sandbox::list(&config(&server), query)
        .unwrap()
        .into_stream()
        .try_collect()
        .await
        .unwrap();
    let ids: Vec<_> = all.iter().map(|s| s.sandbox_id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let queries: Vec<_> = server
        .log
        .all()
        .into_iter()
        .filter(|r| r.path == "/v2/sandboxes")
        .map(|r| r.query.unwrap_or_default())
        .collect();
    assert_eq!(
        queries,
        [
            "limit=2&metadata=k%3Dv&state=running%2Cpaused",
            "limit=2&metadata=k%3Dv&nextToken=page2&state=running%2Cpaused"
        ]
    );
    let err = Sandbox::list(&config(&server), SandboxQuery::new().limit(0))
        .unwrap()
        .next_items()
        .await
        .unwrap_err();
    assert!(err.is_invalid_argument());
}

#[tokio::test]
async fn envd_requests_carry_connect_and_sandbox_headers() {
    let server = support::recording::start().await;
    let sbx = Sandbox::builder()
        .config(config(&server))
        .create()
        .await
        .unwrap();
    server.log.clear();

    // Foreground: 60 s stream deadline, keepalive, no auth header without a user.
    let result = sbx
        .commands()
        .run("echo hi", RunOptions::new())
        .await
        .unwrap();
    assert_eq!(result.stdout, "hi");
    let start = server.log.find("POST", "/process.Process/Start");
    assert_eq!(
        start.header("content-type"),
        Some("application/connect+json")
    );
    assert_eq!(start.header("connect-protocol-version"), Some("1"));
    assert_eq!(start.header("connect-timeout-ms"), Some("60000"));
    assert_eq!(start.header("keepalive-ping-interval"), Some("50"));
    assert_eq!(start.header("e2b-sandbox-id"), Some("sbx1"));
    assert_eq!(start.header("e2b-sandbox-port"), Some("49983"));
    assert_eq!(start.header("x-access-token"), Some("tok-123"));
    assert_eq!(start.header("user-agent"), Some(UA));
    assert_eq!(start.header("authorization"), None);
    assert_eq!(
        start.header("x-api-key"),
        None,
        "the API key never goes to envd"
    );
    assert_eq!(
        start.envelope_json(),
        serde_json::json!({"process": {"cmd": "/bin/bash", "args": ["-l", "-c", "echo hi"]}, "stdin": false})
    );

    // Background: no deadline at all; a user becomes Basic auth.
    server.log.clear();
    let mut h = sbx
        .commands()
        .run_background(
            "echo hi",
            RunOptions::new().user("root").env("K", "V").cwd("/tmp"),
        )
        .await
        .unwrap();
    h.wait().await.unwrap();
    let start = server.log.find("POST", "/process.Process/Start");
    assert_eq!(start.header("connect-timeout-ms"), None);
    assert_eq!(start.header("authorization"), Some("Basic cm9vdDo="));
    assert_eq!(
        start.envelope_json()["process"],
        serde_json::json!({"cmd": "/bin/bash", "args": ["-l", "-c", "echo hi"], "envs": {"K": "V"}, "cwd": "/tmp"})
    );

    // Unary: application/json with the request timeout as Connect-Timeout-Ms.
    let info = sbx.files().user("user").get_info("a.txt").await.unwrap();
    assert_eq!(info.size, 3);
    let stat = server.log.find("POST", "/filesystem.Filesystem/Stat");
    assert_eq!(stat.header("content-type"), Some("application/json"));
    assert_eq!(stat.header("connect-timeout-ms"), Some("60000"));
    assert_eq!(stat.header("authorization"), Some("Basic dXNlcjo="));
    assert_eq!(stat.header("keepalive-ping-interval"), None);
    assert_eq!(stat.json(), serde_json::json!({"path": "a.txt"}));

    assert!(sbx.commands().kill(7).await.unwrap());
    assert_eq!(
        server
            .log
            .find("POST", "/process.Process/SendSignal")
            .json(),
        serde_json::json!({"process": {"pid": 7}, "signal": "SIGNAL_SIGKILL"})
    );

    let err = sbx.files().list("/nope", 1).await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), "path '/nope' does not exist");
}

#[tokio::test]
async fn uploads_multipart_and_octet_stream() {
    let server = support::recording::start().await;
    let sbx = Sandbox::builder()
        .config(config(&server))
        .create()
        .await
        .unwrap();
    server.log.clear();
    sbx.files()
        .write_files(vec![
            WriteEntry::new("/home/user/a.txt", "AAA"),
            WriteEntry::new("b/c.txt", "BB"),
        ])
        .await
        .unwrap();
    let r = server.log.find("POST", "/files");
    assert_eq!(r.query, None);
    assert_eq!(r.header("x-access-token"), Some("tok-123"));
    let ct = r.header("content-type").unwrap();
    let boundary = ct.strip_prefix("multipart/form-data; boundary=").expect(ct);
    let expected = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"/home/user/a.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nAAA\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b/c.txt\"\r\nContent-Type: application/octet-stream\r\n\r\nBB\r\n\
         --{boundary}--\r\n"
    );
    assert_eq!(String::from_utf8_lossy(&r.body), expected);

    server.log.clear();
    sbx.files()
        .user("user")
        .write("/home/user/a.txt", "x")
        .await
        .unwrap();
    let r = server.log.find("POST", "/files");
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(
        r.query.as_deref(),
        Some("path=%2Fhome%2Fuser%2Fa.txt&username=user")
    );
    assert_eq!(&r.body[..], b"x");

    server.log.clear();
    sbx.files()
        .metadata([("Team", "core")])
        .write("/home/user/a.txt", "x")
        .await
        .unwrap();
    let r = server.log.find("POST", "/files");
    assert_eq!(r.header("x-metadata-team"), Some("core"));
}

#[tokio::test]
async fn signed_urls() {
    let server = support::recording::start().await;
    let sbx = Sandbox::builder()
        .config(config(&server))
        .create()
        .await
        .unwrap();
    let url = sbx
        .download_url("/home/user/a.txt", Some("user"), None)
        .unwrap();
    // v1_ + base64(sha256("/home/user/a.txt:read:user:tok-123")), computed with Python.
    assert_eq!(
        url,
        format!(
            "{}/files?path=%2Fhome%2Fuser%2Fa.txt&username=user&signature=v1_{}",
            server.base, "WU421hL9oufM%2F6QQ4tu2j5JE6pCOVNqn8RZYrco28l8"
        )
    );
    let url = sbx.upload_url("/a", None, Some(60)).unwrap();
    let now = chrono::Utc::now().timestamp();
    let exp: i64 = url
        .rsplit("signature_expiration=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((now + 58..=now + 61).contains(&exp), "{url}");
    assert!(url.starts_with(&format!("{}/files?path=%2Fa&signature=v1_", server.base)));
}

#[tokio::test]
async fn a_stream_cut_mid_flight_becomes_timeout_after_the_health_probe() {
    let server = support::recording::start().await;
    let sbx = Sandbox::builder()
        .config(config(&server))
        .create()
        .await
        .unwrap();
    server.log.clear();
    let err = sbx
        .commands()
        .run("die", RunOptions::new())
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        err.to_string().ends_with(
            ": The sandbox was killed or reached its end of life while the request was in flight."
        ),
        "{err}"
    );
    let health = server.log.find("GET", "/health");
    assert_eq!(health.header("e2b-sandbox-id"), Some("sbx1"));
    // is_running says false for the same 502.
    assert!(!sbx.is_running().await.unwrap());
}

#[tokio::test]
async fn missing_api_key_is_an_authentication_error() {
    let err = Sandbox::builder()
        .config(ConnectionConfig::new().with_api_url("http://127.0.0.1:9"))
        .create()
        .await
        .unwrap_err();
    assert!(err.is_authentication(), "{err:?}");
    let debug = format!("{:?}", config_with_secret());
    assert!(!debug.contains("e2b_supersecret"));
}

fn config_with_secret() -> ConnectionConfig {
    ConnectionConfig::new().with_api_key("e2b_supersecret")
}

#[tokio::test]
async fn secrets_never_show_in_debug_or_errors() {
    let server = support::recording::start().await;
    let config = config(&server);
    let sbx = Sandbox::builder()
        .config(config.clone())
        .create()
        .await
        .unwrap();
    let shown = format!("{sbx:?} {config:?} {:?}", sbx.files());
    assert!(!shown.contains("tok-123"), "{shown}");
    assert!(!shown.contains("e2b_0123abcd"), "{shown}");
    let err = Sandbox::get_info_by_id(&config, "unauthorized")
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("e2b_0123abcd"), "{shown}");
}

#[tokio::test]
async fn the_kill_on_drop_guard_kills_and_plain_drop_does_not() {
    let server = support::recording::start().await;
    let sbx = Sandbox::builder()
        .config(config(&server))
        .create()
        .await
        .unwrap();
    drop(sbx.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !server.log.paths().iter().any(|p| p.starts_with("DELETE")),
        "{:?}",
        server.log.paths()
    );
    let guard = sbx.kill_on_drop();
    assert_eq!(guard.sandbox_id(), "sbx1");
    drop(guard);
    for _ in 0..50 {
        if server
            .log
            .paths()
            .iter()
            .any(|p| p == "DELETE /sandboxes/sbx1")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no DELETE after dropping the guard: {:?}",
        server.log.paths()
    );
}
