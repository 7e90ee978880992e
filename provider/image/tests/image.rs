//! Images end to end: built twice in separate stores they are identical; one changed byte changes
//! the digest; independent tools (skopeo, a real registry) agree with the digest we compute.
//! Needs `skopeo` and `docker-registry` (Debian packages; `tests/install-tools.sh` installs them).

use std::path::{Path, PathBuf};
use std::process::Command;

use dcr_e2e::registry::Registry;
use dcr_image::layout::Layout;
use dcr_image::oci::{
    CONFIG_MEDIA_TYPE, Descriptor, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, Manifest, canonical, canonical_json,
};
use dcr_image::registry::{Destination, RegistryAuth, push};
use dcr_image::{BaseImage, FileEntry, build, build_layer};
use serde_json::json;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dcr-image-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A small base image in an OCI layout: one layer, an entrypoint, tagged `base`.
fn base_layout(dir: &Path) -> BaseImage {
    let layout = Layout::create(dir).unwrap();
    let layer = build_layer(&[
        FileEntry::new("usr/local/bin/dcr-launcher", 0o755, b"#!/bin/sh\necho launcher\n".to_vec()),
        FileEntry::new("etc/os-release", 0o644, b"ID=test\n".to_vec()),
    ])
    .unwrap();
    layout.write_blob(&layer.blob).unwrap();
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/usr/local/bin/dcr-launcher"], "Labels": {"tee.launch_policy.log_redirect": "always"}},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "test base"}],
    });
    let config = canonical_json(&config);
    let config_digest = layout.write_blob(&config).unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        config: Descriptor {
            media_type: CONFIG_MEDIA_TYPE.into(),
            digest: config_digest,
            size: config.len() as u64,
            annotations: None,
        },
        layers: vec![Descriptor {
            media_type: LAYER_MEDIA_TYPE.into(),
            digest: layer.digest,
            size: layer.blob.len() as u64,
            annotations: None,
        }],
        annotations: None,
    };
    let bytes = canonical(&manifest);
    let digest = layout.write_blob(&bytes).unwrap();
    layout
        .tag(
            "base",
            &Descriptor { media_type: MANIFEST_MEDIA_TYPE.into(), digest, size: bytes.len() as u64, annotations: None },
        )
        .unwrap();
    BaseImage::from_layout(dir, Some("base")).unwrap()
}

fn notebook_files(notebook: &[u8]) -> Vec<FileEntry> {
    vec![
        FileEntry::new("dcr/notebook.ipynb", 0o644, notebook.to_vec()),
        FileEntry::new("dcr/parameters.json", 0o644, b"{\"threshold\":30}".to_vec()),
    ]
}

fn tool(name: &str) -> PathBuf {
    let path = Path::new("/usr/bin").join(name);
    assert!(path.is_file(), "{name} is not installed: run tests/install-tools.sh (it installs Debian's {name})");
    path
}

fn skopeo(args: &[&str]) -> serde_json::Value {
    let out = Command::new(tool("skopeo")).args(args).output().expect("skopeo runs");
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("skopeo prints JSON")
}

#[test]
fn builds_are_reproducible_and_sensitive_to_every_byte() {
    let (a, b) = (scratch("repro-a"), scratch("repro-b"));
    let notebook = br#"{"cells": [{"cell_type": "code", "source": "print(1)"}]}"#;
    let built_a = build(&base_layout(&a.join("base")), &notebook_files(notebook), "dcr notebook layer").unwrap();
    let built_b = build(&base_layout(&b.join("base")), &notebook_files(notebook), "dcr notebook layer").unwrap();
    assert_eq!(built_a.digest, built_b.digest, "same inputs, separate stores: same digest");
    built_a.write_to(&Layout::create(&a.join("store")).unwrap(), "nb").unwrap();
    built_b.write_to(&Layout::create(&b.join("store")).unwrap(), "nb").unwrap();
    for f in ["index.json", "oci-layout"] {
        assert_eq!(
            std::fs::read(a.join("store").join(f)).unwrap(),
            std::fs::read(b.join("store").join(f)).unwrap(),
            "{f}"
        );
    }

    let mut edited = notebook.to_vec();
    edited[10] ^= 1;
    let changed = build(&base_layout(&a.join("base")), &notebook_files(&edited), "dcr notebook layer").unwrap();
    assert_ne!(changed.digest, built_a.digest, "one byte of the notebook changes the digest");

    // What we stored reads back as an image with one more layer.
    let back = BaseImage::from_layout(&a.join("store"), Some("nb")).unwrap();
    assert_eq!(back.digest, built_a.digest);
    assert_eq!(back.manifest.layers.len(), 2);
    assert_eq!(back.config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(
        back.config["config"]["Entrypoint"],
        json!(["/usr/local/bin/dcr-launcher"]),
        "the base's entrypoint stays"
    );
    assert_eq!(back.config["created"], "1970-01-01T00:00:00Z");

    // An independent reader agrees on the digest.
    let inspected = skopeo(&["inspect", &format!("oci:{}:nb", a.join("store").display())]);
    assert_eq!(inspected["Digest"], built_a.digest.as_str());
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 2);
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_image_keeps_its_digest_in_a_real_registry() {
    let dir = scratch("push");
    let registry = Registry::start(&dir);
    let built = build(&base_layout(&dir.join("base")), &notebook_files(b"{}"), "dcr notebook layer").unwrap();
    let to = Destination {
        reference: format!("{}/clean-room/notebook:v1", registry.addr),
        auth: RegistryAuth::Anonymous,
        plain_http: vec![registry.addr.clone()],
    };
    let pinned = push(&built, &to).await.unwrap();
    assert_eq!(pinned, format!("{}/clean-room/notebook@{}", registry.addr, built.digest));
    // Pushing again finds every blob there and changes nothing.
    assert_eq!(push(&built, &to).await.unwrap(), pinned);
    let inspected = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{pinned}")]);
    assert_eq!(inspected["Digest"], built.digest.as_str());
    let tagged = skopeo(&["inspect", "--tls-verify=false", &format!("docker://{}", to.reference)]);
    assert_eq!(tagged["Digest"], built.digest.as_str());
    drop(registry);
    std::fs::remove_dir_all(&dir).unwrap();
}
