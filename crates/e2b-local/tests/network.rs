//! Sandbox networking, end to end against a fake internet (`fake_internet`): every packet
//! stays in namespaces these tests make. Needs root: run with
//! `cargo test -p e2b-local --test network -- --ignored`.

mod fake_internet;
mod support;

use e2b_local::isolation::ExecOptions;
use e2b_local::network::NetworkOptions;
use fake_internet::{
    DNS, FakeInternet, SERVER_A, SERVER_B, SOCKS, SOCKS_OPEN_PORT, SOCKS_PASSWORD, SOCKS_PORT,
    SOCKS_TLS_NAME, SOCKS_TLS_PORT, SOCKS_USER, UDP_LOG_PORT,
};
use support::TestServer;

/// Starts a server with networking whose uplink is the fake internet (whose CA its egress
/// proxy trusts).
async fn start(net: &FakeInternet) -> TestServer {
    // The server's logs (denials of the egress proxy among them) with the test's output.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let server = e2b_local::Server::builder()
        .data_dir(dir.path())
        .listen("127.0.0.1:0")
        .helper_exe(env!("CARGO_BIN_EXE_e2b-local"))
        .cgroup_parent(support::CGROUP_PARENT)
        .network(NetworkOptions {
            pool: e2b_local::network::DEFAULT_POOL.parse().unwrap(),
            dns_upstreams: vec![fake_internet::at(DNS, 53)],
            upstream_roots: vec![net.ca.cert.clone()],
            unreachable: Vec::new(),
        })
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting the server (needs root): {e}"));
    TestServer {
        url: server.api_url(),
        key: server.api_key().to_owned(),
        server: Some(server),
        http: support::http(),
        dir,
    }
}

/// Runs `bash -c script` in sandbox `id` as `opts` says; returns (exit code, stdout+stderr).
async fn sh(t: &TestServer, id: &str, script: &str, opts: ExecOptions) -> (i32, String) {
    let live = t.server().manager().get(id).unwrap();
    let script = format!("exec 2>&1\n{script}");
    let out = tokio::task::spawn_blocking(move || {
        live.handle.exec_in(&["/bin/bash", "-c", &script], &opts)
    })
    .await
    .unwrap()
    .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn id_of(sb: &serde_json::Value) -> String {
    sb["sandboxID"].as_str().unwrap().to_owned()
}

/// `curl` of `url` with a short timeout; prints the body, or `curl: (N)` on failure.
fn curl(url: &str) -> String {
    format!("curl -sS --max-time 5 {url}")
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn a_sandbox_reaches_the_internet_by_address_as_root_and_user() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let sb = t.create(r#"{"templateID":"base"}"#).await;
        let id = id_of(&sb);
        for opts in [ExecOptions::default(), ExecOptions::user()] {
            let (code, out) = sh(&t, &id, &curl(&format!("http://{SERVER_A}/hello")), opts).await;
            assert_eq!(code, 0, "{out}");
            let body: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(body["path"], "/hello");
            assert_eq!(body["host"], SERVER_A.to_string());
        }
        // Raw TCP too (the echo server), not only HTTP.
        let (code, out) = sh(
            &t,
            &id,
            &format!("exec 3<>/dev/tcp/{SERVER_B}/7; echo ping >&3; head -n1 <&3"),
            ExecOptions::default(),
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "ping\n"));
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn allow_internet_access_false_denies_every_address() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let sb = t
            .create(r#"{"templateID":"base","allow_internet_access":false}"#)
            .await;
        let id = id_of(&sb);
        let (code, out) = sh(
            &t,
            &id,
            &curl(&format!("http://{SERVER_A}/")),
            ExecOptions::default(),
        )
        .await;
        // Refused at once (a TCP reset from the firewall), not left to time out.
        assert_eq!(code, 7, "{out}");
        assert!(
            out.contains(&format!("Failed to connect to {SERVER_A} port 80")),
            "{out}"
        );
        // The sandbox next to it is not affected.
        let open = id_of(&t.create(r#"{"templateID":"base"}"#).await);
        let (code, out) = sh(
            &t,
            &open,
            &curl(&format!("http://{SERVER_A}/")),
            ExecOptions::default(),
        )
        .await;
        assert_eq!(code, 0, "{out}");
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn deny_and_allow_rules_by_address_as_e2b_defines_them() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let reach = |id: String, addr| {
            let t = &t;
            async move {
                sh(t, &id, &curl(&format!("http://{addr}/")), ExecOptions::user())
                    .await
                    .0
            }
        };
        // A CIDR and a bare IP in denyOut.
        let sb = t
            .create(&format!(
                r#"{{"templateID":"base","network":{{"denyOut":["203.0.113.8/30","{SERVER_B}"]}}}}"#
            ))
            .await;
        let id = id_of(&sb);
        assert_eq!(reach(id.clone(), SERVER_A).await, 7);
        assert_eq!(reach(id.clone(), SERVER_B).await, 7);
        // An allowed entry beats a denied one; the rest of the deny holds.
        let sb = t
            .create(&format!(
                r#"{{"templateID":"base","network":{{"allowOut":["{SERVER_A}/32"],"denyOut":["0.0.0.0/0"]}}}}"#
            ))
            .await;
        let id = id_of(&sb);
        assert_eq!(reach(id.clone(), SERVER_A).await, 0);
        assert_eq!(reach(id.clone(), SERVER_B).await, 7);
        // allowOut alone denies nothing.
        let sb = t
            .create(&format!(
                r#"{{"templateID":"base","network":{{"allowOut":["{SERVER_A}"]}}}}"#
            ))
            .await;
        assert_eq!(reach(id_of(&sb), SERVER_B).await, 0);
        // What GET reports is what was asked.
        let got = t.get(&format!("/sandboxes/{id}")).await.json();
        assert_eq!(
            got["network"],
            serde_json::json!({"allowOut": [format!("{SERVER_A}/32")], "denyOut": ["0.0.0.0/0"]})
        );
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn update_network_replaces_the_rules_and_cuts_a_live_connection() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let id = id_of(&t.create(r#"{"templateID":"base"}"#).await);
        // A connection to the echo server that stays open, pinging once a second; it prints
        // each echo and, when the connection breaks, "cut".
        let live = t.server().manager().get(&id).unwrap();
        let pinger = tokio::task::spawn_blocking(move || {
            live.handle.exec_in(
                &[
                    "/bin/bash",
                    "-c",
                    &format!(
                        "exec 3<>/dev/tcp/{SERVER_A}/7 || exit 9
                         for i in $(seq 1 30); do
                           echo ping$i >&3 2>/dev/null || {{ echo cut; exit 0; }}
                           read -r -t 3 line <&3 || {{ echo cut; exit 0; }}
                           echo $line; sleep 0.2
                         done; echo never-cut"
                    ),
                ],
                &ExecOptions::default(),
            )
        });
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let r = t
            .call(
                reqwest::Method::PUT,
                &format!("/sandboxes/{id}/network"),
                Some(r#"{"denyOut":["0.0.0.0/0"]}"#),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        let out = pinger.await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("ping1\n"), "{text}");
        assert!(text.ends_with("cut\n"), "{text}");
        // New connections are refused; the report shows the new rules.
        let (code, _) = sh(
            &t,
            &id,
            &curl(&format!("http://{SERVER_A}/")),
            ExecOptions::default(),
        )
        .await;
        assert_eq!(code, 7);
        let got = t.get(&format!("/sandboxes/{id}")).await.json();
        assert_eq!(
            got["network"],
            serde_json::json!({"denyOut": ["0.0.0.0/0"]})
        );
        // Omitted fields are cleared: an empty update opens the sandbox again.
        let r = t
            .call(
                reqwest::Method::PUT,
                &format!("/sandboxes/{id}/network"),
                Some("{}"),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        let (code, out) = sh(
            &t,
            &id,
            &curl(&format!("http://{SERVER_A}/")),
            ExecOptions::default(),
        )
        .await;
        assert_eq!(code, 0, "{out}");
        // allow_internet_access in an update, reported as allowInternetAccess.
        let r = t
            .call(
                reqwest::Method::PUT,
                &format!("/sandboxes/{id}/network"),
                Some(r#"{"allow_internet_access":false}"#),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        let (code, _) = sh(
            &t,
            &id,
            &curl(&format!("http://{SERVER_A}/")),
            ExecOptions::default(),
        )
        .await;
        assert_eq!(code, 7);
        assert_eq!(
            t.get(&format!("/sandboxes/{id}")).await.json()["allowInternetAccess"],
            false
        );
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn invalid_rules_are_400s_naming_the_entry() {
    let net = FakeInternet::new();
    net.block_on(async {
        let t = start(&net).await;
        let cases = [
            (r#"{"allowOut":["300.1.1.1"]}"#, "300.1.1.1"),
            (r#"{"allowOut":["*."]}"#, "*."),
            (r#"{"allowOut":["a..b"]}"#, "a..b"),
            (r#"{"denyOut":["example.com"]}"#, "example.com"),
        ];
        // An egressProxy RFC 1929 cannot express.
        let r = t
            .post(
                "/v2/sandboxes",
                r#"{"templateID":"base","network":{"egressProxy":{"address":"proxy.test:1080","username":"u"}}}"#,
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert_eq!(
            r.json()["message"],
            "network: egressProxy: a username needs a password (RFC 1929 sends both)"
        );
        // envd's port cannot be an https port.
        let r = t
            .post(
                "/v2/sandboxes",
                r#"{"templateID":"base","network":{"httpsPorts":[49983]}}"#,
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains("49983"), "{}", r.text);
        for (network, entry) in cases {
            let r = t
                .post(
                    "/v2/sandboxes",
                    &format!(r#"{{"templateID":"base","network":{network}}}"#),
                )
                .await;
            assert_eq!(r.status, 400, "{network}: {}", r.text);
            let message = r.json()["message"].as_str().unwrap().to_owned();
            assert!(
                message.contains(&format!("{entry:?}")),
                "{network}: {message}"
            );
        }
        let id = id_of(&t.create(r#"{"templateID":"base"}"#).await);
        let r = t
            .call(
                reqwest::Method::PUT,
                &format!("/sandboxes/{id}/network"),
                Some(r#"{"denyOut":["1.2.3.4/33"]}"#),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains(r#"\"1.2.3.4/33\""#), "{}", r.text);
        let r = t
            .call(reqwest::Method::PUT, "/sandboxes/inope/network", Some("{}"))
            .await;
        assert_eq!(r.status, 404, "{}", r.text);
        // Nothing was left of the refused creates.
        assert_eq!(t.server().manager().all().len(), 1);
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn sandboxes_reach_neither_each_other_nor_the_host_nor_link_local() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let a = id_of(&t.create(r#"{"templateID":"base"}"#).await);
        let b = id_of(&t.create(r#"{"templateID":"base"}"#).await);
        let addr_of = |id: &str| {
            t.server()
                .manager()
                .get(id)
                .unwrap()
                .network()
                .unwrap()
                .address()
        };
        let b_addr = addr_of(&b);
        // B serves on all its addresses; its own loopback still works.
        let live_b = t.server().manager().get(&b).unwrap();
        let _server = tokio::task::spawn_blocking(move || {
            live_b.handle.exec_in(
                &["/bin/bash", "-c", "timeout 20 python3 -m http.server 8080 >/dev/null 2>&1"],
                &ExecOptions::default(),
            )
        });
        let (code, out) = sh(
            &t,
            &b,
            "for i in $(seq 50); do curl -sS -o /dev/null --max-time 1 http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1",
            ExecOptions::default(),
        )
        .await;
        assert_eq!(code, 0, "{out}");
        let gateway_of_a = {
            let a_addr = addr_of(&a);
            std::net::Ipv4Addr::from(u32::from(a_addr) - 1)
        };
        // As root in A, with the rules of a sandbox that allows everything.
        for target in [
            format!("{b_addr}:8080"),
            format!("{}:8080", fake_internet::UPLINK),
            format!("{gateway_of_a}:{}", t.server().local_addr().port()),
            "169.254.169.254:80".to_owned(),
        ] {
            let (code, out) = sh(
                &t,
                &a,
                &format!("curl -sS --max-time 3 http://{target}/"),
                ExecOptions::default(),
            )
            .await;
            assert_ne!(code, 0, "{target} was reachable: {out}");
            assert!(!out.contains("Directory listing"), "{target}: {out}");
        }
        // Even with allowOut naming them.
        let r = t
            .call(
                reqwest::Method::PUT,
                &format!("/sandboxes/{a}/network"),
                Some(&format!(r#"{{"allowOut":["{b_addr}","169.254.169.254","{}"]}}"#, fake_internet::UPLINK)),
            )
            .await;
        assert_eq!(r.status, 204, "{}", r.text);
        let (code, out) = sh(&t, &a, &format!("curl -sS --max-time 3 http://{b_addr}:8080/"), ExecOptions::default()).await;
        assert_ne!(code, 0, "{out}");
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn kill_and_shutdown_leave_no_interface_rule_or_tracked_connection() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let mut ids = Vec::new();
        for i in 0..6 {
            let body = if i % 2 == 0 {
                r#"{"templateID":"base","network":{"denyOut":["203.0.113.11"]}}"#
            } else {
                r#"{"templateID":"base"}"#
            };
            ids.push(id_of(&t.create(body).await));
        }
        for id in &ids {
            let (code, out) = sh(
                &t,
                id,
                &curl(&format!("http://{SERVER_A}/")),
                ExecOptions::default(),
            )
            .await;
            assert_eq!(code, 0, "{out}");
        }
        for id in &ids {
            t.kill(id).await;
        }
        let listing = |args: &[&str]| {
            let out = std::process::Command::new(args[0])
                .args(&args[1..])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let links = listing(&["ip", "-o", "link"]);
        assert!(!links.contains(": e2b"), "{links}");
        let table = listing(&["nft", "list", "ruleset"]);
        assert!(!table.contains("chain sandbox_"), "{table}");
        assert!(!table.contains("203.0.113.11"), "{table}");
        let tracked = listing(&["conntrack", "-L", "-s", e2b_local::network::DEFAULT_POOL]);
        assert_eq!(tracked, "", "conntrack entries left");
        assert_eq!(t.server().manager().all().len(), 0);
        t.shutdown().await;
        let table = listing(&["nft", "list", "ruleset"]);
        assert!(!table.contains("e2b_local"), "{table}");
    });
}

/// `curl` over HTTPS to `name` without verifying (the fake internet's CA is not the
/// sandbox's); prints the body.
fn https(name: &str) -> String {
    format!("curl -sS -k --max-time 5 https://{name}/")
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn names_resolve_through_the_gateway_and_domain_rules_hold_for_http_and_tls() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        // By name, as root and user, through the sandbox's resolver (e2b-local's forwarder).
        let open = id_of(&t.create(r#"{"templateID":"base"}"#).await);
        let (code, out) = sh(&t, &open, "cat /etc/resolv.conf; getent hosts a.test", ExecOptions::user()).await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(out, "nameserver 10.219.0.1\n203.0.113.10    a.test\n");
        let (code, out) = sh(&t, &open, &curl("http://c.test/p"), ExecOptions::default()).await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["host"], "c.test");
        let (code, out) = sh(&t, &open, &https("b.test"), ExecOptions::default()).await;
        assert_eq!(code, 0, "{out}");
        let body: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!((&body["host"], &body["tls"]), (&"b.test".into(), &true.into()));

        // Only a.test and *.wild.test, everything else denied.
        let sb = t
            .create(
                r#"{"templateID":"base","network":{"allowOut":["a.test","*.wild.test"],"denyOut":["0.0.0.0/0"]}}"#,
            )
            .await;
        let id = id_of(&sb);
        // DNS still answers (the gateway is always reachable).
        let (code, out) = sh(&t, &id, "getent hosts b.test", ExecOptions::user()).await;
        assert_eq!((code, out.as_str()), (0, "203.0.113.10    b.test\n"));
        // HTTP by Host.
        let (code, out) = sh(&t, &id, &curl("http://a.test/"), ExecOptions::user()).await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["host"], "a.test");
        // b.test is a.test's address, but not an allowed name: the proxy refuses it.
        let (code, out) = sh(
            &t,
            &id,
            "curl -sS --max-time 5 -o /dev/null -w '%{http_code}' http://b.test/",
            ExecOptions::user(),
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "403"));
        // A wildcard covers subdomains at any depth, not the apex.
        for (name, ok) in [("x.wild.test", true), ("deep.x.wild.test", true), ("wild.test", false)] {
            let (code, out) = sh(
                &t,
                &id,
                &format!("curl -sS --max-time 5 -o /dev/null -w '%{{http_code}}' http://{name}/"),
                ExecOptions::user(),
            )
            .await;
            assert_eq!((code, out.as_str()), (0, if ok { "200" } else { "403" }), "{name}");
        }
        // TLS by SNI (passed through: no header rule).
        let (code, out) = sh(&t, &id, &https("a.test"), ExecOptions::user()).await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap()["host"], "a.test");
        let (code, out) = sh(&t, &id, &https("b.test"), ExecOptions::user()).await;
        // Reset during the handshake.
        assert_eq!(code, 35, "{out}");
        // Other ports are decided by address: denied.
        let (code, _) = sh(
            &t,
            &id,
            &format!("exec 3<>/dev/tcp/{SERVER_A}/7"),
            ExecOptions::user(),
        )
        .await;
        assert_ne!(code, 0);
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn header_rules_reach_the_server_over_http_and_https_and_the_sandbox_never_sees_them() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let sb = t
            .create(
                r#"{"templateID":"base","network":{"allowOut":["a.test"],"denyOut":["0.0.0.0/0"],
                   "rules":{"a.test":[{"transform":{"headers":{"Authorization":"Bearer s3cret","X-Extra":"1"}}}]}}}"#,
            )
            .await;
        let id = id_of(&sb);
        let (code, out) = sh(
            &t,
            &id,
            "curl -sS --max-time 5 -H 'Authorization: Bearer mine' http://a.test/ && echo && env && cat /proc/self/environ",
            ExecOptions::user(),
        )
        .await;
        assert_eq!(code, 0, "{out}");
        let first_line = out.lines().next().unwrap();
        let body: serde_json::Value = serde_json::from_str(first_line).unwrap();
        assert_eq!(body["headers"]["authorization"], "Bearer s3cret");
        assert_eq!(body["headers"]["x-extra"], "1");
        assert!(!out[first_line.len()..].contains("s3cret"));
        // Over HTTPS the proxy terminates TLS with its own CA, which the sandbox trusts:
        // curl verifies the certificate here (no -k).
        let (code, out) = sh(
            &t,
            &id,
            "curl -sS --max-time 5 https://a.test/",
            ExecOptions::user(),
        )
        .await;
        assert_eq!(code, 0, "{out}");
        let body: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(body["tls"], true);
        assert_eq!(body["headers"]["authorization"], "Bearer s3cret");
        // Not in anything the sandbox can read of its own record either.
        let (_, files) = sh(&t, &id, "grep -rs s3cret /etc /home /tmp /run || true", ExecOptions::default()).await;
        assert_eq!(files, "");
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn two_hundred_networked_sandboxes_leave_nothing_behind() {
    let n: usize = std::env::var("E2B_LOCAL_LEAK_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let fds = || std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
        // Warm up with a batch of the same size (the client's and server's pooled
        // connections, lazily opened sockets), then count.
        let warm = futures_util::future::join_all((0..8).map(|_| t.create(r#"{"templateID":"base"}"#))).await;
        futures_util::future::join_all(warm.iter().map(|sb| t.kill(sb["sandboxID"].as_str().unwrap()))).await;
        let fds_before = fds();
        let bodies = [
            r#"{"templateID":"base"}"#,
            r#"{"templateID":"base","network":{"denyOut":["203.0.113.11"]}}"#,
            r#"{"templateID":"base","network":{"allowOut":["a.test"],"denyOut":["0.0.0.0/0"]}}"#,
        ];
        let mut done = 0;
        while done < n {
            let batch: Vec<_> = (done..n.min(done + 8))
                .map(|i| t.create(bodies[i % bodies.len()]))
                .collect();
            let created = futures_util::future::join_all(batch).await;
            done += created.len();
            // Some traffic on each, so there are conntrack entries to remove.
            for sb in &created {
                let (code, out) = sh(&t, &id_of(sb), "getent hosts a.test >/dev/null && curl -s -o /dev/null --max-time 5 http://a.test/", ExecOptions::default()).await;
                assert_eq!(code, 0, "{out}");
            }
            futures_util::future::join_all(created.iter().map(|sb| t.kill(sb["sandboxID"].as_str().unwrap()))).await;
        }
        let listing = |args: &[&str]| {
            let out = std::process::Command::new(args[0]).args(&args[1..]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert!(!listing(&["ip", "-o", "link"]).contains(": e2b"));
        let table = listing(&["nft", "list", "ruleset"]);
        assert!(!table.contains("chain sandbox_"), "{table}");
        assert!(!table.contains("elements"), "{table}");
        assert_eq!(listing(&["conntrack", "-L", "-s", e2b_local::network::DEFAULT_POOL]), "");
        // The HTTP client's pool may hold a connection pair more or less than after the
        // warm-up (two descriptors each); a leak per sandbox would show as hundreds.
        let (after, before) = (fds(), fds_before);
        assert!(after <= before + 4, "descriptors leaked: {before} before, {after} after");
        t.shutdown().await;
    });
}

/// `e2b-local serve` with networking, as a child of a thread in the uplink namespace.
struct ServeProcess {
    child: std::process::Child,
    url: String,
    key: String,
}

impl ServeProcess {
    fn start(dir: &std::path::Path) -> Self {
        use std::io::BufRead as _;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_e2b-local"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--dns-upstream", &DNS.to_string()])
            .args(["--cgroup-parent", support::CGROUP_PARENT, "--data-dir"])
            .arg(dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut key = None;
        for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            if let Some(k) = line.strip_prefix("export E2B_API_KEY=") {
                key = Some(k.to_owned());
            }
            if line.starts_with("export E2B_DOMAIN=") {
                break;
            }
        }
        ServeProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            key: key.expect("serve printed no key"),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let r = support::http()
            .request(method, format!("{}{path}", self.url))
            .header("x-api-key", &self.key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Runs `script` in the sandbox through envd (as root) and returns the stream's text.
    async fn run(&self, sb: &serde_json::Value, script: &str) -> String {
        let body = support::envelope(&serde_json::json!({
            "process": {"cmd": "/bin/bash", "args": ["-c", script], "user": "root"}
        }));
        support::http()
            .post(format!("{}/process.Process/Start", self.url))
            .header("E2b-Sandbox-Id", sb["sandboxID"].as_str().unwrap())
            .header("E2b-Sandbox-Port", "49983")
            .header("X-Access-Token", sb["envdAccessToken"].as_str().unwrap())
            .header("content-type", "application/connect+json")
            .body(body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn after_kill_9_a_restart_cleans_networks_and_restores_paused_sandboxes_with_their_rules() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut first = ServeProcess::start(dir.path());
        let (s, running) = first
            .call(
                reqwest::Method::POST,
                "/sandboxes",
                r#"{"templateID":"base"}"#,
            )
            .await;
        assert_eq!(s, 201);
        let (s, paused) = first
            .call(
                reqwest::Method::POST,
                "/sandboxes",
                &format!(r#"{{"templateID":"base","network":{{"denyOut":["{SERVER_A}"]}}}}"#),
            )
            .await;
        assert_eq!(s, 201);
        let paused_id = paused["sandboxID"].as_str().unwrap().to_owned();
        let (s, _) = first
            .call(
                reqwest::Method::POST,
                &format!("/sandboxes/{paused_id}/pause"),
                "",
            )
            .await;
        assert_eq!(s, 204);
        first.child.kill().unwrap();
        first.child.wait().unwrap();

        let second = ServeProcess::start(dir.path());
        // The running sandbox is reclaimed: 404 once the restart's reclaim is done.
        let running_id = running["sandboxID"].as_str().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (s, _) = second
                .call(
                    reqwest::Method::GET,
                    &format!("/sandboxes/{running_id}"),
                    "",
                )
                .await;
            let (p, _) = second
                .call(reqwest::Method::GET, &format!("/sandboxes/{paused_id}"), "")
                .await;
            if s == 404 && p == 200 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "reclaim: {s}, restore: {p}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        // The paused one resumes with its rules: .10 refused, .11 reachable.
        let (s, resumed) = second
            .call(
                reqwest::Method::POST,
                &format!("/sandboxes/{paused_id}/connect"),
                r#"{"timeout":60}"#,
            )
            .await;
        assert_eq!(s, 201, "{resumed}");
        let denied = second
            .run(
                &resumed,
                &format!("curl -s -o /dev/null --max-time 5 http://{SERVER_A}/; echo code=$?"),
            )
            .await;
        let allowed = second
            .run(
                &resumed,
                &format!("curl -s -o /dev/null --max-time 5 http://{SERVER_B}/; echo code=$?"),
            )
            .await;
        // envd streams stdout base64-encoded: "code=7\n" and "code=0\n".
        assert!(denied.contains("Y29kZT03Cg=="), "{denied}");
        assert!(allowed.contains("Y29kZT0wCg=="), "{allowed}");
        // One interface: the restored sandbox's; the crashed run's are gone.
        let links = String::from_utf8_lossy(
            &std::process::Command::new("ip")
                .args(["-o", "link"])
                .output()
                .unwrap()
                .stdout,
        )
        .into_owned();
        assert_eq!(links.matches(": e2b").count(), 1, "{links}");
        // A graceful stop this time: it kills the restored sandbox and removes its network.
        let mut second = second;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(second.child.id()).unwrap()),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert!(second.child.wait().unwrap().success());
        let left = std::fs::read_dir(dir.path().join("sandboxes"))
            .unwrap()
            .count();
        assert_eq!(left, 0, "sandboxes left after the server stopped");
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn forged_source_addresses_never_leave_the_host() {
    let net = FakeInternet::new();
    let servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let a = id_of(&t.create(r#"{"templateID":"base"}"#).await);
        let b = id_of(&t.create(r#"{"templateID":"base"}"#).await);
        let b_addr = t
            .server()
            .manager()
            .get(&b)
            .unwrap()
            .network()
            .unwrap()
            .address();
        let a_addr = t
            .server()
            .manager()
            .get(&a)
            .unwrap()
            .network()
            .unwrap()
            .address();
        // Root in A builds IPv4/UDP packets by hand (CAP_NET_RAW is kept for ping): one from
        // its own address, one claiming to be B, one claiming an outside address.
        let script = format!(
            r#"python3 - <<'PY'
import socket, struct
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def packet(src, dst, port, payload):
    udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return ip + udp
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for src, tag in [("{a_addr}", "honest"), ("{b_addr}", "as-b"), ("203.0.113.99", "as-outsider")]:
    s.sendto(packet(src, "{SERVER_A}", {port}, tag.encode()), ("{SERVER_A}", 0))
print("sent")
PY"#,
            port = fake_internet::UDP_LOG_PORT
        );
        let (code, out) = sh(&t, &a, &script, ExecOptions::default()).await;
        assert_eq!((code, out.as_str()), (0, "sent\n"));
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let got: Vec<String> = servers.udp_received().into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, ["honest"], "what reached the internet");
        t.shutdown().await;
    });
}

/// One line to and from the echo server at `ip:7`: prints the echo, or a failure.
fn echo(ip: std::net::Ipv4Addr) -> String {
    format!("exec 3<>/dev/tcp/{ip}/7 && echo ping >&3 && timeout 5 head -n1 <&3")
}

/// The message of every line of sandbox `id`'s log.
async fn log_messages(t: &TestServer, id: &str) -> Vec<(String, String)> {
    let logs = t.get(&format!("/v2/sandboxes/{id}/logs")).await.json();
    logs["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["level"].as_str().unwrap().to_owned(),
                l["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn egress_proxy_tunnels_allowed_tcp_with_credentials_and_never_denied_traffic() {
    let net = FakeInternet::new();
    let servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let network = serde_json::json!({
            "allowOut": ["a.test"],
            "denyOut": [format!("{SERVER_B}/32")],
            "egressProxy": {
                "address": format!("{SOCKS}:{SOCKS_PORT}"),
                "username": SOCKS_USER,
                "password": SOCKS_PASSWORD,
            },
        });
        let sb = t
            .create(&serde_json::json!({"templateID": "base", "network": network}).to_string())
            .await;
        let id = id_of(&sb);
        // HTTP to an allowed domain: the CONNECT names it (the SOCKS server resolves it).
        let (code, out) = sh(&t, &id, &curl("http://a.test/hello"), ExecOptions::user()).await;
        assert_eq!(code, 0, "{out}");
        let body: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!((&body["host"], &body["path"]), (&"a.test".into(), &"/hello".into()));
        // Raw TCP on another port, by address.
        let (code, out) = sh(&t, &id, &echo(SERVER_A), ExecOptions::default()).await;
        assert_eq!((code, out.as_str()), (0, "ping\n"));
        assert_eq!(
            servers.socks_tunneled(),
            [
                format!("{SOCKS_PORT} {SOCKS_USER} a.test:80 ({SERVER_A}:80)"),
                format!("{SOCKS_PORT} {SOCKS_USER} {SERVER_A}:7 ({SERVER_A}:7)"),
            ]
        );
        // Denied destinations never reach the SOCKS server: by address (a reset) and by name
        // on a denied address (the proxy's 403).
        let (code, out) = sh(&t, &id, &echo(SERVER_B), ExecOptions::default()).await;
        assert_ne!(code, 0, "{out}");
        let (code, out) = sh(
            &t,
            &id,
            "curl -sS --max-time 5 -o /dev/null -w '%{http_code}' http://c.test/",
            ExecOptions::default(),
        )
        .await;
        assert_eq!((code, out.as_str()), (0, "403"));
        // UDP is not tunneled: it does not leave at all (DNS to the gateway still works, as
        // the names above show).
        let (code, out) = sh(
            &t,
            &id,
            &format!("echo hello >/dev/udp/{SERVER_A}/{UDP_LOG_PORT}; sleep 0.5"),
            ExecOptions::default(),
        )
        .await;
        assert_eq!(code, 0, "{out}");
        assert_eq!(servers.udp_received(), []);
        assert_eq!(servers.socks_tunneled().len(), 2);
        // The report shows the proxy without its password.
        let got = t.get(&format!("/sandboxes/{id}")).await.json();
        assert_eq!(
            got["network"]["egressProxy"],
            serde_json::json!({"address": format!("{SOCKS}:{SOCKS_PORT}"), "username": SOCKS_USER})
        );

        // Without credentials, or with wrong ones, the proxy refuses: the connection is
        // reset and the sandbox's log says why.
        for (proxy, why) in [
            (
                serde_json::json!({"address": format!("{SOCKS}:{SOCKS_PORT}")}),
                "it accepts none of the offered authentication methods (it may need credentials)",
            ),
            (
                serde_json::json!({
                    "address": format!("{SOCKS}:{SOCKS_PORT}"),
                    "username": SOCKS_USER,
                    "password": "wrong",
                }),
                "it refused the username and password",
            ),
        ] {
            let body = serde_json::json!({"templateID": "base", "network": {"egressProxy": proxy}});
            let id = id_of(&t.create(&body.to_string()).await);
            let (code, out) = sh(&t, &id, &echo(SERVER_A), ExecOptions::default()).await;
            assert_ne!(code, 0, "{out}");
            let expected = format!(
                "egress proxy: connection to {SERVER_A}:7 reset: egressProxy {SOCKS}:{SOCKS_PORT} failed: {why}"
            );
            assert!(
                log_messages(&t, &id).await.contains(&("error".into(), expected.clone())),
                "{expected} not in {:?}",
                log_messages(&t, &id).await
            );
        }
        assert_eq!(servers.socks_tunneled().len(), 2);
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn egress_proxy_over_tls_verifies_the_proxy_with_its_ca() {
    let net = FakeInternet::new();
    let servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let proxy = |ca: &str| {
            serde_json::json!({"templateID": "base", "network": {"egressProxy": {
                "address": format!("{SOCKS}:{SOCKS_TLS_PORT}"),
                "username": SOCKS_USER,
                "password": SOCKS_PASSWORD,
                "tls": {"enabled": true, "serverName": SOCKS_TLS_NAME, "caCert": ca},
            }}})
            .to_string()
        };
        let id = id_of(&t.create(&proxy(&net.ca.cert_pem)).await);
        let (code, out) = sh(&t, &id, &echo(SERVER_B), ExecOptions::default()).await;
        assert_eq!((code, out.as_str()), (0, "ping\n"));
        assert_eq!(
            servers.socks_tunneled(),
            [format!("{SOCKS_TLS_PORT} {SOCKS_USER} {SERVER_B}:7 ({SERVER_B}:7)")]
        );
        // The CA certificate is never shown.
        let got = t.get(&format!("/sandboxes/{id}")).await.json();
        assert_eq!(
            got["network"]["egressProxy"]["tls"],
            serde_json::json!({"enabled": true, "serverName": SOCKS_TLS_NAME})
        );
        // A proxy whose certificate the given CA did not sign is never used.
        let other_ca = rcgen::CertificateParams::default()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem();
        let id = id_of(&t.create(&proxy(&other_ca)).await);
        let (code, out) = sh(&t, &id, &echo(SERVER_B), ExecOptions::default()).await;
        assert_ne!(code, 0, "{out}");
        let logs = log_messages(&t, &id).await;
        assert!(
            logs.iter().any(|(level, m)| level == "error"
                && m.starts_with(&format!(
                    "egress proxy: connection to {SERVER_B}:7 reset: egressProxy {SOCKS}:{SOCKS_TLS_PORT} failed: TLS: invalid peer certificate"
                ))),
            "{logs:?}"
        );
        assert_eq!(servers.socks_tunneled().len(), 1);
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn an_unreachable_egress_proxy_resets_the_connection_and_says_so_in_the_sandbox_log() {
    let net = FakeInternet::new();
    let _servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        // Nothing listens there: the fake internet refuses the connection.
        let body = serde_json::json!({"templateID": "base", "network": {
            "egressProxy": {"address": format!("{SOCKS}:9")},
        }});
        let id = id_of(&t.create(&body.to_string()).await);
        let (code, out) = sh(&t, &id, &curl(&format!("http://{SERVER_A}/")), ExecOptions::default()).await;
        // Accepted by the egress proxy, then reset: curl's "Recv failure: Connection reset".
        assert_eq!(code, 56, "{out}");
        assert!(out.contains("Connection reset by peer"), "{out}");
        assert!(
            log_messages(&t, &id).await.contains(&(
                "error".into(),
                format!(
                    "egress proxy: connection to {SERVER_A}:80 reset: egressProxy {SOCKS}:9 failed: connecting: Connection refused (os error 111)"
                )
            )),
            "{:?}",
            log_messages(&t, &id).await
        );
        t.shutdown().await;
    });
}

#[test]
#[ignore = "needs root: network namespaces, nftables and sandboxes"]
fn update_network_switches_the_egress_proxy_on_and_off() {
    let net = FakeInternet::new();
    let servers = net.serve();
    net.block_on(async {
        let t = start(&net).await;
        let id = id_of(&t.create(r#"{"templateID":"base"}"#).await);
        let put = |body: String| {
            let t = &t;
            let path = format!("/sandboxes/{id}/network");
            async move {
                let r = t.call(reqwest::Method::PUT, &path, Some(&body)).await;
                assert_eq!(r.status, 204, "{}", r.text);
            }
        };
        let (code, out) = sh(&t, &id, &echo(SERVER_A), ExecOptions::default()).await;
        assert_eq!((code, out.as_str()), (0, "ping\n"));
        assert_eq!(servers.socks_tunneled(), Vec::<String>::new());
        // A direct connection open when the tunnel is switched on is cut.
        let live = t.server().manager().get(&id).unwrap();
        let pinger = tokio::task::spawn_blocking(move || {
            live.handle.exec_in(
                &[
                    "/bin/bash",
                    "-c",
                    &format!(
                        "exec 3<>/dev/tcp/{SERVER_A}/7 || exit 9
                         for i in $(seq 1 30); do
                           echo ping$i >&3 2>/dev/null || {{ echo cut; exit 0; }}
                           read -r -t 3 line <&3 || {{ echo cut; exit 0; }}
                           echo $line; sleep 0.2
                         done; echo never-cut"
                    ),
                ],
                &ExecOptions::default(),
            )
        });
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        put(
            serde_json::json!({"egressProxy": {"address": format!("{SOCKS}:{SOCKS_OPEN_PORT}")}})
                .to_string(),
        )
        .await;
        let out = pinger.await.unwrap().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("ping1\n") && text.ends_with("cut\n"),
            "{text}"
        );
        let (code, out) = sh(&t, &id, &echo(SERVER_A), ExecOptions::default()).await;
        assert_eq!((code, out.as_str()), (0, "ping\n"));
        assert_eq!(
            servers.socks_tunneled(),
            [format!("{SOCKS_OPEN_PORT} - {SERVER_A}:7 ({SERVER_A}:7)")]
        );
        // An update that leaves it out sends the traffic out directly again.
        put("{}".into()).await;
        let (code, out) = sh(&t, &id, &echo(SERVER_A), ExecOptions::default()).await;
        assert_eq!((code, out.as_str()), (0, "ping\n"));
        assert_eq!(servers.socks_tunneled().len(), 1);
        assert_eq!(
            t.get(&format!("/sandboxes/{id}")).await.json()["network"]["egressProxy"],
            serde_json::Value::Null
        );
        t.shutdown().await;
    });
}
