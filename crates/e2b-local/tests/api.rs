//! REST control plane tests against an in-process server with real sandboxes: every endpoint
//! and status code with exact bodies, pagination, the evictor, timeouts, pause/resume,
//! connect, bad input and restart recovery. Needs root: ignored unless run with `-- --ignored` as root.

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{err, start, start_in};

fn ts(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn api_key_is_required_and_errors_have_e2b_bodies() {
    let t = start().await;
    assert!(t.key.starts_with("e2b_") && t.key.len() == 44, "{}", t.key);
    let r = t.call_with(Method::GET, "/v2/sandboxes", None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json(),
        err(
            401,
            "missing API key: send it in the X-API-Key header (`e2b-local key` prints it)"
        )
    );
    let r = t
        .call_with(
            Method::GET,
            "/v2/sandboxes",
            None,
            &[("x-api-key", "e2b_00")],
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json(),
        err(
            401,
            "invalid API key: it does not match this server's key (`e2b-local key` prints it)"
        )
    );
    let r = t.call_with(Method::GET, "/health", None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t.get("/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json(), err(404, "no such endpoint: GET /nope"));
    let r = t.call(Method::PUT, "/sandboxes", Some("{}")).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.json(),
        err(405, "method PUT is not allowed on /sandboxes")
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn create_get_kill_with_exact_shapes() {
    let t = start().await;
    let before = Utc::now();
    let sb = t
        .create(r#"{"templateID":"base","timeout":120,"metadata":{"a":"b"},"envVars":{"X":"1"},"allow_internet_access":false}"#)
        .await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 21);
    assert!(id.starts_with('i'));
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        sb,
        json!({
            "alias": "base", "clientID": "6532622b", "domain": t.server().domain(),
            "envdAccessToken": token, "envdVersion": "0.6.13", "sandboxID": id,
            "templateID": "base"
        })
    );

    let d = t.get(&format!("/sandboxes/{id}")).await;
    assert_eq!(d.status, StatusCode::OK);
    let d = d.json();
    assert_eq!(d["state"], "running");
    assert_eq!(d["metadata"], json!({"a": "b"}));
    assert_eq!(d["allowInternetAccess"], false);
    assert_eq!(d["envdAccessToken"], token.as_str());
    assert_eq!(d["cpuCount"], 2);
    assert_eq!(d["memoryMB"], 512);
    assert_eq!(
        d["lifecycle"],
        json!({"autoResume": false, "onTimeout": "kill"})
    );
    let (s, e) = (ts(&d["startedAt"]), ts(&d["endAt"]));
    assert!(s >= before - chrono::Duration::seconds(1));
    assert_eq!((e - s).num_seconds(), 120);
    // Old SDK form `<id>-<clientID>` is accepted.
    let r = t.get(&format!("/sandboxes/{id}-6532622b")).await;
    assert_eq!(r.status, StatusCode::OK);

    // Env vars reached envd through /init.
    let mut resp = support::start_process(&t, &id, &token, "echo -n $X").await;
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        out.extend_from_slice(&c);
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains(r#""stdout":"MQ=="}"#), "{text}"); // base64("1")

    // secure:false → no token; v2 → always a token.
    let insecure = t.create(r#"{"templateID":"base","secure":false}"#).await;
    assert!(insecure.get("envdAccessToken").is_none(), "{insecure}");
    let r = t.post("/v2/sandboxes", r#"{"templateID":"base"}"#).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let v2 = r.json();
    assert_eq!(v2["envdAccessToken"].as_str().unwrap().len(), 64);
    // Idempotency-Key: a retried create returns the same sandbox.
    let once = t
        .call_with(
            Method::POST,
            "/v2/sandboxes",
            Some(r#"{"templateID":"base"}"#),
            &[
                ("x-api-key", t.key.as_str()),
                ("idempotency-key", "retry-1"),
            ],
        )
        .await;
    let twice = t
        .call_with(
            Method::POST,
            "/v2/sandboxes",
            Some(r#"{"templateID":"base"}"#),
            &[
                ("x-api-key", t.key.as_str()),
                ("idempotency-key", "retry-1"),
            ],
        )
        .await;
    assert_eq!(once.status, StatusCode::CREATED);
    assert_eq!(twice.status, StatusCode::CREATED);
    assert_eq!(once.json(), twice.json());
    let bad = t
        .call_with(
            Method::POST,
            "/v2/sandboxes",
            Some(r#"{"templateID":"base"}"#),
            &[
                ("x-api-key", t.key.as_str()),
                ("idempotency-key", "Bad Key"),
            ],
        )
        .await;
    assert_eq!(
        bad.json(),
        err(
            400,
            "invalid Idempotency-Key header: expected 1 to 255 characters of [a-z0-9-]"
        )
    );
    // v2's default timeout is 300 s.
    let d = t
        .get(&format!("/sandboxes/{}", v2["sandboxID"].as_str().unwrap()))
        .await
        .json();
    assert_eq!((ts(&d["endAt"]) - ts(&d["startedAt"])).num_seconds(), 300);

    t.kill(&id).await;
    let r = t
        .call(Method::DELETE, &format!("/sandboxes/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let msg = format!("sandbox \"{id}\" doesn't exist or you don't have access to it");
    assert_eq!(r.json(), err(404, &msg));
    let r = t.get(&format!("/sandboxes/{id}")).await;
    assert_eq!(r.json(), err(404, &msg));
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn bad_input_gets_400_or_404_naming_the_problem() {
    let t = start().await;
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "/sandboxes",
            "{",
            400,
            "request body is not valid JSON: EOF while parsing an object at line 1 column 1",
        ),
        (
            "/sandboxes",
            "",
            400,
            "request body is missing: expected a JSON object",
        ),
        (
            "/sandboxes",
            "[1]",
            400,
            "request body must be a JSON object",
        ),
        (
            "/sandboxes",
            r#"{"templateID":"base","bogus":1}"#,
            400,
            "unknown field `bogus` in request body (expected one of: templateID, timeout, allow_internet_access, metadata, envVars, autoPause, autoPauseMemory, autoResume, network, iam, mcp, volumeMounts, secure)",
        ),
        (
            "/sandboxes",
            r#"{"timeout":10}"#,
            400,
            "invalid request body: missing field `templateID`",
        ),
        (
            "/sandboxes",
            r#"{"templateID":"base","timeout":0}"#,
            400,
            "timeout must be greater than 0 (got 0)",
        ),
        (
            "/sandboxes",
            r#"{"templateID":"base","timeout":-5}"#,
            400,
            "timeout must be greater than 0 (got -5)",
        ),
        (
            "/sandboxes",
            r#"{"templateID":"base","timeout":2147483647}"#,
            400,
            "timeout of 2147483647 s exceeds the maximum sandbox lifetime of 3600 s",
        ),
        (
            "/sandboxes",
            r#"{"templateID":"base","timeout":99999999999}"#,
            400,
            "invalid request body: invalid value: integer `99999999999`, expected i32",
        ),
        (
            "/sandboxes",
            r#"{"templateID":"base","timeout":"5"}"#,
            400,
            "invalid request body: invalid type: string \"5\", expected i32",
        ),
        (
            "/sandboxes",
            r#"{"templateID":""}"#,
            400,
            "templateID must not be empty",
        ),
        (
            "/sandboxes",
            r#"{"templateID":"base","metadata":{"a":1}}"#,
            400,
            "invalid request body: invalid type: integer `1`, expected a string",
        ),
        (
            "/sandboxes",
            r#"{"templateID":"base","volumeMounts":[{"name":"v","path":"/v"}]}"#,
            400,
            "volumeMounts[0].name: volume 'v' not found",
        ),
        (
            "/sandboxes",
            r#"{"templateID":"nope"}"#,
            404,
            "template 'nope' not found",
        ),
        (
            "/v2/sandboxes",
            r#"{"templateID":"base","secure":true}"#,
            400,
            "unknown field `secure` in request body (expected one of: templateID, timeout, allow_internet_access, metadata, envVars, autoPause, autoPauseMemory, autoResume, network, iam, mcp, volumeMounts)",
        ),
    ];
    for (path, body, code, msg) in cases {
        let r = t.post(path, body).await;
        assert_eq!(r.status.as_u16(), *code, "{path} {body}: {}", r.text);
        assert_eq!(r.json(), err(*code, msg), "{path} {body}");
    }
    let big = format!(
        r#"{{"templateID":"base","metadata":{{"k":"{}"}}}}"#,
        "x".repeat(9000)
    );
    let r = t.post("/sandboxes", &big).await;
    assert_eq!(
        r.json(),
        err(400, "metadata is too large: 9001 bytes (at most 8192)")
    );
    let r = t
        .post("/sandboxes", r#"{"templateID":"base","metadata":{"":"v"}}"#)
        .await;
    assert_eq!(r.json(), err(400, "metadata has an empty key"));

    let huge = format!(r#"{{"templateID":"base","x":"{}"}}"#, "y".repeat(2 << 20));
    let r = t.post("/sandboxes", &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.headers["connection"], "close");
    assert_eq!(
        r.json(),
        err(
            413,
            "request body is larger than 1048576 bytes or unreadable: length limit exceeded"
        )
    );

    let bad_id = "/sandboxes/ABC!";
    let r = t.get(bad_id).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json(),
        err(
            400,
            "invalid sandbox ID \"ABC!\": expected lowercase letters and digits"
        )
    );
    let r = t.get("/sandboxes/iunknown0000000000000").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    for (q, msg) in [
        (
            "limit=0",
            "invalid limit \"0\": expected an integer from 1 to 100",
        ),
        (
            "limit=101",
            "invalid limit \"101\": expected an integer from 1 to 100",
        ),
        (
            "limit=x",
            "invalid limit \"x\": expected an integer from 1 to 100",
        ),
        (
            "state=dead",
            "invalid state \"dead\": expected running or paused",
        ),
        ("order=up", "invalid order \"up\": expected asc or desc"),
        ("nextToken=%21%21", "invalid nextToken \"!!\""),
        (
            "metadata=novalue",
            "invalid metadata filter \"novalue\": expected key=value pairs joined by &",
        ),
        ("bogus=1", "unknown query parameter `bogus`"),
    ] {
        let r = t.get(&format!("/v2/sandboxes?{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert_eq!(r.json(), err(400, msg), "{q}");
    }
    let sb = t.create(r#"{"templateID":"base"}"#).await;
    let id = sb["sandboxID"].as_str().unwrap();
    for (path, body, msg) in [
        (
            "timeout",
            r#"{"timeout":-1}"#,
            "timeout must not be negative (got -1)",
        ),
        (
            "timeout",
            r#"{}"#,
            "invalid request body: missing field `timeout`",
        ),
        (
            "timeout",
            r#"{"timeout":1,"x":1}"#,
            "unknown field `x` in request body (expected one of: timeout)",
        ),
        (
            "refreshes",
            r#"{"duration":3601}"#,
            "duration must be between 0 and 3600 seconds (got 3601)",
        ),
        (
            "connect",
            r#"{"timeout":-3}"#,
            "timeout must not be negative (got -3)",
        ),
        (
            "connect",
            "",
            "request body is missing: expected a JSON object",
        ),
    ] {
        let r = t.post(&format!("/sandboxes/{id}/{path}"), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path} {body}");
        assert_eq!(r.json(), err(400, msg), "{path} {body}");
    }
    for (path, msg) in [
        (
            "/sandboxes/metrics".to_owned(),
            "query parameter sandbox_ids is required",
        ),
        (
            "/sandboxes/metrics?sandbox_ids=NOPE".to_owned(),
            "invalid sandbox ID \"NOPE\": expected lowercase letters and digits",
        ),
        (
            format!("/v2/sandboxes/{id}/logs?direction=up"),
            "invalid direction \"up\": expected forward or backward",
        ),
        (
            format!("/v2/sandboxes/{id}/logs?limit=1001"),
            "invalid limit \"1001\": at most 1000",
        ),
        (
            format!("/v2/sandboxes/{id}/logs?level=loud"),
            "invalid level \"loud\": expected debug, info, warn or error",
        ),
        (
            format!("/sandboxes/{id}/logs?start=-1"),
            "invalid start \"-1\": expected a non-negative integer",
        ),
        (
            "/sandboxes?state=running".to_owned(),
            "unknown query parameter `state`",
        ),
    ] {
        let r = t.get(&path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(r.json(), err(400, msg), "{path}");
    }
    let r = t
        .get(&format!("/sandboxes/{id}/metrics?start=yesterday"))
        .await;
    assert_eq!(
        r.json(),
        err(400, "invalid start \"yesterday\": expected unix seconds")
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn list_filters_orders_and_paginates() {
    let t = start().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let sb = t
            .create(&format!(
                r#"{{"templateID":"base","metadata":{{"suite":"list","n":"{i}","sp ace":"a&b"}}}}"#
            ))
            .await;
        ids.push(sb["sandboxID"].as_str().unwrap().to_owned());
    }
    let other = t
        .create(r#"{"templateID":"base","metadata":{"suite":"other"}}"#)
        .await;
    let other = other["sandboxID"].as_str().unwrap().to_owned();

    // Newest first, pages of 2 chained by X-Next-Token; the last page has none.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = "/v2/sandboxes?metadata=suite%3Dlist&limit=2".to_owned();
        if let Some(tok) = &token {
            q.push_str(&format!("&nextToken={tok}"));
        }
        let r = t.get(&q).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.headers["x-total-running"], "6");
        pages += 1;
        for s in r.json().as_array().unwrap() {
            seen.push(s["sandboxID"].as_str().unwrap().to_owned());
        }
        match r.headers.get("x-next-token") {
            Some(v) => token = Some(v.to_str().unwrap().to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    // Ascending order, all on one page.
    let r = t.get("/v2/sandboxes?metadata=suite%3Dlist&order=asc").await;
    let asc: Vec<String> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sandboxID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(asc, ids);
    assert!(r.headers.get("x-next-token").is_none());

    // Twice-encoded metadata (the SDK's form): key "sp ace" = "a&b", plus n=3.
    let r = t
        .get("/v2/sandboxes?metadata=sp%2520ace%3Da%2526b%26n%3D3")
        .await;
    let body = r.json();
    let got: Vec<&str> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sandboxID"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[3].as_str()]);
    let listed = &r.json()[0];
    assert_eq!(listed["state"], "running");
    assert_eq!(listed["templateID"], "base");
    assert_eq!(
        listed["metadata"],
        json!({"suite": "list", "n": "3", "sp ace": "a&b"})
    );

    // State filter: pause one.
    let r = t.post(&format!("/sandboxes/{other}/pause"), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = t.get("/v2/sandboxes?state=paused").await;
    let paused = r.json();
    assert_eq!(paused.as_array().unwrap().len(), 1);
    assert_eq!(paused[0]["sandboxID"], other.as_str());
    assert_eq!(paused[0]["state"], "paused");
    assert_eq!(r.headers["x-total-running"], "5");
    let r = t
        .get("/v2/sandboxes?state=running,paused&template=base")
        .await;
    assert_eq!(r.json().as_array().unwrap().len(), 6);
    let r = t.get("/v2/sandboxes?template=other").await;
    assert_eq!(r.json(), json!([]));
    // v1 list: running only.
    let r = t.get("/sandboxes").await;
    assert_eq!(r.json().as_array().unwrap().len(), 5);
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn timeouts_shorten_extend_and_the_evictor_acts() {
    let t = start().await;
    let sb = t.create(r#"{"templateID":"base","timeout":60}"#).await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let end = |d: &Value| ts(&d["endAt"]);

    // Extend, then shorten: /timeout is absolute.
    let r = t
        .post(&format!("/sandboxes/{id}/timeout"), r#"{"timeout":600}"#)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let d = t.get(&format!("/sandboxes/{id}")).await.json();
    let left = (end(&d) - Utc::now()).num_seconds();
    assert!((598..=600).contains(&left), "{left}");
    let r = t
        .post(&format!("/sandboxes/{id}/timeout"), r#"{"timeout":30}"#)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let d = t.get(&format!("/sandboxes/{id}")).await.json();
    let left = (end(&d) - Utc::now()).num_seconds();
    assert!((28..=30).contains(&left), "{left}");
    // Connect and refreshes only extend.
    let r = t
        .post(&format!("/sandboxes/{id}/connect"), r#"{"timeout":5}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let d2 = t.get(&format!("/sandboxes/{id}")).await.json();
    assert_eq!(end(&d2), end(&d));
    let r = t
        .post(&format!("/sandboxes/{id}/refreshes"), r#"{"duration":100}"#)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let d3 = t.get(&format!("/sandboxes/{id}")).await.json();
    let left = (end(&d3) - Utc::now()).num_seconds();
    assert!((98..=100).contains(&left), "{left}");
    // Past the maximum lifetime (3600 s here).
    let r = t
        .post(&format!("/sandboxes/{id}/timeout"), r#"{"timeout":4000}"#)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json(),
        err(
            400,
            "timeout of 4000 s exceeds the maximum sandbox lifetime of 3600 s"
        )
    );

    // The evictor kills at the end time.
    let r = t
        .post(&format!("/sandboxes/{id}/timeout"), r#"{"timeout":1}"#)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let d = t.get(&format!("/sandboxes/{id}")).await.json();
    let deadline = end(&d);
    loop {
        let r = t.get(&format!("/sandboxes/{id}")).await;
        if r.status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            Utc::now() < deadline + chrono::Duration::seconds(2),
            "not evicted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone = Utc::now();
    assert!(gone >= deadline, "evicted before its end time");
    // 404 as soon as the kill starts; the files are gone when it ends.
    while t.dir.path().join("sandboxes").join(&id).exists() {
        assert!(
            Utc::now() < deadline + chrono::Duration::seconds(5),
            "files left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // autoPause: paused instead of killed.
    let sb = t
        .create(r#"{"templateID":"base","timeout":1,"autoPause":true}"#)
        .await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let d = t.get(&format!("/sandboxes/{id}")).await.json();
        if d["state"] == "paused" {
            assert_eq!(d["lifecycle"]["onTimeout"], "pause");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "not paused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn pause_resume_and_connect() {
    let t = start().await;
    let sb = t.create(r#"{"templateID":"base","timeout":60}"#).await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();

    let r = t.post(&format!("/sandboxes/{id}/resume"), "{}").await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.json(),
        err(409, &format!("sandbox {id} is already running"))
    );
    let r = t.post(&format!("/sandboxes/{id}/pause"), "").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = t
        .post(&format!("/sandboxes/{id}/pause"), r#"{"memory":true}"#)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        r.json(),
        err(409, &format!("sandbox '{id}' is already paused"))
    );
    let d = t.get(&format!("/sandboxes/{id}")).await.json();
    assert_eq!(d["state"], "paused");
    let r = t
        .post(&format!("/sandboxes/{id}/timeout"), r#"{"timeout":10}"#)
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    // envd is unreachable while paused.
    let r = t.envd(Method::GET, &id, "/health").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        support::not_found_502(&id)
    );

    // connect resumes: 201, same token; then 200 while running.
    let r = t
        .post(&format!("/sandboxes/{id}/connect"), r#"{"timeout":90}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["envdAccessToken"], token.as_str());
    let d = t.get(&format!("/sandboxes/{id}")).await.json();
    assert_eq!(d["state"], "running");
    let left = (ts(&d["endAt"]) - Utc::now()).num_seconds();
    assert!((88..=90).contains(&left), "{left}");
    let r = t.envd(Method::GET, &id, "/health").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = t.post(&format!("/v2/sandboxes/{id}/connect"), "").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);

    // Deprecated resume: 201 after a pause.
    assert_eq!(
        t.post(&format!("/sandboxes/{id}/pause"), "").await.status,
        StatusCode::NO_CONTENT
    );
    let r = t
        .post(&format!("/sandboxes/{id}/resume"), r#"{"timeout":30}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["sandboxID"], id.as_str());
    // Kill works on paused sandboxes too.
    assert_eq!(
        t.post(&format!("/sandboxes/{id}/pause"), "").await.status,
        StatusCode::NO_CONTENT
    );
    t.kill(&id).await;
    for (path, body) in [
        ("pause", "{}"),
        ("resume", "{}"),
        ("connect", r#"{"timeout":5}"#),
        ("timeout", r#"{"timeout":5}"#),
        ("refreshes", "{}"),
    ] {
        let r = t.post(&format!("/sandboxes/{id}/{path}"), body).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
    }
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn metrics_logs_and_templates() {
    let t = start().await;
    let sb = t.create(r#"{"templateID":"base"}"#).await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let r = t
        .get(&format!("/sandboxes/{id}/metrics?start=0&end=9999999999"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let m = &r.json()[0];
    assert_eq!(m["cpuCount"], 2);
    assert_eq!(m["memTotal"], 512u64 << 20);
    assert!(m["memUsed"].as_i64().unwrap() > 0);
    // The default disk budget, 10 GiB: the image's statvfs (less ext4's metadata).
    let disk_total = m["diskTotal"].as_u64().unwrap();
    assert!(disk_total > 9 << 30 && disk_total < 10 << 30, "{m}");
    assert!(m["diskUsed"].as_u64().unwrap() < 64 << 20, "{m}");
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.json()["diskSizeMB"],
        10240
    );
    assert!(m["timestampUnix"].as_i64().unwrap() > 0);
    let r = t.get(&format!("/sandboxes/metrics?sandbox_ids={id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["sandboxes"][&id]["memUsed"].as_i64().unwrap() > 0);

    let r = t.get(&format!("/sandboxes/{id}/logs")).await;
    assert_eq!(r.status, StatusCode::OK);
    let logs = r.json();
    let line = logs["logs"][0]["line"].as_str().unwrap();
    assert!(line.contains("envd started"), "{line}");
    assert_eq!(logs["logEntries"][0]["level"], "info");
    let r = t
        .get(&format!(
            "/v2/sandboxes/{id}/logs?search=envd%20started&level=info"
        ))
        .await;
    assert_eq!(r.json()["logs"].as_array().unwrap().len(), 1);
    let r = t.get(&format!("/v2/sandboxes/{id}/logs?level=error")).await;
    assert_eq!(r.json(), json!({"logs": []}));

    let r = t.get("/templates").await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.json();
    assert_eq!(list[0]["templateID"], "base");
    assert_eq!(list[0]["buildStatus"], "ready");
    let r = t.get("/templates/base").await;
    assert_eq!(r.json()["templateID"], "base");
    let r = t.get("/templates/nope").await;
    assert_eq!(r.json(), err(404, "template 'nope' not found"));
    let r = t.call(Method::DELETE, "/templates/base", None).await;
    assert_eq!(
        r.json(),
        err(400, "the default template base cannot be deleted")
    );
    let r = t.call(Method::DELETE, "/templates/nope", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    t.shutdown().await;
}

/// Finds processes whose environment names `id` (envd runs with `E2B_SANDBOX_ID=<id>`).
fn processes_of(id: &str) -> Vec<u32> {
    let needle = format!("E2B_SANDBOX_ID={id}");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == needle.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn restart_reclaims_sandboxes_of_a_crashed_server_and_keeps_paused_files() {
    let dir = tempfile::tempdir().unwrap();
    // A real `e2b-local serve` process, SIGKILLed with a sandbox alive.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_e2b-local"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--network", "none"])
        .args(["--cgroup-parent", support::CGROUP_PARENT, "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let key = e2b_local::state::Store::open(dir.path())
        .unwrap()
        .api_key()
        .unwrap();
    let http = support::http();
    let url = format!("http://127.0.0.1:{port}");
    let start = Instant::now();
    let sb: Value = loop {
        let r = http
            .post(format!("{url}/sandboxes"))
            .header("x-api-key", &key)
            .json(&json!({"templateID": "base"}))
            .send()
            .await;
        if let Ok(r) = r {
            assert_eq!(r.status(), StatusCode::CREATED);
            break r.json().await.unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    assert_eq!(processes_of(&id).len(), 1);
    // A second sandbox with a file of `user`, paused when the server crashes.
    let r = http
        .post(format!("{url}/sandboxes"))
        .header("x-api-key", &key)
        .json(&json!({"templateID": "base", "metadata": {"keep": "me"}}))
        .send()
        .await
        .unwrap();
    let p: Value = r.json().await.unwrap();
    let pid = p["sandboxID"].as_str().unwrap().to_owned();
    let ptoken = p["envdAccessToken"].as_str().unwrap().to_owned();
    let r = http
        .post(format!("{url}/files?path=/home/user/kept.txt"))
        .header("E2b-Sandbox-Id", &pid)
        .header("E2b-Sandbox-Port", "49983")
        .header("X-Access-Token", &ptoken)
        .header("content-type", "application/octet-stream")
        .body("kept across restarts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = http
        .post(format!("{url}/sandboxes/{pid}/pause"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    child.kill().unwrap();
    child.wait().unwrap();
    // The sandbox outlives the crashed server...
    assert_eq!(processes_of(&id).len(), 1);
    assert!(dir.path().join("sandboxes").join(&id).exists());

    // ...and a new server reclaims it and marks it killed.
    let t = start_in(dir, Duration::from_secs(3600)).await;
    // The server listens before the reclaim ends; what it leaves is checked once it is done.
    t.server().manager().recovered().await;
    assert!(processes_of(&id).is_empty());
    assert!(!t.dir.path().join("sandboxes").join(&id).exists());
    let r = t.get(&format!("/sandboxes/{id}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let recs = e2b_local::state::Store::open(t.dir.path())
        .unwrap()
        .all_sandboxes()
        .unwrap();
    let rec = recs.iter().find(|r| r.id == id).unwrap();
    assert_eq!(rec.state, e2b_local::state::SandboxState::Killed);
    // The key survives the restart.
    assert_eq!(t.key, key);

    // The paused sandbox is back, paused, with its files (memory is not kept).
    let d = t.get(&format!("/sandboxes/{pid}")).await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.text);
    let d = d.json();
    assert_eq!(d["state"], "paused");
    assert_eq!(d["metadata"], json!({"keep": "me"}));
    assert_eq!(d["envdAccessToken"], ptoken.as_str());
    let r = t
        .post(&format!("/sandboxes/{pid}/connect"), r#"{"timeout":60}"#)
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = t
        .envd(Method::GET, &pid, "/files?path=/home/user/kept.txt")
        .header("X-Access-Token", &ptoken)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "kept across restarts");
    let mut resp =
        support::start_process(&t, &pid, &ptoken, "stat -c %U /home/user/kept.txt").await;
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        out.extend_from_slice(&c);
    }
    // base64("user\n") = "dXNlcgo="
    assert!(String::from_utf8_lossy(&out).contains("dXNlcgo="));
    assert!(!t.dir.path().join("paused").join(&pid).exists());
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn a_sandbox_whose_envd_dies_is_cleaned_up() {
    let t = start().await;
    let sb = t.create(r#"{"templateID":"base","timeout":120}"#).await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
    // As root (envd runs as root); the command's parent is envd.
    let body = support::envelope(&json!({
        "process": {"cmd": "/bin/bash", "args": ["-c", "kill -9 $PPID"]}
    }));
    let mut resp = t
        .envd(Method::POST, &id, "/process.Process/Start")
        .header("X-Access-Token", &token)
        .header("Authorization", "Basic cm9vdDo=")
        .header("content-type", "application/connect+json")
        .body(body)
        .send()
        .await
        .unwrap();
    // envd may die before its response head is out: then the proxy answers 502.
    assert!(
        [StatusCode::OK, StatusCode::BAD_GATEWAY].contains(&resp.status()),
        "{}",
        resp.status()
    );
    while let Ok(Some(_)) = resp.chunk().await {}
    let start = Instant::now();
    loop {
        let r = t.get(&format!("/sandboxes/{id}")).await;
        if r.status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "not cleaned up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while t.dir.path().join("sandboxes").join(&id).exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "files left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = t.envd(Method::GET, &id, "/health").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        support::not_found_502(&id)
    );
    t.shutdown().await;
}

/// Defect 4: a 1 GiB upload to `/tmp` of a 512 MiB sandbox is refused with 507 when the
/// sized tmpfs is full; envd (the OOM killer's last choice) and the sandbox live on, and
/// processes envd starts get the ordinary score of 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn a_large_upload_to_tmp_is_507_and_the_sandbox_lives() {
    let t = start().await;
    let sb = t.create(r#"{"templateID":"base","timeout":120}"#).await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
    let envd_pids = processes_of(&id);
    assert!(!envd_pids.is_empty());
    // -1000 needs CAP_SYS_RESOURCE on the host; without it (a restricted host, reported by
    // `Runtime::unavailable`) envd keeps the server's 0, still below its processes' 100.
    let protected =
        e2b_local::isolation::caps::effective_has(e2b_local::isolation::caps::cap::SYS_RESOURCE);
    for pid in &envd_pids {
        let adj = std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap();
        assert_eq!(
            adj.trim(),
            if protected { "-1000" } else { "0" },
            "pid {pid}"
        );
    }
    let chunk = bytes::Bytes::from(vec![0x5a_u8; 1 << 20]);
    let body =
        futures_util::stream::iter((0..1024).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = t
        .envd(Method::POST, &id, "/files?path=/tmp/big.bin")
        .header("X-Access-Token", &token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    assert_eq!(v["code"], 507, "{v}");
    let message = v["message"].as_str().unwrap();
    let attempted = message
        .strip_prefix("attempted to write ")
        .and_then(|m| m.strip_suffix(" bytes: not enough disk space available"))
        .unwrap_or_else(|| panic!("{message}"));
    assert!(attempted.parse::<u64>().is_ok(), "{message}");
    // Alive: the sandbox, envd, and a new process with the ordinary score; the partial
    // upload left nothing in /tmp.
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.status,
        StatusCode::OK
    );
    assert_eq!(processes_of(&id), envd_pids);
    let mut resp = support::start_process(
        &t,
        &id,
        &token,
        r#"echo -n "$(cat /proc/self/oom_score_adj) $(ls -A /tmp | wc -l)""#,
    )
    .await;
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        out.extend_from_slice(&c);
    }
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains(r#""stdout":"MTAwIDA="}"#), "{text}"); // base64("100 0")
    t.kill(&id).await;
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn creates_cut_off_by_the_client_or_by_shutdown_leave_no_sandbox_behind() {
    let t = support::start().await;
    // Clients that give up after a few milliseconds, mid-create.
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(3))
        .build()
        .unwrap();
    for _ in 0..5 {
        let r = impatient
            .post(format!("{}/sandboxes", t.url))
            .header("x-api-key", &t.key)
            .header("content-type", "application/json")
            .body(r#"{"templateID":"base"}"#)
            .send()
            .await;
        assert!(r.is_err(), "the create answered within 3 ms: {r:?}");
    }
    // And creates still under way when the server shuts down.
    let pending: Vec<_> = (0..3)
        .map(|_| {
            let (http, url, key) = (t.http.clone(), t.url.clone(), t.key.clone());
            tokio::spawn(async move {
                http.post(format!("{url}/sandboxes"))
                    .header("x-api-key", key)
                    .header("content-type", "application/json")
                    .body(r#"{"templateID":"base"}"#)
                    .send()
                    .await
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    // The cut-off creates went on: their sandboxes are tracked (and so can be killed).
    let mgr = t.server().manager().clone();
    let support::TestServer { server, dir, .. } = t;
    server.unwrap().shutdown().await;
    let sandboxes_dir = dir.path().join("sandboxes");
    assert!(sandboxes_dir.is_dir());
    for p in pending {
        let _ = p.await;
    }
    assert!(
        mgr.all().is_empty(),
        "live after shutdown: {}",
        mgr.all().len()
    );
    let left: Vec<_> = std::fs::read_dir(&sandboxes_dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "sandbox directories left: {left:?}");
}

/// Defect 6: with a disk budget (`disk_mib`), `diskSizeMB` and the metrics report it, an
/// upload past it through envd answers 507 with the sandbox alive, the host holds at most the
/// budget for it, and kill leaves no loop device, mount or image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: the server spawns sandboxes (namespaces, mounts, cgroups)"]
async fn an_upload_past_the_disk_budget_is_507_and_the_budget_is_reported() {
    let t = support::start_with(tempfile::tempdir().unwrap(), |b| b.disk_mib(64)).await;
    let sb = t.create(r#"{"templateID":"base","timeout":120}"#).await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.json()["diskSizeMB"],
        64
    );
    let listed = t.get("/v2/sandboxes").await.json();
    assert_eq!(listed[0]["diskSizeMB"], 64, "{listed}");
    let image = t.dir.path().join("sandboxes").join(&id).join("disk.img");
    let allocated = || {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&image).map(|m| m.blocks() * 512).unwrap()
    };
    let m = t.get(&format!("/sandboxes/{id}/metrics")).await.json()[0].clone();
    let total = m["diskTotal"].as_u64().unwrap();
    assert!(total > 58 << 20 && total < 64 << 20, "{m}");

    let chunk = bytes::Bytes::from(vec![0x5a_u8; 1 << 20]);
    let body =
        futures_util::stream::iter((0..128).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = t
        .envd(Method::POST, &id, "/files?path=/home/user/big.bin")
        .header("X-Access-Token", &token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.starts_with("attempted to write ")
            && message.ends_with(" bytes: not enough disk space available"),
        "{message}"
    );
    assert!(allocated() <= 64 << 20, "{} bytes", allocated());
    // Alive, and the full disk is what the metrics say.
    assert_eq!(
        t.get(&format!("/sandboxes/{id}")).await.status,
        StatusCode::OK
    );
    let mut resp = support::start_process(&t, &id, &token, "echo -n ok").await;
    let mut out = Vec::new();
    while let Some(c) = resp.chunk().await.unwrap() {
        out.extend_from_slice(&c);
    }
    assert!(String::from_utf8_lossy(&out).contains(r#""stdout":"b2s="}"#)); // base64("ok")
    t.kill(&id).await;
    let server = t.server();
    let rt = server.manager().clone();
    tokio::task::spawn_blocking(move || rt.runtime().wait_for_disk_cleanup())
        .await
        .unwrap();
    assert!(!image.exists());
    let dir = std::fs::canonicalize(t.dir.path()).unwrap();
    for entry in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let backing =
            std::fs::read_to_string(entry.path().join("loop/backing_file")).unwrap_or_default();
        // Only the ready pool's disks are attached.
        assert!(
            !backing.starts_with(dir.to_str().unwrap()) || backing.contains("/disks/ready/"),
            "{backing}"
        );
    }
    assert_eq!(
        std::fs::read_dir(t.dir.path().join("disks/trash"))
            .unwrap()
            .count(),
        0
    );
    let path = t.dir.path().to_path_buf();
    t.shutdown().await;
    // Shutdown removes the ready pool: nothing of the data directory stays mounted.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(path.to_str().unwrap()), "{mounts}");
}
