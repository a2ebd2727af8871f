//! Snapshots against an in-process server with real sandboxes: `POST
//! /sandboxes/{id}/snapshots` makes a template sandboxes start from (by name, `name:tag` or
//! id), a used name becomes a new build, `GET /snapshots` filters and pages, `DELETE
//! /templates/{id}` removes one, and a restart keeps the rest. Needs root: ignored unless
//! run with `-- --ignored`.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::{TestServer, err, start, start_with, stdout_of};

/// Creates a sandbox of `template`; returns its id and envd token.
async fn sandbox(t: &TestServer, template: &str) -> (String, String) {
    let v = t
        .create(&json!({"templateID": template, "timeout": 600}).to_string())
        .await;
    (
        v["sandboxID"].as_str().unwrap().to_owned(),
        v["envdAccessToken"].as_str().unwrap().to_owned(),
    )
}

/// Snapshots `id` with `body`; returns the 201 body.
async fn snapshot(t: &TestServer, id: &str, body: Value) -> Value {
    let r = t
        .post(&format!("/sandboxes/{id}/snapshots"), &body.to_string())
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json()
}

/// Every snapshot id of `GET /snapshots?<query>`, one page.
async fn listed(t: &TestServer, query: &str) -> (Vec<String>, Option<String>) {
    let r = t.get(&format!("/snapshots?{query}")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let ids = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["snapshotID"].as_str().unwrap().to_owned())
        .collect();
    let next = r
        .headers
        .get("x-next-token")
        .map(|v| v.to_str().unwrap().to_owned());
    (ids, next)
}

const WRITE: &str =
    "printf one > /home/user/a && mkdir -p /home/user/d && printf two > /home/user/d/b";
const READ: &str = "cat /home/user/a; echo; cat /home/user/d/b; echo";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes (namespaces, mounts, cgroups)"]
async fn snapshots_are_templates_that_sandboxes_start_from() {
    let t = start().await;
    let (src, token) = sandbox(&t, "base").await;
    stdout_of(&t, &src, &token, WRITE).await;
    let v = snapshot(&t, &src, json!({"name": "snap"})).await;
    assert_eq!(
        v,
        json!({"snapshotID": "snap:default", "names": ["snap:default"]})
    );
    // The source runs on.
    assert_eq!(stdout_of(&t, &src, &token, "echo up").await, "up\n");
    let tpl = t.get("/templates/snap").await.json();
    let template_id = tpl["templateID"].as_str().unwrap().to_owned();
    for reference in ["snap", "snap:default", template_id.as_str()] {
        let (id, tok) = sandbox(&t, reference).await;
        assert_eq!(
            stdout_of(&t, &id, &tok, READ).await,
            "one\ntwo\n",
            "{reference}"
        );
        t.kill(&id).await;
    }

    // The name again: a new build of the same template, which its name now starts.
    stdout_of(&t, &src, &token, "printf three > /home/user/a").await;
    let v = snapshot(&t, &src, json!({"name": "snap"})).await;
    assert_eq!(v["snapshotID"], "snap:default");
    let tpl = t.get("/templates/snap").await.json();
    assert_eq!(tpl["templateID"], template_id.as_str());
    assert_eq!(tpl["builds"].as_array().unwrap().len(), 2);
    let (id, tok) = sandbox(&t, "snap").await;
    assert_eq!(stdout_of(&t, &id, &tok, READ).await, "three\ntwo\n");

    // A snapshot of that sandbox stacks on the snapshot it came from; a tag names it.
    stdout_of(
        &t,
        &id,
        &tok,
        "rm /home/user/d/b && printf four > /home/user/c",
    )
    .await;
    let v = snapshot(&t, &id, json!({"name": "snap:v2"})).await;
    assert_eq!(v, json!({"snapshotID": "snap:v2", "names": ["snap:v2"]}));
    let (id2, tok2) = sandbox(&t, "snap:v2").await;
    let read = "cat /home/user/a /home/user/c; test -e /home/user/d/b || echo gone";
    assert_eq!(stdout_of(&t, &id2, &tok2, read).await, "threefourgone\n");

    // Without a name: a template named by its id, no names.
    let v = snapshot(&t, &src, json!({})).await;
    let sid = v["snapshotID"].as_str().unwrap().to_owned();
    assert!(sid.ends_with(":default"), "{sid}");
    assert_eq!(v["names"], json!([]));
    let (id3, tok3) = sandbox(&t, &sid).await;
    assert_eq!(stdout_of(&t, &id3, &tok3, READ).await, "three\ntwo\n");
    // py 2.63 may send `memory`; it is accepted (the snapshot is the files either way).
    let v = snapshot(&t, &src, json!({"name": "mem", "memory": false})).await;
    assert_eq!(v["snapshotID"], "mem:default");

    // Bad input.
    let path = format!("/sandboxes/{src}/snapshots");
    for (body, status, message) in [
        (
            r#"{"name":"Bad Name"}"#,
            400,
            "name 'Bad Name': a template name is 1 to 64 characters of a-z, 0-9, '.', '_' and '-'",
        ),
        (
            r#"{"name":"base"}"#,
            400,
            "name 'base' is the built-in template",
        ),
        (
            r#"{"name":"ok:bad tag"}"#,
            400,
            "tag 'bad tag': a tag is 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'",
        ),
        (
            r#"{"names":"x"}"#,
            400,
            "unknown field `names` in request body (expected one of: name, memory)",
        ),
    ] {
        let r = t.post(&path, body).await;
        assert_eq!(r.json(), err(status, message), "{body}");
    }
    let r = t
        .post("/sandboxes/inosuchsandbox000000000/snapshots", "{}")
        .await;
    assert_eq!(
        r.json(),
        err(
            404,
            "sandbox \"inosuchsandbox000000000\" doesn't exist or you don't have access to it"
        )
    );
    // A template cannot go while another template's snapshot stands on it.
    snapshot(&t, &id2, json!({"name": "child"})).await;
    let r = t.call(Method::DELETE, "/templates/snap", None).await;
    assert_eq!(
        r.json(),
        err(409, "template 'snap' cannot be deleted: child built on it")
    );
    t.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: sandboxes (namespaces, mounts, cgroups)"]
async fn snapshots_list_filter_page_delete_and_outlive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = start_with(dir, |b| b).await;
    let (a, a_token) = sandbox(&t, "base").await;
    let (b, _) = sandbox(&t, "base").await;
    stdout_of(&t, &a, &a_token, WRITE).await;
    for (id, name) in [(&a, "s1"), (&b, "s2"), (&a, "s3")] {
        snapshot(&t, id, json!({"name": name})).await;
    }
    let all: Vec<String> = ["s3:default", "s2:default", "s1:default"]
        .map(String::from)
        .into();
    assert_eq!(listed(&t, "").await, (all.clone(), None));
    assert_eq!(
        listed(&t, &format!("sandboxID={a}")).await.0,
        vec!["s3:default", "s1:default"]
    );
    assert_eq!(listed(&t, "name=s2").await.0, vec!["s2:default"]);
    assert_eq!(listed(&t, "name=s2:default").await.0, vec!["s2:default"]);
    assert_eq!(listed(&t, "name=s2:v9").await.0, Vec::<String>::new());
    // Pages of one, through X-Next-Token.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let q = match &token {
            Some(t) => format!("limit=1&nextToken={t}"),
            None => "limit=1".to_owned(),
        };
        let (page, next) = listed(&t, &q).await;
        assert_eq!(page.len(), 1);
        seen.extend(page);
        match next {
            Some(n) => token = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, all);
    for (query, message) in [
        (
            "limit=0",
            "invalid limit \"0\": expected an integer from 1 to 100",
        ),
        ("nextToken=!!", "invalid nextToken \"!!\""),
        ("state=running", "unknown query parameter `state`"),
    ] {
        let r = t.get(&format!("/snapshots?{query}")).await;
        assert_eq!(r.json(), err(400, message), "{query}");
    }

    // Delete by the snapshot's id (py and js send it percent-encoded); again: 404.
    let r = t
        .call(Method::DELETE, "/templates/s2%3Adefault", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    let r = t
        .call(Method::DELETE, "/templates/s2%3Adefault", None)
        .await;
    assert_eq!(r.json(), err(404, "template 's2' not found"));
    let r = t.call(Method::DELETE, "/templates/s1%3Av9", None).await;
    assert_eq!(r.json(), err(404, "template 's1:v9' not found"));
    assert_eq!(listed(&t, "").await.0, vec!["s3:default", "s1:default"]);

    // A restart keeps the snapshots (sources and all), and what was deleted stays gone.
    let TestServer { server, dir, .. } = t;
    server.unwrap().shutdown().await;
    let t = start_with(dir, |b| b).await;
    assert_eq!(listed(&t, "").await.0, vec!["s3:default", "s1:default"]);
    let (id, tok) = sandbox(&t, "s3").await;
    assert_eq!(stdout_of(&t, &id, &tok, READ).await, "one\ntwo\n");
    t.kill(&id).await;
    for s in ["s1", "s3"] {
        let r = t
            .call(Method::DELETE, &format!("/templates/{s}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    }
    assert_eq!(listed(&t, "").await.0, Vec::<String>::new());
    let layers = std::fs::read_dir(t.dir.path().join("layers"))
        .unwrap()
        .count();
    assert_eq!(layers, 0);
    t.shutdown().await;
}
