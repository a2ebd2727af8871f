//! Every operation runs inside one `e2b_api` span named after its operation, recorded by the
//! hand-written `ClientHooks` implementation.

use std::sync::{Arc, Mutex};

use e2b_api::ClientConfig;
use e2b_api::prelude::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

/// Records the name and fields of every span and the fields of this crate's events.
#[derive(Clone, Default)]
struct Recorder {
    spans: Arc<Mutex<Vec<String>>>,
    events: Arc<Mutex<Vec<String>>>,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = Fields(attrs.metadata().name().to_owned());
        attrs.record(&mut fields);
        self.spans.lock().unwrap().push(fields.0);
    }

    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        // reqwest and hyper log at trace level too; keep this crate's events only.
        if event.metadata().target() != "e2b_api" {
            return;
        }
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.events.lock().unwrap().push(fields.0);
    }
}

#[tokio::test]
async fn one_span_per_operation() {
    let recorder = Recorder::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(recorder.clone()));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = ClientConfig::new(format!("http://{addr}"), "e2b_00")
        .build()
        .unwrap();
    client
        .delete_sandbox()
        .sandbox_id("i1")
        .send()
        .await
        .unwrap();

    let spans = recorder.spans.lock().unwrap().clone();
    assert_eq!(
        spans,
        ["e2b_api operation=\"delete_sandbox\" method=DELETE path=\"/sandboxes/i1\""]
    );
    let events = recorder.events.lock().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].starts_with(" message=response status=204 elapsed_ms="),
        "{events:?}"
    );
}
