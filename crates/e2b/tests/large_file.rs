//! A 256 MiB file written and read back as streams, with the client's memory bounded.
//! (Own test binary, so that the RSS measured is this test's alone.)

mod support;

use bytes::Bytes;
use futures_util::StreamExt as _;

const SIZE: u64 = 256 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_256_mib_file_streams_both_ways_in_bounded_memory() {
    let envd = support::Envd::start();
    let sbx = e2b::Sandbox::builder()
        .config(envd.config())
        .create()
        .await
        .unwrap();
    let dir = support::tempdir();
    let path = format!("{}/big.bin", dir.path().display());

    let before = support::rss_bytes();
    // Deterministic content: byte i is (i * 7 + i / 4096) mod 251.
    let byte_at = |i: u64| ((i * 7 + i / 4096) % 251) as u8;
    let chunks = futures_util::stream::iter((0..SIZE / CHUNK as u64).map(move |n| {
        let start = n * CHUNK as u64;
        let data: Vec<u8> = (start..start + CHUNK as u64).map(byte_at).collect();
        Ok::<_, std::io::Error>(Bytes::from(data))
    }));
    let info = sbx.files().write_stream(&path, chunks).await.unwrap();
    assert_eq!(info.path, path);
    let after_write = support::rss_bytes();

    let mut stream = sbx.files().read_stream(&path).await.unwrap();
    let mut offset = 0u64;
    let mut peak = after_write;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        for (k, b) in chunk.iter().enumerate() {
            assert_eq!(*b, byte_at(offset + k as u64), "byte {}", offset + k as u64);
        }
        offset += chunk.len() as u64;
        if offset % (32 << 20) < chunk.len() as u64 {
            peak = peak.max(support::rss_bytes());
        }
    }
    assert_eq!(offset, SIZE);
    peak = peak.max(support::rss_bytes());
    let growth = peak.saturating_sub(before);
    eprintln!(
        "rss before {} MiB, after write {} MiB, peak during read {} MiB, growth {} MiB",
        before >> 20,
        after_write >> 20,
        peak >> 20,
        growth >> 20
    );
    // envd runs in this process too, so this bounds both ends together.
    assert!(growth < 100 << 20, "memory grew by {} MiB", growth >> 20);
}
