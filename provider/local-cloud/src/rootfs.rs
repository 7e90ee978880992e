//! Getting a workload image onto disk for runc: found by digest in the local image store (an OCI
//! layout in the state directory) or pulled into it from the registry the reference names, then
//! its layers unpacked in order into a root file system, with OCI whiteouts applied.

use std::path::Path;

use dcr_image::layout::Layout;
use dcr_image::oci::Manifest;
use serde_json::Value;

/// The manifest and config of `reference` (pinned by `digest`), pulling it into `store` first when
/// the store lacks it.
pub async fn resolve(store: &Layout, reference: &str, digest: &str) -> Result<(Manifest, Value), String> {
    if !store.has_blob(digest) {
        let host = reference.split('/').next().unwrap_or("");
        let auth = dcr_image::registry::docker_config_auth(host).map_err(|e| e.to_string())?;
        dcr_image::registry::pull_into_layout(
            reference,
            &auth,
            &dcr_image::registry::loopback_plain_http(reference),
            store,
        )
        .await
        .map_err(|e| format!("cannot pull {reference}: {e}"))?;
    }
    let bytes = store.read_blob(digest).map_err(|e| e.to_string())?;
    let manifest = Manifest::parse(&bytes, &format!("manifest {digest}")).map_err(|e| e.to_string())?;
    let config_bytes = store.read_blob(&manifest.config.digest).map_err(|e| e.to_string())?;
    let config: Value =
        serde_json::from_slice(&config_bytes).map_err(|e| format!("the image config is not JSON: {e}"))?;
    Ok((manifest, config))
}

/// Unpacks every layer of `manifest`, in order, into `rootfs` (which must not exist yet).
pub fn unpack(store: &Layout, manifest: &Manifest, rootfs: &Path) -> Result<(), String> {
    std::fs::create_dir_all(rootfs).map_err(|e| format!("cannot create {}: {e}", rootfs.display()))?;
    for layer in &manifest.layers {
        let path = store.blob_path(&layer.digest).map_err(|e| e.to_string())?;
        let file = std::fs::File::open(&path).map_err(|e| format!("cannot open layer {}: {e}", layer.digest))?;
        let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
        apply_layer(gz, rootfs).map_err(|e| format!("layer {}: {e}", layer.digest))?;
    }
    Ok(())
}

/// Applies one layer: whiteouts remove what lower layers put there, every other entry is unpacked
/// with the tar crate's `unpack_in`, which refuses paths that leave `rootfs`.
fn apply_layer(reader: impl std::io::Read, rootfs: &Path) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(hidden) = name.strip_prefix(".wh.") {
            let parent = rootfs.join(path.parent().unwrap_or(Path::new("")));
            if !parent.starts_with(rootfs) || path.components().any(|c| c == std::path::Component::ParentDir) {
                continue;
            }
            if hidden == ".wh..opq" {
                // Opaque directory: drop everything lower layers put in it.
                if let Ok(children) = std::fs::read_dir(&parent) {
                    for child in children.flatten() {
                        let p = child.path();
                        let _ = if p.is_dir() && !p.is_symlink() {
                            std::fs::remove_dir_all(&p)
                        } else {
                            std::fs::remove_file(&p)
                        };
                    }
                }
            } else {
                let target = parent.join(hidden);
                let _ = if target.is_dir() && !target.is_symlink() {
                    std::fs::remove_dir_all(&target)
                } else {
                    std::fs::remove_file(&target)
                };
            }
            continue;
        }
        entry.unpack_in(rootfs)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_size(data.len() as u64);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_remove_lower_files_and_escapes_are_refused() {
        let root = std::env::temp_dir().join(format!("dcr-rootfs-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        apply_layer(&layer(&[("etc/a", b"1"), ("etc/b", b"2"), ("opt/x/y", b"3")])[..], &root).unwrap();
        apply_layer(&layer(&[("etc/.wh.a", b""), ("opt/x/.wh..wh..opq", b""), ("opt/x/z", b"4")])[..], &root).unwrap();
        assert!(!root.join("etc/a").exists());
        assert_eq!(std::fs::read(root.join("etc/b")).unwrap(), b"2");
        assert!(!root.join("opt/x/y").exists());
        assert_eq!(std::fs::read(root.join("opt/x/z")).unwrap(), b"4");
        // A hand-made archive naming ../escape: unpack_in skips it and nothing lands outside.
        let mut raw = layer(&[("xxxxxxxxx", b"5")]);
        raw[..9].copy_from_slice(b"../escape");
        let h = tar::Header::from_byte_slice(&raw[..512]).clone();
        let mut fixed = h;
        fixed.set_cksum();
        raw[..512].copy_from_slice(fixed.as_bytes());
        let _ = apply_layer(&raw[..], &root);
        assert!(!root.parent().unwrap().join("escape").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
