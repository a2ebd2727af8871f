//! The generated types against JSON bodies exactly as the official SDKs and E2B's API send
//! them (the field names and shapes of `openapi/e2b-api.yml`, as the official SDKs send them).

use e2b_api::types;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Deserializes `wire` into `T`, serializes it back, and returns both the value and the JSON
/// it produced.
fn round_trip<T: DeserializeOwned + Serialize>(wire: &Value) -> (T, Value) {
    let value: T = serde_json::from_value(wire.clone())
        .unwrap_or_else(|e| panic!("{wire} does not deserialize: {e}"));
    let back = serde_json::to_value(&value).expect("serialize");
    (value, back)
}

const TOKEN: &str = "2f0a4c1b9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";

#[test]
fn new_sandbox_as_the_python_sdk_sends_it() {
    // py `_create_sandbox`: timeout, secure and allow_internet_access always, `{}` maps.
    let wire = json!({
        "templateID": "base",
        "timeout": 300,
        "secure": true,
        "allow_internet_access": true,
        "metadata": {},
        "envVars": {},
    });
    let (new, back) = round_trip::<types::NewSandbox>(&wire);
    assert_eq!(new.template_id, "base");
    assert_eq!(new.timeout, 300);
    assert_eq!(new.secure, Some(true));
    assert_eq!(new.allow_internet_access, Some(true));
    assert_eq!(new.metadata.as_ref().map(|m| m.len()), Some(0));
    // The upstream defaults of the fields the SDK left out are filled in and sent explicitly,
    // which the server reads the same as their absence.
    assert!(!new.auto_pause);
    assert!(new.auto_pause_memory);
    let mut expected = wire.clone();
    expected["autoPause"] = json!(false);
    expected["autoPauseMemory"] = json!(true);
    assert_eq!(back, expected);
}

#[test]
fn new_sandbox_with_every_field() {
    let wire = json!({
        "templateID": "team/my-template:v2",
        "timeout": 60,
        "autoPause": true,
        "autoPauseMemory": false,
        "autoResume": {"enabled": true},
        "secure": false,
        "allow_internet_access": false,
        "network": {
            "allowPublicTraffic": false,
            "allowOut": ["8.8.8.8/32", "*.example.com"],
            "denyOut": ["0.0.0.0/0"],
            "dnsServers": [],
            "egressProxy": {
                "address": "proxy.example.com:1080",
                "username": "u",
                "password": "p",
                "tls": {"enabled": true, "serverName": "proxy.internal", "caCert": "-----BEGIN CERTIFICATE-----"},
            },
            "maskRequestHost": "${PORT}-x.example.com",
            "httpsPorts": [3000, 8443],
            "rules": {"api.example.com": [{"transform": {"headers": {"Authorization": "Bearer x"}}}, {}]},
        },
        "metadata": {"sandbox_test_id": "test_ab12", "user": "a b"},
        "envVars": {"FOO": "bar", "EMPTY": ""},
        "mcp": {"github": {"token": "t"}, "exa": {}},
        "iam": {"tokens": {"aws": {"audience": "sts.amazonaws.com", "tokenType": "JWT-SVID"}}},
        "volumeMounts": [{"name": "vol", "path": "/mnt/vol"}],
    });
    let (new, back) = round_trip::<types::NewSandbox>(&wire);
    assert_eq!(back, wire);
    let network = new.network.expect("network");
    assert_eq!(network.allow_public_traffic, Some(false));
    // `[]` (no DNS server) stays apart from an absent list (the default server).
    assert_eq!(network.dns_servers, Some(vec![]));
    assert_eq!(
        network
            .https_ports
            .iter()
            .map(|p| p.get())
            .collect::<Vec<_>>(),
        [3000, 8443]
    );
    let proxy = network
        .egress_proxy
        .and_then(|p| p.0)
        .expect("egress proxy");
    assert_eq!(proxy.address, "proxy.example.com:1080");
    assert_eq!(proxy.username.as_deref().map(String::as_str), Some("u"));
    let tls = proxy.tls.and_then(|t| t.0).expect("tls");
    assert!(tls.enabled);
    assert_eq!(tls.server_name.as_deref(), Some("proxy.internal"));
    assert_eq!(new.volume_mounts[0].path, "/mnt/vol");
    assert_eq!(
        new.auto_resume,
        Some(types::SandboxAutoResumeConfig { enabled: true })
    );
}

#[test]
fn new_sandbox_needs_a_template_and_keeps_socks_limits() {
    let err = serde_json::from_value::<types::NewSandbox>(json!({"timeout": 5})).unwrap_err();
    assert!(
        err.to_string().contains("missing field `templateID`"),
        "{err}"
    );

    // Upstream caps the SOCKS5 user name at 255 bytes (RFC 1929).
    let long = "u".repeat(256);
    let err = serde_json::from_value::<types::NewSandbox>(json!({
        "templateID": "base",
        "network": {"egressProxy": {"address": "h:1", "username": long}},
    }))
    .unwrap_err();
    assert!(err.to_string().contains("longer than 255"), "{err}");
}

#[test]
fn network_update_as_the_python_sdk_sends_it() {
    // py `build_network_update_body`: only the fields given, `allow_internet_access` in
    // snake_case, `[]` kept as sent.
    let wire = json!({
        "allowOut": ["api.example.com"],
        "denyOut": ["0.0.0.0/0"],
        "dnsServers": ["1.1.1.1"],
        "egressProxy": {"address": "10.0.0.1:1080", "tls": {"enabled": true}},
        "rules": {},
        "allow_internet_access": false,
    });
    let (update, back) = round_trip::<types::SandboxNetworkUpdateConfig>(&wire);
    assert_eq!(back, wire);
    assert_eq!(update.allow_internet_access, Some(false));
    assert_eq!(update.rules.map(|r| r.0.len()), Some(0));

    // An empty update is `{}`: it clears every rule on the server.
    let (empty, back) = round_trip::<types::SandboxNetworkUpdateConfig>(&json!({}));
    assert_eq!(back, json!({}));
    assert_eq!(empty.dns_servers, None);
    assert!(empty.egress_proxy.is_none());
}

#[test]
fn https_ports_are_tcp_ports() {
    for port in [0, 65536] {
        let err = serde_json::from_value::<types::SandboxNetworkConfig>(json!({
            "httpsPorts": [port],
        }))
        .unwrap_err();
        assert!(err.to_string().contains(&port.to_string()), "{err}");
    }
}

#[test]
fn new_sandbox_v2_defaults_the_timeout_to_300() {
    let (new, back) = round_trip::<types::NewSandboxV2>(&json!({"templateID": "base"}));
    assert_eq!(new.timeout, 300);
    assert_eq!(new.allow_internet_access, None);
    assert_eq!(
        back,
        json!({"templateID": "base", "timeout": 300, "autoPause": false, "autoPauseMemory": true})
    );
}

#[test]
fn sandbox_create_response() {
    let wire = json!({
        "templateID": "rki5dems9wqfm4r03t7g",
        "sandboxID": "iojbyrxp6ik2vhga55m7j",
        "alias": "base",
        "clientID": "6532622b",
        "envdVersion": "0.6.13",
        "envdAccessToken": TOKEN,
        "trafficAccessToken": "traffic-token",
        "domain": "e2b.app",
    });
    let (sandbox, back) = round_trip::<types::Sandbox>(&wire);
    assert_eq!(back, wire);
    assert_eq!(sandbox.sandbox_id, "iojbyrxp6ik2vhga55m7j");
    assert_eq!(*sandbox.envd_version, "0.6.13");
    assert_eq!(sandbox.envd_access_token.as_deref(), Some(TOKEN));
    assert_eq!(sandbox.domain.as_deref(), Some("e2b.app"));
}

#[test]
fn sandbox_create_response_with_nulls_and_unknown_fields() {
    // An unsecured sandbox on the default domain: no token, nullable fields null. Fields newer
    // servers add are ignored.
    let wire = json!({
        "templateID": "base",
        "sandboxID": "i1",
        "clientID": "6532622b",
        "envdVersion": "0.1.0",
        "trafficAccessToken": null,
        "domain": null,
        "someFutureField": {"x": 1},
    });
    let (sandbox, back) = round_trip::<types::Sandbox>(&wire);
    assert_eq!(sandbox.envd_access_token, None);
    assert_eq!(sandbox.traffic_access_token, None);
    assert_eq!(sandbox.domain, None);
    // Absent and null mean the same to the SDKs; absent is what goes back out.
    assert_eq!(
        back,
        json!({"templateID": "base", "sandboxID": "i1", "clientID": "6532622b", "envdVersion": "0.1.0"})
    );

    let err = serde_json::from_value::<types::Sandbox>(json!({
        "templateID": "base", "sandboxID": "i1", "clientID": "c",
    }))
    .unwrap_err();
    assert!(
        err.to_string().contains("missing field `envdVersion`"),
        "{err}"
    );
}

#[test]
fn listed_sandbox() {
    let wire = json!({
        "templateID": "base",
        "alias": "base",
        "sandboxID": "iojbyrxp6ik2vhga55m7j",
        "clientID": "6532622b",
        "startedAt": "2026-11-26T09:30:11.123456Z",
        "endAt": "2026-11-26T09:35:11.123456Z",
        "cpuCount": 2,
        "memoryMB": 512,
        "diskSizeMB": 0,
        "metadata": {"sandbox_test_id": "test_ab12"},
        "state": "paused",
        "envdVersion": "0.6.13",
        "volumeMounts": [],
    });
    let (listed, back) = round_trip::<types::ListedSandbox>(&wire);
    assert_eq!(listed.state, types::SandboxState::Paused);
    assert_eq!(listed.cpu_count.get(), 2);
    assert_eq!(*listed.memory_mb, 512);
    assert_eq!(
        (listed.end_at - listed.started_at).num_seconds(),
        300,
        "timestamps parse as RFC 3339"
    );
    // Empty `volumeMounts` is left out on the way back; everything else is byte-for-byte.
    let mut expected = wire.clone();
    expected.as_object_mut().unwrap().remove("volumeMounts");
    assert_eq!(back, expected);

    // cpuCount has `minimum: 1` upstream.
    let mut zero = wire.clone();
    zero["cpuCount"] = json!(0);
    assert!(serde_json::from_value::<types::ListedSandbox>(zero).is_err());
    let mut bad_state = wire;
    bad_state["state"] = json!("killed");
    let err = serde_json::from_value::<types::ListedSandbox>(bad_state).unwrap_err();
    assert!(
        err.to_string().contains("unknown variant `killed`"),
        "{err}"
    );
}

#[test]
fn sandbox_detail() {
    let wire = json!({
        "templateID": "base",
        "alias": "base",
        "sandboxID": "iojbyrxp6ik2vhga55m7j",
        "clientID": "6532622b",
        "startedAt": "2026-11-26T09:30:11Z",
        "endAt": "2026-11-26T09:35:11Z",
        "envdVersion": "0.6.13",
        "envdAccessToken": TOKEN,
        "allowInternetAccess": false,
        "domain": "e2b.app",
        "cpuCount": 2,
        "memoryMB": 512,
        "diskSizeMB": 10240,
        "metadata": {"k": "v"},
        "state": "running",
        "network": {"allowPublicTraffic": true, "allowOut": ["1.1.1.1"], "denyOut": ["0.0.0.0/0"]},
        "lifecycle": {"autoResume": false, "onTimeout": "pause"},
        "volumeMounts": [{"name": "vol", "path": "/mnt/vol"}],
    });
    let (detail, back) = round_trip::<types::SandboxDetail>(&wire);
    assert_eq!(back, wire);
    assert_eq!(detail.state, types::SandboxState::Running);
    assert_eq!(detail.allow_internet_access, Some(false));
    assert_eq!(
        detail.lifecycle,
        Some(types::SandboxLifecycle {
            auto_resume: false,
            on_timeout: types::SandboxOnTimeout::Pause,
        })
    );
    assert_eq!(
        detail
            .metadata
            .as_ref()
            .and_then(|m| m.get("k"))
            .map(String::as_str),
        Some("v")
    );

    // `allowInternetAccess: null` means "never set"; fields of newer servers are ignored.
    let mut newer = wire.clone();
    newer["allowInternetAccess"] = Value::Null;
    newer["envdUnresponsiveAtPause"] = json!(false);
    newer["pauseMode"] = json!("full");
    let detail: types::SandboxDetail = serde_json::from_value(newer).unwrap();
    assert_eq!(detail.allow_internet_access, None);
}

#[test]
fn sandbox_metrics() {
    let wire = json!([{
        "timestamp": "2026-11-26T09:30:15Z",
        "timestampUnix": 1795685415_i64,
        "cpuCount": 2,
        "cpuUsedPct": 12.5,
        "memUsed": 134217728_i64,
        "memTotal": 536870912_i64,
        "memCache": 4096,
        "diskUsed": 1073741824_i64,
        "diskTotal": 10737418240_i64,
    }]);
    let (metrics, back) = round_trip::<Vec<types::SandboxMetric>>(&wire);
    assert_eq!(back, wire);
    assert_eq!(metrics[0].cpu_used_pct, 12.5);
    assert_eq!(metrics[0].disk_total, 10_737_418_240);
    assert_eq!(metrics[0].timestamp.timestamp(), metrics[0].timestamp_unix);

    let many = json!({"sandboxes": {"iojbyrxp6ik2vhga55m7j": wire[0].clone()}});
    let (many, back) = round_trip::<types::SandboxesWithMetrics>(&many);
    assert_eq!(back["sandboxes"]["iojbyrxp6ik2vhga55m7j"], wire[0]);
    assert_eq!(many.sandboxes.len(), 1);
}

#[test]
fn error_body() {
    let wire = json!({"code": 404, "message": "Sandbox \"x\" doesn't exist or you don't have access to it"});
    let (error, back) = round_trip::<types::Error>(&wire);
    assert_eq!(back, wire);
    assert_eq!(error.code, 404);
    assert_eq!(error.error_code, None);

    let wire = json!({
        "code": 503,
        "message": "no node available",
        "error_code": "sandbox_capacity_unavailable",
    });
    let (error, back) = round_trip::<types::Error>(&wire);
    assert_eq!(back, wire);
    assert_eq!(
        error.error_code.as_deref(),
        Some("sandbox_capacity_unavailable")
    );
}

#[test]
fn small_request_bodies() {
    let (connect, back) = round_trip::<types::ConnectSandbox>(&json!({"timeout": 300}));
    assert_eq!(connect.timeout, 300);
    assert_eq!(back, json!({"timeout": 300}));

    // What the 2.63 SDKs send when nothing is set; the server reads the 300 s default.
    let (connect, _) = round_trip::<types::ConnectSandboxV2>(&json!({}));
    assert_eq!(connect.timeout, 300);
    assert_eq!(connect.memory, None);
    let (_, back) = round_trip::<types::ConnectSandboxV2>(&json!({"timeout": 60, "memory": false}));
    assert_eq!(back, json!({"timeout": 60, "memory": false}));

    let (_, back) = round_trip::<types::SandboxTimeoutRequest>(&json!({"timeout": 0}));
    assert_eq!(back, json!({"timeout": 0}));

    let (pause, back) = round_trip::<types::SandboxPauseRequest>(&json!({}));
    assert!(pause.memory, "memory defaults to true");
    assert_eq!(back, json!({"memory": true}));

    let (refresh, back) = round_trip::<types::SandboxRefreshRequest>(&json!({"duration": 3600}));
    assert_eq!(refresh.duration, Some(3600));
    assert_eq!(back, json!({"duration": 3600}));
}

#[test]
fn sandbox_logs() {
    let wire = json!({
        "logs": [{"timestamp": "2026-11-26T09:30:11Z", "line": "hello"}],
        "logEntries": [{
            "timestamp": "2026-11-26T09:30:11Z",
            "message": "hello",
            "level": "warn",
            "fields": {"logger": "envd"},
        }],
    });
    let (logs, back) = round_trip::<types::SandboxLogs>(&wire);
    assert_eq!(back, wire);
    assert_eq!(logs.log_entries[0].level, types::LogLevel::Warn);

    let (v2, _) = round_trip::<types::SandboxLogsV2Response>(&json!({"logs": []}));
    assert!(v2.logs.is_empty());
}

#[test]
fn templates() {
    let template = json!({
        "templateID": "rki5dems9wqfm4r03t7g",
        "buildID": "8f1a2b3c-0000-4000-8000-000000000001",
        "cpuCount": 2,
        "memoryMB": 512,
        "diskSizeMB": 1024,
        "public": false,
        "aliases": ["base"],
        "names": ["team/base"],
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-02T00:00:00Z",
        "createdBy": {"id": "8f1a2b3c-0000-4000-8000-000000000002", "email": null},
        "lastSpawnedAt": null,
        "spawnCount": 7,
        "buildCount": 1,
        "envdVersion": "0.6.13",
        "buildStatus": "ready",
    });
    let (parsed, _) = round_trip::<Vec<types::Template>>(&json!([template]));
    assert_eq!(parsed[0].build_status, types::TemplateBuildStatus::Ready);
    assert_eq!(parsed[0].last_spawned_at, None);
    let created_by = parsed[0].created_by.as_ref().expect("createdBy");
    assert_eq!(
        created_by.id.to_string(),
        "8f1a2b3c-0000-4000-8000-000000000002"
    );

    let with_builds = json!({
        "templateID": "rki5dems9wqfm4r03t7g",
        "public": true,
        "aliases": [],
        "names": ["team/base"],
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": "2026-01-02T00:00:00Z",
        "lastSpawnedAt": "2026-01-03T00:00:00Z",
        "spawnCount": 0,
        "builds": [{
            "buildID": "8f1a2b3c-0000-4000-8000-000000000001",
            "status": "building",
            "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:01Z",
            "cpuCount": 1,
            "memoryMB": 128,
        }],
    });
    let (parsed, back) = round_trip::<types::TemplateWithBuilds>(&with_builds);
    assert_eq!(back, with_builds);
    assert_eq!(
        parsed.builds[0].status,
        types::TemplateBuildStatus::Building
    );
}

#[test]
fn builders_fill_defaults_and_report_missing_fields() {
    let new: types::NewSandbox = types::NewSandbox::builder()
        .template_id("base")
        .try_into()
        .unwrap();
    assert_eq!(new.timeout, 15, "upstream's server-side default");
    assert!(new.auto_pause_memory);

    let missing: Result<types::Sandbox, _> = types::Sandbox::builder().sandbox_id("i1").try_into();
    let err = missing.unwrap_err().to_string();
    assert!(err.contains("no value supplied for"), "{err}");
}
