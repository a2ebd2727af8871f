//! Shared parts of the benchmark binaries (the side-by-side SDK benchmark is `src/main.rs`;
//! e2b-local's own benchmarks are `src/bin/*.rs`).

pub mod local_api;
