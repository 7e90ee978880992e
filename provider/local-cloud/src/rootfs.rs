//! Getting a workload image onto disk for runc: found by digest in the local image store (an OCI
//! layout in the state directory) or pulled into it from the registry the reference names, then
//! its layers unpacked in order into a root file system, with OCI whiteouts applied.
//!
//! A workload image is a base image (hundreds of MB: Python, papermill, the launcher) plus a small
//! top layer (the notebook and its manifest). Unpacking the base for every run would cost seconds
//! and hundreds of MB per run, so the base layers are unpacked once into a cache shared by every
//! run of that base (keyed by its layer digests) and the run's root is an overlay mount: the top
//! layer and the cache below, read-only, and the run's writes in an upper directory of its own —
//! how containerd's overlay snapshotter composes images. Where overlayfs is unavailable (or the
//! top layer deletes lower files, which would need overlay whiteouts) the run falls back to a full
//! unpack.

use std::path::{Path, PathBuf};

use dcr_image::layout::Layout;
use dcr_image::oci::{Descriptor, Manifest};
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
    unpack_layers(store, &manifest.layers, rootfs)
}

fn unpack_layers(store: &Layout, layers: &[Descriptor], rootfs: &Path) -> Result<(), String> {
    std::fs::create_dir_all(rootfs).map_err(|e| format!("cannot create {}: {e}", rootfs.display()))?;
    for layer in layers {
        let path = store.blob_path(&layer.digest).map_err(|e| e.to_string())?;
        let file = std::fs::File::open(&path).map_err(|e| format!("cannot open layer {}: {e}", layer.digest))?;
        let gz = flate2::read::GzDecoder::new(std::io::BufReader::new(file));
        apply_layer(gz, rootfs).map_err(|e| format!("layer {}: {e}", layer.digest))?;
    }
    Ok(())
}

/// A run's root file system, ready for runc at [`RunRoot::path`]; [`reclaim`] of its bundle
/// unmounts it and frees its space (the supervisor does, when the run ends, or a later reap).
pub struct RunRoot {
    bundle: PathBuf,
    mounted: bool,
}

/// Where a bundle's pieces go.
fn rootfs_of(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

impl RunRoot {
    /// Lays out `manifest`'s image under `bundle` (which must not exist yet), reusing the unpacked
    /// base layers in `cache`.
    pub fn prepare(store: &Layout, manifest: &Manifest, bundle: &Path, cache: &Path) -> Result<RunRoot, String> {
        std::fs::create_dir_all(bundle).map_err(|e| format!("cannot create {}: {e}", bundle.display()))?;
        let rootfs = rootfs_of(bundle);
        if let Some((top, base)) = manifest.layers.split_last()
            && !base.is_empty()
            && overlay_safe(bundle)
            && overlay_safe(cache)
            && !has_whiteouts(store, top)?
        {
            let lower = cached_base(store, base, cache)?;
            let (top_dir, upper, work) = (bundle.join("top"), bundle.join("upper"), bundle.join("work"));
            for d in [&top_dir, &upper, &work, &rootfs] {
                std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
            }
            unpack_layers(store, std::slice::from_ref(top), &top_dir)?;
            let options = format!(
                "lowerdir={}:{},upperdir={},workdir={}",
                top_dir.display(),
                lower.display(),
                upper.display(),
                work.display()
            );
            if mount_overlay(&rootfs, &options).is_ok() {
                return Ok(RunRoot { bundle: bundle.to_path_buf(), mounted: true });
            }
            // No overlayfs here (or not on this file system): fall back to a full unpack below.
            for d in [&top_dir, &upper, &work, &rootfs] {
                let _ = std::fs::remove_dir_all(d);
            }
        }
        unpack(store, manifest, &rootfs)?;
        Ok(RunRoot { bundle: bundle.to_path_buf(), mounted: false })
    }

    pub fn path(&self) -> PathBuf {
        rootfs_of(&self.bundle)
    }

    /// Whether the run shares the cached base (an overlay) rather than a copy of its own.
    pub fn shares_cache(&self) -> bool {
        self.mounted
    }
}

/// Unmounts and removes what a bundle holds; also how a dead supervisor's bundle is reclaimed.
pub fn reclaim(bundle: &Path) {
    unmount(&rootfs_of(bundle));
    let _ = std::fs::remove_dir_all(bundle);
}

/// overlayfs options separate paths with `:` and `,`: such paths take the full-unpack path.
fn overlay_safe(p: &Path) -> bool {
    p.to_str().is_some_and(|s| !s.contains([':', ',', '\\']))
}

fn mount_overlay(target: &Path, options: &str) -> std::io::Result<()> {
    let cstr = |s: &str| std::ffi::CString::new(s).map_err(std::io::Error::other);
    let (source, fstype) = (cstr("overlay")?, cstr("overlay")?);
    let target = cstr(target.to_str().ok_or_else(|| std::io::Error::other("non-UTF-8 path"))?)?;
    let data = cstr(options)?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc =
        unsafe { libc::mount(source.as_ptr(), target.as_ptr(), fstype.as_ptr(), libc::MS_NODEV, data.as_ptr().cast()) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn unmount(target: &Path) {
    if let Some(t) = target.to_str().and_then(|t| std::ffi::CString::new(t).ok()) {
        // SAFETY: a NUL-terminated path; a target that is not a mount point fails harmlessly.
        unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The base layers unpacked once into `cache/KEY` (KEY from their digests), shared read-only by
/// every run of that base. Two processes may race to fill it: each unpacks into a directory of its
/// own and the first rename wins.
fn cached_base(store: &Layout, layers: &[Descriptor], cache: &Path) -> Result<PathBuf, String> {
    let chain: Vec<&str> = layers.iter().map(|l| l.digest.as_str()).collect();
    let key = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, chain.join("\n").as_bytes()));
    let dir = cache.join(&key);
    if !dir.is_dir() {
        std::fs::create_dir_all(cache).map_err(|e| format!("cannot create {}: {e}", cache.display()))?;
        let staging = cache.join(format!(".{key}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        unpack_layers(store, layers, &staging)?;
        if std::fs::rename(&staging, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
    }
    // The directory's time says when a run last used it, for reclaiming unused caches.
    if let Ok(f) = std::fs::File::open(&dir) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
    Ok(dir)
}

/// Removes cached bases no run has used for `unused`, and staging directories of dead fills.
pub fn reclaim_cache(cache: &Path, unused: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(cache) else { return };
    for e in entries.flatten() {
        let age = e.metadata().and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
        // A fill killed mid-unpack never renames its staging directory (hundreds of MB); one whose
        // process is gone is dead. A reused PID only keeps it until it is `unused` old.
        let dead_fill = staging_pid(&e.file_name()).is_some_and(|pid| !Path::new("/proc").join(pid).exists());
        if dead_fill || age.is_some_and(|a| a > unused) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// The filling process's PID in a staging directory's name, `.KEY.PID`.
fn staging_pid(name: &std::ffi::OsStr) -> Option<String> {
    let pid = name.to_str()?.strip_prefix('.')?.rsplit_once('.')?.1;
    pid.parse::<u32>().ok().map(|_| pid.to_string())
}

/// Whether a layer deletes anything from the layers below it.
fn has_whiteouts(store: &Layout, layer: &Descriptor) -> Result<bool, String> {
    let path = store.blob_path(&layer.digest).map_err(|e| e.to_string())?;
    let file = std::fs::File::open(&path).map_err(|e| format!("cannot open layer {}: {e}", layer.digest))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    for entry in archive.entries().map_err(|e| format!("layer {}: {e}", layer.digest))? {
        let entry = entry.map_err(|e| format!("layer {}: {e}", layer.digest))?;
        let path = entry.path().map_err(|e| format!("layer {}: {e}", layer.digest))?;
        if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(".wh.")) {
            return Ok(true);
        }
    }
    Ok(false)
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
    fn a_dead_fills_staging_directory_is_reclaimed_and_a_live_ones_kept() {
        let cache = std::env::temp_dir().join(format!("dcr-rootfs-cache-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
        // PID 0 is never a process (no /proc/0); this process is alive.
        let (dead, live, base) =
            (cache.join(".key.0"), cache.join(format!(".key.{}", std::process::id())), cache.join("key"));
        for d in [&dead, &live, &base] {
            std::fs::create_dir_all(d).unwrap();
        }
        reclaim_cache(&cache, std::time::Duration::from_secs(3600));
        assert!(!dead.exists());
        assert!(live.exists() && base.exists());
        std::fs::remove_dir_all(&cache).unwrap();
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
