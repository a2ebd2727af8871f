//! Property-based fuzzing of what `e2b-envd` parses from a peer: Connect envelopes, the JSON
//! and binary codecs of envd's request messages, Connect error bodies and `/files` URL
//! signatures. Black-box: only the crate's public API.
//!
//! Bounded for CI; `PROPTEST_CASES=100000 cargo test -p e2b-envd --all-features --test fuzz`
//! is the longer run (see the README).

use bytes::{Bytes, BytesMut};
use e2b_envd::envelope::{
    EnvelopeDecoder, FLAG_COMPRESSED, FLAG_END_STREAM, PREFIX_LEN, encode_with,
};
use e2b_envd::pb::{filesystem, process};
use e2b_envd::signature::{self, Operation};
use e2b_envd::{Code, ConnectError, DEFAULT_MAX_MESSAGE_SIZE, Encoding, ErrorDetail, Message};
use proptest::prelude::*;
use serde_json::Value;

/// `PROPTEST_CASES` when set (the longer run), else `ci_cases`.
fn config(ci_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci_cases);
    ProptestConfig {
        cases,
        // Failures found are kept as plain #[test]s below, not as files beside the source.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Field names of envd's request messages, so generated objects reach the typed parsers
/// rather than being ignored as unknown fields.
const FIELD_NAMES: &[&str] = &[
    "process",
    "cmd",
    "args",
    "envs",
    "cwd",
    "pty",
    "size",
    "rows",
    "cols",
    "tag",
    "stdin",
    "selector",
    "pid",
    "input",
    "signal",
    "path",
    "depth",
    "source",
    "destination",
    "recursive",
    "watcherId",
    "username",
    "keepalive",
    "start",
    "data",
    "event",
];

/// Any JSON value, with object keys drawn mostly from [`FIELD_NAMES`].
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
        "[0-9-]{1,25}".prop_map(Value::String),
        "SIGNAL_[A-Z]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            4 => proptest::sample::select(FIELD_NAMES).prop_map(str::to_owned),
            1 => ".{0,8}",
        ];
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key, inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect())),
        ]
    })
}

/// Decoding `bytes` as `M` either succeeds and re-encodes to the same message, or fails with
/// `code` and a message naming the type and what was wrong. Never panics.
fn check_decode<M: Message + PartialEq + std::fmt::Debug>(
    encoding: Encoding,
    bytes: &[u8],
) -> Result<(), TestCaseError> {
    match encoding.decode::<M>(Bytes::copy_from_slice(bytes), Code::InvalidArgument) {
        Ok(message) => {
            let mut buf = BytesMut::new();
            match encoding.encode(&message, &mut buf) {
                Ok(()) => {
                    let again: M = encoding
                        .decode(buf.freeze(), Code::InvalidArgument)
                        .map_err(|e| TestCaseError::fail(format!("re-decoding failed: {e}")))?;
                    prop_assert_eq!(again, message);
                }
                // Binary keeps enum numbers the proto does not name; it re-encodes them.
                Err(error) => prop_assert!(
                    false,
                    "{:?} cannot re-encode what it decoded: {}",
                    encoding,
                    error
                ),
            }
        }
        Err(error) => {
            prop_assert_eq!(error.code(), Code::InvalidArgument);
            let prefix = match encoding {
                Encoding::Json => "invalid JSON for ",
                Encoding::Proto => "invalid protobuf for ",
            };
            prop_assert!(
                error.message().starts_with(prefix) && error.message().len() > prefix.len() + 10,
                "unclear message: {:?}",
                error.message()
            );
        }
    }
    Ok(())
}

/// Runs [`check_decode`] for every request message envd accepts.
fn check_every_request(encoding: Encoding, bytes: &[u8]) -> Result<(), TestCaseError> {
    check_decode::<process::StartRequest>(encoding, bytes)?;
    check_decode::<process::ListRequest>(encoding, bytes)?;
    check_decode::<process::ConnectRequest>(encoding, bytes)?;
    check_decode::<process::UpdateRequest>(encoding, bytes)?;
    check_decode::<process::SendInputRequest>(encoding, bytes)?;
    check_decode::<process::StreamInputRequest>(encoding, bytes)?;
    check_decode::<process::SendSignalRequest>(encoding, bytes)?;
    check_decode::<process::CloseStdinRequest>(encoding, bytes)?;
    check_decode::<filesystem::StatRequest>(encoding, bytes)?;
    check_decode::<filesystem::MakeDirRequest>(encoding, bytes)?;
    check_decode::<filesystem::MoveRequest>(encoding, bytes)?;
    check_decode::<filesystem::ListDirRequest>(encoding, bytes)?;
    check_decode::<filesystem::RemoveRequest>(encoding, bytes)?;
    check_decode::<filesystem::WatchDirRequest>(encoding, bytes)?;
    check_decode::<filesystem::CreateWatcherRequest>(encoding, bytes)?;
    check_decode::<filesystem::GetWatcherEventsRequest>(encoding, bytes)?;
    check_decode::<filesystem::RemoveWatcherRequest>(encoding, bytes)?;
    Ok(())
}

/// What [`decode_chunked`] got: the frames, the error that stopped it, and the decoder.
struct Decoded {
    frames: Vec<(u8, Vec<u8>)>,
    error: Option<ConnectError>,
    decoder: EnvelopeDecoder,
}

/// Feeds `wire` to a decoder in the chunks `splits` cut it into, collecting frames until the
/// first error. Checks every frame against the limit.
fn decode_chunked(wire: &[u8], splits: &[usize], max: usize) -> Result<Decoded, TestCaseError> {
    let mut cuts: Vec<usize> = splits.iter().map(|s| s % (wire.len() + 1)).collect();
    cuts.push(0);
    cuts.push(wire.len());
    cuts.sort_unstable();
    let mut decoder = EnvelopeDecoder::new(max, Code::InvalidArgument);
    let mut frames = Vec::new();
    for window in cuts.windows(2) {
        decoder.push(&wire[window[0]..window[1]]);
        loop {
            match decoder.next_envelope() {
                Ok(Some(envelope)) => {
                    prop_assert!(envelope.data.len() <= max);
                    prop_assert_eq!(envelope.flags & FLAG_COMPRESSED, 0);
                    frames.push((envelope.flags, envelope.data.to_vec()));
                }
                Ok(None) => break,
                Err(error) => {
                    return Ok(Decoded {
                        frames,
                        error: Some(error),
                        decoder,
                    });
                }
            }
        }
    }
    Ok(Decoded {
        frames,
        error: None,
        decoder,
    })
}

proptest! {
    #![proptest_config(config(8192))]

    /// Encoding frames, then decoding them from any chunking, gives the same frames.
    #[test]
    fn envelopes_round_trip_through_any_chunking(
        payloads in proptest::collection::vec(
            (prop_oneof![Just(0u8), Just(FLAG_END_STREAM), any::<u8>().prop_map(|f| f & !FLAG_COMPRESSED)],
             proptest::collection::vec(any::<u8>(), 0..300)),
            0..8),
        splits in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut wire = BytesMut::new();
        for (flags, payload) in &payloads {
            encode_with(&mut wire, *flags, |b| {
                b.extend_from_slice(payload);
                Ok::<(), ()>(())
            })
            .unwrap();
        }
        let Decoded { frames, error, decoder } = decode_chunked(&wire, &splits, 300)?;
        prop_assert!(error.is_none(), "{:?}", error);
        prop_assert_eq!(frames, payloads);
        prop_assert!(decoder.finish().is_ok());
    }

    /// Arbitrary bytes in arbitrary chunks never panic; they end in frames within the limit,
    /// then at most one error whose code is the limit's or the malformed one, with a message.
    #[test]
    fn arbitrary_byte_streams_decode_or_fail_clearly(
        wire in proptest::collection::vec(any::<u8>(), 0..600),
        splits in proptest::collection::vec(any::<usize>(), 0..10),
        max in prop_oneof![Just(0usize), 1usize..512, Just(DEFAULT_MAX_MESSAGE_SIZE)],
    ) {
        let Decoded { error, decoder, .. } = decode_chunked(&wire, &splits, max)?;
        let error = error.or_else(|| decoder.finish().err());
        if let Some(error) = error {
            prop_assert!(
                matches!(error.code(), Code::ResourceExhausted | Code::InvalidArgument),
                "{:?}", error
            );
            prop_assert!(!error.message().is_empty());
        }
    }

    /// A declared length over the limit is refused from the 5-byte prefix alone, before any
    /// payload is buffered (and so before the decoder reserves room for it).
    #[test]
    fn oversize_declared_lengths_are_refused_from_the_prefix(
        flags in any::<u8>(),
        max in 0usize..1 << 20,
        excess in 1u64..u64::from(u32::MAX),
    ) {
        let declared = (max as u64).saturating_add(excess).min(u64::from(u32::MAX));
        prop_assume!(declared > max as u64);
        let mut decoder = EnvelopeDecoder::new(max, Code::InvalidArgument);
        let mut prefix = vec![flags];
        prefix.extend_from_slice(&u32::try_from(declared).unwrap().to_be_bytes());
        prop_assert_eq!(prefix.len(), PREFIX_LEN);
        decoder.push(&prefix);
        let error = decoder.next_envelope().unwrap_err();
        prop_assert_eq!(error.code(), Code::ResourceExhausted);
        prop_assert!(error.message().contains(&declared.to_string()), "{}", error.message());
    }

    /// Arbitrary bytes as JSON or binary request messages: decoded, or a clear error.
    #[test]
    fn request_messages_from_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        check_every_request(Encoding::Proto, &bytes)?;
        check_every_request(Encoding::Json, &bytes)?;
    }

    /// Arbitrary JSON values as request messages: decoded, or a clear error.
    #[test]
    fn request_messages_from_arbitrary_json(value in json_value()) {
        check_every_request(Encoding::Json, &serde_json::to_vec(&value).unwrap())?;
    }

    /// Error bodies: whatever the bytes, parsing never panics, and a parsed error has a
    /// known code; an HTTP response always becomes an error that keeps its status and says
    /// something.
    #[test]
    fn error_bodies_from_arbitrary_bytes(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..200),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
            (proptest::sample::select(&["not_found", "internal", "NOT_FOUND", "", "ok"][..]),
             ".{0,20}", proptest::collection::vec((".{0,10}", "[A-Za-z0-9+/=]{0,12}"), 0..3))
                .prop_map(|(code, message, details)| serde_json::to_vec(&serde_json::json!({
                    "code": code,
                    "message": message,
                    "details": details.into_iter().map(|(t, v)| serde_json::json!({"type": t, "value": v})).collect::<Vec<_>>(),
                })).unwrap()),
        ],
        status in 100u16..600,
    ) {
        if let Some(error) = ConnectError::from_json(&body) {
            prop_assert_eq!(Code::from_wire(error.code().as_str()), Some(error.code()));
        }
        let error = ConnectError::from_http_response(status, &body);
        prop_assert_eq!(error.http_status(), Some(status));
        prop_assert!(!error.to_string().is_empty());
    }

    /// An error survives its own JSON body: code, message and details.
    #[test]
    fn errors_round_trip_through_json(
        code in proptest::sample::select(&Code::ALL[..]),
        message in ".{0,40}",
        details in proptest::collection::vec((".{0,20}", proptest::collection::vec(any::<u8>(), 0..40)), 0..3),
    ) {
        let mut error = ConnectError::new(code, message.clone());
        for (type_name, value) in &details {
            error = error.with_detail(ErrorDetail { type_name: type_name.clone(), value: value.clone() });
        }
        let parsed = ConnectError::from_json(&error.to_json()).unwrap();
        prop_assert_eq!(parsed.code(), code);
        prop_assert_eq!(parsed.message(), message.as_str());
        prop_assert_eq!(parsed.details(), error.details());
    }

    /// Only the exact signature verifies: any other string, any one changed character, or
    /// any changed input fails, and nothing panics.
    #[test]
    fn only_the_exact_signature_verifies(
        path in ".{0,40}",
        write in any::<bool>(),
        username in ".{0,12}",
        token in ".{0,24}",
        expiration in proptest::option::of(any::<i64>()),
        other in ".{0,60}",
        flip_at in any::<usize>(),
        flip_to in 0x20u8..0x7f,
    ) {
        let operation = if write { Operation::Write } else { Operation::Read };
        let other_operation = if write { Operation::Read } else { Operation::Write };
        let sig = signature::sign(&path, operation, &username, &token, expiration);
        prop_assert!(signature::verify(&sig, &path, operation, &username, &token, expiration));

        let verifies = |sig: &str, path: &str, operation, username: &str, token: &str, expiration| {
            signature::verify(sig, path, operation, username, token, expiration)
        };
        let mut flipped = sig.clone().into_bytes();
        let at = flip_at % flipped.len();
        prop_assume!(flipped[at] != flip_to);
        flipped[at] = flip_to;
        let flipped = String::from_utf8(flipped).unwrap();
        prop_assert!(!verifies(&flipped, &path, operation, &username, &token, expiration));
        prop_assert!(!verifies(&sig[..sig.len() - 1], &path, operation, &username, &token, expiration));
        let longer = format!("{sig}A");
        prop_assert!(!verifies(&longer, &path, operation, &username, &token, expiration));
        prop_assert_eq!(
            verifies(&other, &path, operation, &username, &token, expiration),
            other == sig
        );

        let (other_path, other_username, other_token) =
            (format!("{path}x"), format!("{username}x"), format!("{token}x"));
        prop_assert!(!verifies(&sig, &other_path, operation, &username, &token, expiration));
        prop_assert!(!verifies(&sig, &path, other_operation, &username, &token, expiration));
        prop_assert!(!verifies(&sig, &path, operation, &other_username, &token, expiration));
        prop_assert!(!verifies(&sig, &path, operation, &username, &other_token, expiration));
        let other_expiration = match expiration {
            None => Some(0),
            Some(e) => Some(e.wrapping_add(1)),
        };
        prop_assert!(!verifies(&sig, &path, operation, &username, &token, other_expiration));
    }

    /// Content types are parsed without panicking, and only the four Connect ones match.
    #[test]
    fn content_types_never_panic(content_type in ".{0,40}", streaming in any::<bool>()) {
        if let Some(encoding) = Encoding::from_content_type(&content_type, streaming) {
            let expected = if streaming {
                encoding.streaming_content_type()
            } else {
                encoding.unary_content_type()
            };
            let essence = content_type.split(';').next().unwrap().trim().to_ascii_lowercase();
            prop_assert_eq!(essence, expected);
        }
    }
}
