//! Deterministic layers: a set of files becomes the same gzip'd tar, byte for byte, whatever order
//! they come in and whenever they are built.

use std::collections::BTreeMap;
use std::io::Write;

use crate::digest_of;
use crate::error::ImageError;

/// gzip level: fast. Layers are built at plan time and on every apply; level 1 ran at 170 MB/s
/// here against 24 MB/s for level 6 (crates.md §8), for a ratio of 0.39 instead of 0.31.
const GZIP_LEVEL: u32 = 1;

/// One file of a layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative path inside the image, `/`-separated (`dcr/notebook.ipynb`).
    pub path: String,
    /// Permission bits (`0o644`, `0o755`).
    pub mode: u32,
    pub contents: Vec<u8>,
}

impl FileEntry {
    pub fn new(path: impl Into<String>, mode: u32, contents: impl Into<Vec<u8>>) -> FileEntry {
        FileEntry { path: path.into(), mode, contents: contents.into() }
    }
}

/// A built layer: the compressed blob and the two digests OCI needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The gzip'd tar.
    pub blob: Vec<u8>,
    /// Digest of `blob` (the manifest names the layer by it).
    pub digest: String,
    /// Digest of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id: String,
}

fn check_path(p: &str) -> Result<(), ImageError> {
    let bad = |why: &str| Err(ImageError::BadPath { path: p.to_string(), why: why.to_string() });
    if p.is_empty() || p.starts_with('/') || p.ends_with('/') {
        return bad("paths are relative file paths, e.g. dcr/notebook.ipynb");
    }
    if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return bad("empty, '.' and '..' components are not allowed");
    }
    if !p.is_ascii() || p.chars().any(|c| c.is_ascii_control()) {
        return bad("only printable ASCII is allowed");
    }
    Ok(())
}

enum Node<'a> {
    Dir,
    File(&'a FileEntry),
}

/// Builds the layer holding `files` (and their parent directories, mode 0755).
pub fn build_layer(files: &[FileEntry]) -> Result<Layer, ImageError> {
    let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
    for f in files {
        check_path(&f.path)?;
        let parts: Vec<&str> = f.path.split('/').collect();
        for i in 1..parts.len() {
            nodes.entry(format!("{}/", parts[..i].join("/"))).or_insert(Node::Dir);
        }
        if nodes.insert(f.path.clone(), Node::File(f)).is_some() {
            return Err(ImageError::BadPath { path: f.path.clone(), why: "listed twice".into() });
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    for (path, node) in &nodes {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).map_err(|e| ImageError::BadPath { path: path.clone(), why: e.to_string() })?;
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let data: &[u8] = match node {
            Node::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                &[]
            }
            Node::File(f) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(f.mode & 0o7777);
                &f.contents
            }
        };
        h.set_size(data.len() as u64);
        h.set_cksum();
        tar.append(&h, data).map_err(crate::error::io(path))?;
    }
    let tar = tar.into_inner().map_err(crate::error::io("layer.tar"))?;
    let diff_id = digest_of(&tar);
    // mtime 0 and "unknown" OS in the gzip header: nothing about this machine or moment.
    let mut gz =
        flate2::GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
    gz.write_all(&tar).map_err(crate::error::io("layer.tar.gz"))?;
    let blob = gz.finish().map_err(crate::error::io("layer.tar.gz"))?;
    Ok(Layer { digest: digest_of(&blob), diff_id, blob })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> Vec<FileEntry> {
        vec![
            FileEntry::new("dcr/notebook.ipynb", 0o644, b"{\"cells\": []}".to_vec()),
            FileEntry::new("dcr/parameters.json", 0o644, b"{}".to_vec()),
            FileEntry::new("dcr/bin/run", 0o755, b"#!/bin/sh\n".to_vec()),
        ]
    }

    #[test]
    fn the_same_files_give_the_same_bytes_in_any_order() {
        let a = build_layer(&files()).unwrap();
        let mut reversed = files();
        reversed.reverse();
        assert_eq!(a, build_layer(&reversed).unwrap());
        let mut edited = files();
        edited[0].contents.push(b' ');
        let b = build_layer(&edited).unwrap();
        assert_ne!(a.digest, b.digest);
        assert_ne!(a.diff_id, b.diff_id);
    }

    #[test]
    fn entries_carry_no_time_owner_or_host() {
        let layer = build_layer(&files()).unwrap();
        assert_eq!(&layer.blob[4..8], &[0, 0, 0, 0], "gzip mtime");
        let tar = flate2::read::GzDecoder::new(&layer.blob[..]);
        let mut archive = tar::Archive::new(tar);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!((h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()), (0, 0, 0));
            seen.push((e.path().unwrap().display().to_string(), h.mode().unwrap()));
        }
        assert_eq!(
            seen,
            vec![
                ("dcr/".to_string(), 0o755),
                ("dcr/bin/".to_string(), 0o755),
                ("dcr/bin/run".to_string(), 0o755),
                ("dcr/notebook.ipynb".to_string(), 0o644),
                ("dcr/parameters.json".to_string(), 0o644),
            ]
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for p in ["/etc/passwd", "dcr/../x", "", "dcr//x", "dcr/\u{e9}", "dcr/"] {
            assert!(build_layer(&[FileEntry::new(p, 0o644, Vec::new())]).is_err(), "{p:?}");
        }
        let twice = [FileEntry::new("a", 0o644, Vec::new()), FileEntry::new("a", 0o644, Vec::new())];
        assert!(build_layer(&twice).is_err());
    }
}
