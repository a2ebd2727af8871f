//! `e2b::Volume` and `SandboxBuilder::volume_mount` through the embedded local E2B host:
//! create, connect, list and destroy; every file operation of the content API with the
//! official SDKs' error classes and messages; a volume mounted into a sandbox; the blocking
//! twin. Needs root (sandboxes and loop devices), so every test is ignored unless asked for:
//! `cargo test -p e2b --all-features --test volume -- --ignored` as root.

use std::io::Read as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use e2b::local::LocalServer;
use e2b::{
    ConnectionConfig, RunOptions, Sandbox, Volume, VolumeFileType, VolumeMetadata, VolumeMount,
    VolumeWriteOptions,
};
use futures_util::TryStreamExt as _;

fn local() -> ConnectionConfig {
    LocalServer::shared().expect("local server").config()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{:08x}",
        nanos ^ std::process::id().rotate_left(16)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root: volumes are loop-mounted ext4 images, sandboxes use namespaces"]
async fn volumes_are_managed_and_their_files_read_and_written() {
    let config = local();
    let name = unique("sdk-vol");
    let vol = Volume::create(&config, &name).await.unwrap();
    assert_eq!(vol.name(), name);
    assert_eq!(vol.token().len(), 64);
    assert!(
        Volume::list_volumes(&config)
            .await
            .unwrap()
            .iter()
            .any(|v| v.volume_id == vol.volume_id() && v.name == name)
    );
    let info = Volume::get_info_by_id(&config, vol.volume_id())
        .await
        .unwrap();
    assert_eq!(
        (
            info.name.as_str(),
            info.token.as_str(),
            info.domain.as_deref()
        ),
        (name.as_str(), vol.token(), None)
    );
    assert!(!format!("{info:?}").contains(vol.token()));
    let again = Volume::connect(&config, vol.volume_id()).await.unwrap();
    assert_eq!((again.name(), again.token()), (vol.name(), vol.token()));

    let e = Volume::create(&config, &name).await.unwrap_err();
    assert!(e.is_volume(), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("409: a volume named '{name}' already exists")
    );
    let e = Volume::create(&config, "a/b").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "400: invalid volume name \"a/b\": use 1 to 255 letters, digits, '_' and '-'"
    );

    // Files.
    let e = vol
        .write_file("/dir/a.txt", "alpha", VolumeWriteOptions::new())
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(e.to_string(), "Path /dir/a.txt not found");
    let st = vol
        .write_file("/dir/a.txt", "alpha", VolumeWriteOptions::new().force(true))
        .await
        .unwrap();
    assert_eq!(
        (
            st.file_type,
            st.path.as_str(),
            st.name.as_str(),
            st.size,
            st.mode,
            st.uid,
            st.gid
        ),
        (
            VolumeFileType::File,
            "/dir/a.txt",
            "a.txt",
            5,
            0o644,
            1000,
            1000
        )
    );
    assert_eq!(vol.read_file_text("/dir/a.txt").await.unwrap(), "alpha");
    let chunks = futures_util::stream::iter(["be", "ta"].map(|s| Ok(Bytes::from(s))));
    vol.write_file_stream("/dir/b.txt", chunks, VolumeWriteOptions::new().mode(0o600))
        .await
        .unwrap();
    let streamed: Vec<Bytes> = vol
        .read_file_stream("/dir/b.txt")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(streamed.concat(), b"beta");
    let st = vol
        .make_dir("/dir/sub", VolumeWriteOptions::new())
        .await
        .unwrap();
    assert_eq!((st.file_type, st.mode), (VolumeFileType::Directory, 0o755));
    let e = vol
        .make_dir("/dir/sub", VolumeWriteOptions::new())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "409: path '/dir/sub' already exists");
    let paths: Vec<String> = vol
        .list("/", Some(2))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(paths, ["/dir", "/dir/a.txt", "/dir/b.txt", "/dir/sub"]);
    assert_eq!(vol.list("/dir", None).await.unwrap().len(), 3);
    assert!(vol.exists("/dir/a.txt").await.unwrap());
    assert!(!vol.exists("/nope").await.unwrap());
    let st = vol
        .update_metadata(
            "/dir/a.txt",
            VolumeMetadata {
                mode: Some(0o640),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!((st.mode, st.uid), (0o640, 1000));
    let e = vol.read_file("/../etc/passwd").await.unwrap_err();
    assert!(e.is_volume(), "{e:?}");
    assert_eq!(
        e.to_string(),
        "400: invalid path '/../etc/passwd': '..' is not allowed in a volume path"
    );
    let e = vol.get_info("/etc/passwd").await.unwrap_err();
    assert_eq!(e.to_string(), "Path /etc/passwd not found");
    vol.remove("/dir/sub").await.unwrap();
    let e = vol.remove("/dir/sub").await.unwrap_err();
    assert!(e.is_not_found());

    // A wrong token.
    let forged = Volume::new(&config, vol.volume_id(), vol.name(), "wrong", None);
    let e = forged.list("/", None).await.unwrap_err();
    assert!(e.is_authentication(), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "401: Unauthorized, please check your credentials. - invalid token for volume '{}'",
            vol.volume_id()
        )
    );

    // Mounted into a sandbox: what the API wrote is there, what `user` writes comes back.
    let sbx = Sandbox::builder()
        .config(config.clone())
        .volume_mount(vol.name(), "/mnt/vol")
        .timeout(Duration::from_secs(120))
        .create()
        .await
        .unwrap();
    let r = sbx
        .commands()
        .run(
            "cat /mnt/vol/dir/a.txt; whoami > /mnt/vol/dir/who",
            RunOptions::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.stdout, "alpha");
    assert_eq!(vol.read_file_text("/dir/who").await.unwrap(), "user\n");
    let info = sbx.get_info().await.unwrap();
    assert_eq!(
        info.volume_mounts,
        [VolumeMount {
            name: name.clone(),
            path: "/mnt/vol".into()
        }]
    );
    let e = Volume::destroy(&config, vol.volume_id()).await.unwrap_err();
    assert!(e.is_volume(), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "409: volume '{name}' is mounted by sandboxes {}; kill them first",
            sbx.sandbox_id()
        )
    );
    sbx.kill().await.unwrap();

    // 100 MiB through the content API, timed (reported, not asserted).
    let big: Vec<u8> = (0..100u32 << 20).map(|i| (i % 251) as u8).collect();
    let t0 = Instant::now();
    vol.write_file("/big.bin", big.clone(), VolumeWriteOptions::new())
        .await
        .unwrap();
    let write = t0.elapsed();
    let t0 = Instant::now();
    let back = vol.read_file("/big.bin").await.unwrap();
    let read = t0.elapsed();
    assert!(back == big, "100 MiB came back different");
    eprintln!("content API, 100 MiB: write {write:?}, read {read:?}");

    assert!(Volume::destroy(&config, vol.volume_id()).await.unwrap());
    assert!(!Volume::destroy(&config, vol.volume_id()).await.unwrap());
    let e = Volume::get_info_by_id(&config, vol.volume_id())
        .await
        .unwrap_err();
    assert!(e.is_not_found());
    assert_eq!(
        e.to_string(),
        format!("Volume {} not found", vol.volume_id())
    );
    let e = vol.list("/", None).await.unwrap_err();
    assert_eq!(e.to_string(), "Path / not found");
}

#[test]
#[ignore = "needs root: volumes are loop-mounted ext4 images"]
fn the_blocking_twin_manages_volumes_and_streams_files() {
    let config = local();
    let name = unique("sdk-blocking-vol");
    let vol = e2b::blocking::Volume::create(&config, &name).unwrap();
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    let st = vol
        .write_file_reader("/r.bin", &data[..], VolumeWriteOptions::new())
        .unwrap();
    assert_eq!(st.size, 3 << 20);
    let mut back = Vec::new();
    vol.read_file_stream("/r.bin")
        .unwrap()
        .read_to_end(&mut back)
        .unwrap();
    assert!(back == data);
    vol.write_file("/t.txt", "text", VolumeWriteOptions::new())
        .unwrap();
    assert_eq!(vol.read_file_text("/t.txt").unwrap(), "text");
    assert_eq!(vol.read_file("/t.txt").unwrap(), "text");
    vol.make_dir("/d", VolumeWriteOptions::new()).unwrap();
    assert_eq!(vol.list("/", None).unwrap().len(), 3);
    assert_eq!(
        vol.get_info("/d").unwrap().file_type,
        VolumeFileType::Directory
    );
    assert!(vol.exists("/d").unwrap());
    vol.update_metadata(
        "/t.txt",
        VolumeMetadata {
            uid: Some(0),
            ..Default::default()
        },
    )
    .unwrap();
    vol.remove("/d").unwrap();
    assert!(!vol.exists("/d").unwrap());
    let connected = e2b::blocking::Volume::connect(&config, vol.volume_id()).unwrap();
    assert_eq!(connected.token(), vol.token());
    assert!(
        e2b::blocking::Volume::list_volumes(&config)
            .unwrap()
            .iter()
            .any(|v| v.name == name)
    );
    assert_eq!(
        e2b::blocking::Volume::get_info_by_id(&config, vol.volume_id())
            .unwrap()
            .name,
        name
    );
    assert!(e2b::blocking::Volume::destroy(&config, vol.volume_id()).unwrap());
}
