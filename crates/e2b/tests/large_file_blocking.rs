//! The blocking twin of `large_file.rs`: 256 MiB through `write_reader` and the
//! `std::io::Read` of `read_stream`, with the process's memory bounded.

mod support;

use std::io::Read;

const SIZE: u64 = 256 * 1024 * 1024;

fn byte_at(i: u64) -> u8 {
    ((i * 7 + i / 4096) % 251) as u8
}

/// A reader producing the test pattern without holding it.
struct Pattern {
    offset: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (SIZE - self.offset).min(buf.len() as u64) as usize;
        for (k, b) in buf[..n].iter_mut().enumerate() {
            *b = byte_at(self.offset + k as u64);
        }
        self.offset += n as u64;
        Ok(n)
    }
}

#[test]
fn a_256_mib_file_through_read_and_write_traits_in_bounded_memory() {
    let envd = support::Envd::start();
    let sbx = e2b::blocking::Sandbox::builder()
        .config(envd.config())
        .create()
        .unwrap();
    let dir = support::tempdir();
    let path = format!("{}/big.bin", dir.path().display());
    let before = support::rss_bytes();

    let info = sbx
        .files()
        .write_reader(&path, Pattern { offset: 0 })
        .unwrap();
    assert_eq!(info.path, path);

    let mut reader = sbx.files().read_stream(&path).unwrap();
    let mut buf = vec![0u8; 100_000];
    let mut offset = 0u64;
    let mut peak = support::rss_bytes();
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, byte_at(offset + k as u64), "byte {}", offset + k as u64);
        }
        offset += n as u64;
        if offset % (32 << 20) < n as u64 {
            peak = peak.max(support::rss_bytes());
        }
    }
    assert_eq!(offset, SIZE);
    let growth = peak.max(support::rss_bytes()).saturating_sub(before);
    eprintln!("rss growth {} MiB", growth >> 20);
    assert!(growth < 100 << 20, "memory grew by {} MiB", growth >> 20);
}
