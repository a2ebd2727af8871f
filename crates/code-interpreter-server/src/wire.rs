//! The Jupyter messaging protocol's wire form (version 5.3) over ZeroMQ multipart messages:
//! `<IDS|MSG>`, the HMAC-SHA256 signature (hex), then the header, parent header, metadata and
//! content as JSON frames; and [`ShellClient`], the bare request/reply a benchmark measures
//! the server against.

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use zeromq::{DealerSocket, Socket as _, SocketRecv as _, SocketSend as _, ZmqMessage};

/// The frame separating routing identities from the signed message.
const DELIMITER: &[u8] = b"<IDS|MSG>";
/// The messaging protocol version we speak.
const PROTOCOL_VERSION: &str = "5.3";

/// A message header (the fields the protocol requires).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Header {
    pub(crate) msg_id: String,
    pub(crate) msg_type: String,
    #[serde(default)]
    pub(crate) session: String,
    #[serde(default)]
    pub(crate) username: String,
    /// ISO 8601, as the kernel wrote it.
    #[serde(default)]
    pub(crate) date: String,
    #[serde(default)]
    pub(crate) version: String,
}

/// The only part of a parent header we route by.
#[derive(Debug, Default, Deserialize)]
struct ParentHeader {
    #[serde(default)]
    msg_id: Option<String>,
}

/// A received message, reduced to what the server uses.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) header: Header,
    /// The `msg_id` of the request this message answers, if any.
    pub(crate) parent_msg_id: Option<String>,
    pub(crate) content: Value,
}

/// Why a received message was dropped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("no <IDS|MSG> delimiter frame")]
    NoDelimiter,
    #[error("{0} frames after the delimiter, at least 5 are needed")]
    TooFewFrames(usize),
    #[error("the signature does not match the message")]
    BadSignature,
    #[error("{frame} is not valid JSON: {source}")]
    Json {
        frame: &'static str,
        source: serde_json::Error,
    },
}

/// Signs and checks messages with a kernel's key; an empty key means unsigned messages.
#[derive(Clone)]
pub(crate) struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub(crate) fn new(key: &str) -> Self {
        Self {
            key: key.as_bytes().to_vec(),
        }
    }

    fn mac(&self, parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
        if self.key.is_empty() {
            return None;
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).ok()?;
        for p in parts {
            mac.update(p);
        }
        Some(mac)
    }

    /// A request of `msg_type` in `session` with `content`, and its new `msg_id`.
    pub(crate) fn request(
        &self,
        session: &str,
        msg_type: &str,
        content: &Value,
    ) -> (String, ZmqMessage) {
        let msg_id = uuid::Uuid::new_v4().to_string();
        let header = Header {
            msg_id: msg_id.clone(),
            msg_type: msg_type.to_owned(),
            session: session.to_owned(),
            username: "e2b".to_owned(),
            date: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            version: PROTOCOL_VERSION.to_owned(),
        };
        let header = serde_json::to_vec(&header).unwrap_or_default();
        let parent = b"{}".to_vec();
        let metadata = b"{}".to_vec();
        let content = serde_json::to_vec(content).unwrap_or_default();
        let signature = self
            .mac(&[&header, &parent, &metadata, &content])
            .map(|m| hex::encode(m.finalize().into_bytes()))
            .unwrap_or_default();
        let frames: Vec<Bytes> = vec![
            Bytes::from_static(DELIMITER),
            Bytes::from(signature),
            Bytes::from(header),
            Bytes::from(parent),
            Bytes::from(metadata),
            Bytes::from(content),
        ];
        // Six frames: never empty, so the conversion cannot fail.
        let message = ZmqMessage::try_from(frames).unwrap_or_else(|_| ZmqMessage::from(""));
        (msg_id, message)
    }

    /// Checks and parses a message received on any channel (identities or a topic first).
    pub(crate) fn decode(&self, message: ZmqMessage) -> Result<Incoming, WireError> {
        let frames = message.into_vec();
        let at = frames
            .iter()
            .position(|f| f.as_ref() == DELIMITER)
            .ok_or(WireError::NoDelimiter)?;
        let rest = &frames[at + 1..];
        if rest.len() < 5 {
            return Err(WireError::TooFewFrames(rest.len()));
        }
        let (signature, header, parent, metadata, content) =
            (&rest[0], &rest[1], &rest[2], &rest[3], &rest[4]);
        if let Some(mac) = self.mac(&[header, parent, metadata, content]) {
            let given = hex::decode(signature).map_err(|_| WireError::BadSignature)?;
            mac.verify_slice(&given)
                .map_err(|_| WireError::BadSignature)?;
        }
        let json = |frame: &'static str, bytes: &Bytes| {
            serde_json::from_slice::<Value>(bytes)
                .map_err(|source| WireError::Json { frame, source })
        };
        let header: Header =
            serde_json::from_value(json("header", header)?).map_err(|source| WireError::Json {
                frame: "header",
                source,
            })?;
        let parent: ParentHeader =
            serde_json::from_value(json("parent header", parent)?).unwrap_or_default();
        Ok(Incoming {
            header,
            parent_msg_id: parent.msg_id,
            content: json("content", content)?,
        })
    }
}

/// A bare client of a running kernel's shell channel: `execute_request` → `execute_reply`,
/// nothing else (no IOPub, no events). The floor under the server's `/execute`.
///
/// ```no_run
/// # async fn run() -> Result<(), String> {
/// use std::path::Path;
/// let mut shell = code_interpreter_server::wire::ShellClient::connect(
///     Path::new("/"),
///     Path::new("/tmp/e2b-code-interpreter/k0/connection.json"),
/// )
/// .await?;
/// let reply = shell.execute("1+1").await?;
/// assert_eq!(reply["status"], "ok");
/// # Ok(()) }
/// ```
pub struct ShellClient {
    shell: DealerSocket,
    signer: Signer,
    session: String,
}

impl ShellClient {
    /// Connects to the kernel of `connection_file`, both it and the kernel's IPC sockets
    /// taken under `root` (e.g. `/proc/<pid>/root` for a kernel in a sandbox).
    ///
    /// # Errors
    ///
    /// The connection file unreadable or not an IPC one, or the socket refusing.
    pub async fn connect(
        root: &std::path::Path,
        connection_file: &std::path::Path,
    ) -> Result<Self, String> {
        let under = |p: &str| root.join(p.trim_start_matches('/'));
        let file = under(&connection_file.to_string_lossy());
        let info: Value = serde_json::from_slice(
            &std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?,
        )
        .map_err(|e| format!("{}: {e}", file.display()))?;
        if info["transport"] != "ipc" {
            return Err(format!(
                "{}: transport {} (only ipc is spoken here)",
                file.display(),
                info["transport"]
            ));
        }
        let ip = info["ip"].as_str().unwrap_or_default();
        let socket = format!("ipc://{}-{}", under(ip).display(), info["shell_port"]);
        let mut shell = DealerSocket::new();
        shell
            .connect(&socket)
            .await
            .map_err(|e| format!("{socket}: {e}"))?;
        Ok(Self {
            shell,
            signer: Signer::new(info["key"].as_str().unwrap_or_default()),
            session: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// Runs `code` and returns the `execute_reply`'s content.
    ///
    /// # Errors
    ///
    /// The socket failing.
    pub async fn execute(&mut self, code: &str) -> Result<Value, String> {
        let content = serde_json::json!({
            "code": code, "silent": false, "store_history": true,
            "user_expressions": {}, "allow_stdin": false, "stop_on_error": true,
        });
        let (msg_id, request) = self
            .signer
            .request(&self.session, "execute_request", &content);
        self.shell.send(request).await.map_err(|e| e.to_string())?;
        loop {
            let reply = self.shell.recv().await.map_err(|e| e.to_string())?;
            if let Ok(m) = self.signer.decode(reply)
                && m.parent_msg_id.as_deref() == Some(msg_id.as_str())
                && m.header.msg_type == "execute_reply"
            {
                return Ok(m.content);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reply as a kernel sends it: routed through a ROUTER (an identity frame first),
    /// parented to our request.
    fn reply_to(signer: &Signer, parent_id: &str, key_for_signature: &str) -> ZmqMessage {
        let header = br#"{"msg_id":"r1","msg_type":"execute_reply","session":"k","username":"u","date":"2026-01-01T00:00:00.000001Z","version":"5.3"}"#;
        let parent = format!(r#"{{"msg_id":"{parent_id}"}}"#);
        let content = br#"{"status":"ok","execution_count":1}"#;
        let sig = Signer::new(key_for_signature)
            .mac(&[header, parent.as_bytes(), b"{}", content])
            .map(|m| hex::encode(m.finalize().into_bytes()))
            .unwrap_or_default();
        let _ = signer;
        ZmqMessage::try_from(vec![
            Bytes::from_static(b"identity"),
            Bytes::from_static(DELIMITER),
            Bytes::from(sig),
            Bytes::from_static(header),
            Bytes::from(parent),
            Bytes::from_static(b"{}"),
            Bytes::from_static(content),
        ])
        .unwrap()
    }

    #[test]
    fn a_request_is_signed_over_its_four_json_frames() {
        let signer = Signer::new("secret");
        let (id, msg) =
            signer.request("s1", "execute_request", &serde_json::json!({"code": "1+1"}));
        let frames = msg.into_vec();
        assert_eq!(frames.len(), 6);
        assert_eq!(frames[0].as_ref(), DELIMITER);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        for f in &frames[2..6] {
            mac.update(f);
        }
        assert_eq!(
            frames[1].as_ref(),
            hex::encode(mac.finalize().into_bytes()).as_bytes()
        );
        let header: Header = serde_json::from_slice(&frames[2]).unwrap();
        assert_eq!(header.msg_id, id);
        assert_eq!(header.msg_type, "execute_request");
        assert_eq!(header.session, "s1");
        assert_eq!(header.version, "5.3");
        assert_eq!(frames[5].as_ref(), br#"{"code":"1+1"}"#);
    }

    #[test]
    fn a_signed_reply_decodes_and_a_forged_one_is_refused() {
        let signer = Signer::new("secret");
        let msg = signer.decode(reply_to(&signer, "p1", "secret")).unwrap();
        assert_eq!(msg.header.msg_type, "execute_reply");
        assert_eq!(msg.parent_msg_id.as_deref(), Some("p1"));
        assert_eq!(msg.content["status"], "ok");
        let forged = signer.decode(reply_to(&signer, "p1", "other"));
        assert!(matches!(forged, Err(WireError::BadSignature)), "{forged:?}");
    }

    #[test]
    fn frames_without_a_delimiter_are_refused() {
        let signer = Signer::new("");
        let msg =
            ZmqMessage::try_from(vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]).unwrap();
        assert!(matches!(signer.decode(msg), Err(WireError::NoDelimiter)));
        let short =
            ZmqMessage::try_from(vec![Bytes::from_static(DELIMITER), Bytes::from_static(b"")])
                .unwrap();
        assert!(matches!(
            signer.decode(short),
            Err(WireError::TooFewFrames(1))
        ));
    }
}
