//! Golden proto3-JSON vectors: what envd and E2B's SDKs put on the wire, byte for byte.

use e2b_envd::pb::filesystem::{
    EntryInfo, EventType, FileType, FilesystemEvent, WatchDirResponse, watch_dir_response,
};
use e2b_envd::pb::process::{
    ProcessConfig, ProcessEvent, SendSignalRequest, Signal, StartRequest, StartResponse,
    process_event::{self, data_event},
};
use e2b_envd::{Code, Encoding};

/// Decodes `json` as `T`, re-encodes it, and checks the bytes are unchanged.
fn round_trip<T: e2b_envd::Message + std::fmt::Debug + PartialEq>(json: &str) -> T {
    let message: T = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    assert_eq!(serde_json::to_string(&message).unwrap(), json);
    message
}

fn event(json: &str) -> process_event::Event {
    round_trip::<StartResponse>(json)
        .event
        .unwrap()
        .event
        .unwrap()
}

#[test]
fn process_stream_messages_from_the_reference() {
    assert_eq!(
        event(r#"{"event":{"start":{"pid":412}}}"#),
        process_event::Event::Start(process_event::StartEvent { pid: 412 })
    );
    assert_eq!(
        event(r#"{"event":{"data":{"stdout":"aGVsbG8K"}}}"#),
        process_event::Event::Data(process_event::DataEvent {
            output: Some(data_event::Output::Stdout(b"hello\n".to_vec()))
        })
    );
    assert_eq!(
        event(r#"{"event":{"keepalive":{}}}"#),
        process_event::Event::Keepalive(process_event::KeepAlive {})
    );
    assert_eq!(
        event(r#"{"event":{"end":{"exited":true,"status":"exit status 0"}}}"#),
        process_event::Event::End(process_event::EndEvent {
            exit_code: 0,
            exited: true,
            status: "exit status 0".into(),
            error: None,
        })
    );
    assert_eq!(
        event(
            r#"{"event":{"end":{"exitCode":1,"exited":true,"status":"exit status 1","error":"exit status 1"}}}"#
        ),
        process_event::Event::End(process_event::EndEvent {
            exit_code: 1,
            exited: true,
            status: "exit status 1".into(),
            error: Some("exit status 1".into()),
        })
    );
    assert_eq!(
        event(
            r#"{"event":{"end":{"exitCode":-1,"status":"signal: killed","error":"signal: killed"}}}"#
        ),
        process_event::Event::End(process_event::EndEvent {
            exit_code: -1,
            exited: false,
            status: "signal: killed".into(),
            error: Some("signal: killed".into()),
        })
    );
}

#[test]
fn start_request_as_the_sdk_sends_it() {
    // `optional bool stdin` is emitted even when false; `envs` is a JSON object.
    let json = r#"{"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],"envs":{"A":"1"},"cwd":"/home/user"},"stdin":false}"#;
    let request: StartRequest = round_trip(json);
    assert_eq!(
        request,
        StartRequest {
            process: Some(ProcessConfig {
                cmd: "/bin/bash".into(),
                args: vec!["-l".into(), "-c".into(), "echo hi".into()],
                envs: [("A".to_string(), "1".to_string())].into(),
                cwd: Some("/home/user".into()),
            }),
            pty: None,
            tag: None,
            stdin: Some(false),
        }
    );
}

#[test]
fn entry_info_size_is_a_string_and_time_is_rfc3339() {
    let json = r#"{"name":"a.txt","type":"FILE_TYPE_FILE","path":"/home/user/a.txt","size":"12345678901","mode":420,"permissions":"-rw-r--r--","owner":"user","group":"user","modifiedTime":"2025-01-02T03:04:05.123456789Z","metadata":{"k":"v"}}"#;
    let entry: EntryInfo = round_trip(json);
    assert_eq!(entry.size, 12_345_678_901);
    assert_eq!(entry.r#type, FileType::File as i32);
    let time = entry.modified_time.unwrap();
    assert_eq!((time.seconds, time.nanos), (1_735_787_045, 123_456_789));
    assert_eq!(entry.symlink_target, None);

    // Readers accept int64 as a number too, and snake_case names.
    let entry: EntryInfo =
        serde_json::from_str(r#"{"size":42,"symlink_target":"/x","type":3}"#).unwrap();
    assert_eq!(entry.size, 42);
    assert_eq!(entry.symlink_target.as_deref(), Some("/x"));
    assert_eq!(entry.r#type, FileType::Symlink as i32);
}

#[test]
fn enums_are_names_and_defaults_are_omitted() {
    round_trip::<SendSignalRequest>(r#"{"signal":"SIGNAL_SIGKILL"}"#);
    let request = SendSignalRequest {
        process: None,
        signal: Signal::Sigterm as i32,
    };
    assert_eq!(
        serde_json::to_string(&request).unwrap(),
        r#"{"signal":"SIGNAL_SIGTERM"}"#
    );
    assert_eq!(
        serde_json::to_string(&SendSignalRequest::default()).unwrap(),
        "{}"
    );

    let event: WatchDirResponse =
        round_trip(r#"{"filesystem":{"name":"dir/new.txt","type":"EVENT_TYPE_CREATE"}}"#);
    assert_eq!(
        event.event,
        Some(watch_dir_response::Event::Filesystem(FilesystemEvent {
            name: "dir/new.txt".into(),
            r#type: EventType::Create as i32,
            entry: None,
        }))
    );
}

#[test]
fn unknown_fields_are_ignored() {
    let event: ProcessEvent =
        serde_json::from_str(r#"{"start":{"pid":7,"future":1},"somethingNew":{"a":[1,2]}}"#)
            .unwrap();
    assert_eq!(
        event.event,
        Some(process_event::Event::Start(process_event::StartEvent {
            pid: 7
        }))
    );
}

#[test]
fn bytes_accept_url_safe_base64() {
    let event: ProcessEvent = serde_json::from_str(r#"{"data":{"stdout":"-_8="}}"#).unwrap();
    assert_eq!(
        event.event,
        Some(process_event::Event::Data(process_event::DataEvent {
            output: Some(data_event::Output::Stdout(vec![0xfb, 0xff]))
        }))
    );
}

#[test]
fn invalid_input_is_an_error_naming_the_type() {
    let error = Encoding::Json
        .decode::<StartRequest>(
            bytes::Bytes::from_static(b"{\"process\":7}"),
            Code::InvalidArgument,
        )
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error
            .message()
            .starts_with("invalid JSON for process::StartRequest: "),
        "{}",
        error.message()
    );
    let error = Encoding::Proto
        .decode::<StartRequest>(
            bytes::Bytes::from_static(&[0x0a, 0x05, 0x01]),
            Code::Internal,
        )
        .unwrap_err();
    assert_eq!(error.code(), Code::Internal);
    assert!(
        error
            .message()
            .starts_with("invalid protobuf for process::StartRequest: ")
    );
}
