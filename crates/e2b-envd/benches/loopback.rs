#![allow(missing_docs)]
//! Connect over loopback, client and server from this crate.
//!
//! `cargo bench -p e2b-envd --features server --bench loopback`
//!
//! - `unary/{json,proto}`: one `List` round trip (issue target: p50 ≤ 150 µs).
//! - `stream_32k/{json,proto}`: a server stream of 32 KiB `stdout` data events, as envd sends
//!   command output (targets: ≥ 400 MB/s JSON, ≥ 1 GB/s binary).

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use e2b_envd::pb::process::process_client::ProcessClient;
use e2b_envd::pb::process::process_server::{Process, ProcessServer};
use e2b_envd::pb::process::*;
use e2b_envd::{Client, ConnectError, Encoding, Request, Streaming};
use futures_util::stream::{self, BoxStream, StreamExt};

const CHUNK: usize = 32 * 1024;
const CHUNKS_PER_STREAM: usize = 512;

struct BenchProcess {
    chunk: Vec<u8>,
}

fn unused<T>() -> Result<T, ConnectError> {
    Err(ConnectError::unimplemented("not benchmarked"))
}

impl Process for BenchProcess {
    type ConnectStream = BoxStream<'static, Result<ConnectResponse, ConnectError>>;
    type StartStream = BoxStream<'static, Result<StartResponse, ConnectError>>;

    async fn list(&self, _: Request<ListRequest>) -> Result<ListResponse, ConnectError> {
        Ok(ListResponse::default())
    }
    async fn start(&self, _: Request<StartRequest>) -> Result<Self::StartStream, ConnectError> {
        let chunk = self.chunk.clone();
        Ok(stream::iter(0..CHUNKS_PER_STREAM)
            .map(move |_| {
                Ok(StartResponse {
                    event: Some(ProcessEvent {
                        event: Some(process_event::Event::Data(process_event::DataEvent {
                            output: Some(process_event::data_event::Output::Stdout(chunk.clone())),
                        })),
                    }),
                })
            })
            .boxed())
    }
    async fn connect(
        &self,
        _: Request<ConnectRequest>,
    ) -> Result<Self::ConnectStream, ConnectError> {
        unused()
    }
    async fn update(&self, _: Request<UpdateRequest>) -> Result<UpdateResponse, ConnectError> {
        unused()
    }
    async fn stream_input(
        &self,
        _: Request<Streaming<StreamInputRequest>>,
    ) -> Result<StreamInputResponse, ConnectError> {
        unused()
    }
    async fn send_input(
        &self,
        _: Request<SendInputRequest>,
    ) -> Result<SendInputResponse, ConnectError> {
        unused()
    }
    async fn send_signal(
        &self,
        _: Request<SendSignalRequest>,
    ) -> Result<SendSignalResponse, ConnectError> {
        unused()
    }
    async fn close_stdin(
        &self,
        _: Request<CloseStdinRequest>,
    ) -> Result<CloseStdinResponse, ConnectError> {
        unused()
    }
}

fn loopback(c: &mut Criterion) {
    // Client and server each get a runtime thread, as in production where they are
    // separate processes.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let chunk = (0..CHUNK).map(|i| (i % 251) as u8).collect();
    let router = ProcessServer::new(BenchProcess { chunk }).into_router();
    server.spawn(async move { axum::serve(listener, router).await.unwrap() });

    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let clients = [Encoding::Json, Encoding::Proto].map(|encoding| {
        let client = Client::builder(&url).encoding(encoding).build().unwrap();
        (
            if encoding == Encoding::Json {
                "json"
            } else {
                "proto"
            },
            ProcessClient::new(client),
        )
    });

    let mut unary = c.benchmark_group("unary");
    for (name, client) in &clients {
        unary.bench_function(*name, |b| {
            b.to_async(&client_rt)
                .iter(|| async { client.list(ListRequest {}).await.unwrap() })
        });
    }
    unary.finish();

    let mut streams = c.benchmark_group("stream_32k");
    streams.throughput(Throughput::Bytes((CHUNK * CHUNKS_PER_STREAM) as u64));
    streams.measurement_time(Duration::from_secs(8));
    for (name, client) in &clients {
        streams.bench_function(*name, |b| {
            b.to_async(&client_rt).iter(|| async {
                let mut stream = client.start(StartRequest::default()).await.unwrap();
                let mut bytes = 0;
                while let Some(message) = stream.next().await {
                    if let Some(process_event::Event::Data(process_event::DataEvent {
                        output: Some(process_event::data_event::Output::Stdout(out)),
                    })) = message.unwrap().event.and_then(|e| e.event)
                    {
                        bytes += out.len();
                    }
                }
                assert_eq!(bytes, CHUNK * CHUNKS_PER_STREAM);
            })
        });
    }
    streams.finish();
}

criterion_group!(benches, loopback);
criterion_main!(benches);
