//! The volume content API (`openapi/volume-content.yml`): the files of one volume, read and
//! written without a sandbox. Requests carry the volume's token as
//! `Authorization: Bearer <token>` (the `token` of [`crate::types::VolumeAndToken`]); build a
//! `reqwest` client with it as a default header and pass it to [`Client::new_with_client`].
//!
//! ```no_run
//! use e2b_api::volume_content::Client;
//! use e2b_api::volume_content::prelude::*;
//!
//! # async fn demo(token: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let mut headers = reqwest::header::HeaderMap::new();
//! headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
//! let http = reqwest::Client::builder().default_headers(headers).build()?;
//! let client = Client::new_with_client("https://api.e2b.app", http);
//! let listing = client.list_volume_dir().volume_id("vol-id").path("/").send().await?;
//! for entry in listing.into_inner().iter() {
//!     println!("{} {:?} {}", entry.path, entry.type_, entry.size);
//! }
//! # Ok(())
//! # }
//! ```

// Generated like the control plane's client (see the crate root).
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    rustdoc::bare_urls,
    rustdoc::broken_intra_doc_links
)]
mod generated;

pub use generated::*;
