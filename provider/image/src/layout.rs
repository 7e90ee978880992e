//! OCI image layouts (image-spec `image-layout.md`): `oci-layout`, `index.json` naming images by
//! tag, and content-addressed `blobs/sha256/<hex>`. dcr's local image store is one, and base
//! images arrive as one. Blobs are written atomically and checked against their digest on read;
//! index updates take a lock, so several Terraform runs can share a store.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::digest_of;
use crate::error::{ImageError, io};
use crate::oci::{Descriptor, INDEX_MEDIA_TYPE, Index, REF_NAME, canonical};

const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

#[derive(Clone, Debug)]
pub struct Layout {
    dir: PathBuf,
}

fn hex_of(digest: &str) -> Option<&str> {
    digest.strip_prefix("sha256:").filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Layout {
    /// An existing layout.
    pub fn open(dir: &Path) -> Result<Layout, ImageError> {
        if !dir.join(LAYOUT_FILE).is_file() {
            return Err(ImageError::Layout {
                dir: dir.to_path_buf(),
                why: "has no oci-layout file: it is not an OCI image layout".into(),
            });
        }
        Ok(Layout { dir: dir.to_path_buf() })
    }

    /// A layout at `dir`, created when missing.
    pub fn create(dir: &Path) -> Result<Layout, ImageError> {
        std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(io(dir))?;
        let marker = dir.join(LAYOUT_FILE);
        if !marker.is_file() {
            write_atomically(&marker, LAYOUT_CONTENT)?;
        }
        Ok(Layout { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blob_path(&self, digest: &str) -> Result<PathBuf, ImageError> {
        let hex = hex_of(digest).ok_or_else(|| ImageError::Format {
            what: format!("digest {digest:?}"),
            detail: "expected sha256: and 64 hex digits".into(),
        })?;
        Ok(self.dir.join("blobs/sha256").join(hex))
    }

    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_ok_and(|p| p.is_file())
    }

    /// The blob's bytes, checked against its digest.
    pub fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.blob_path(digest)?;
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let actual = digest_of(&bytes);
        if actual != digest {
            return Err(ImageError::Corrupt { digest: digest.to_string(), actual });
        }
        Ok(bytes)
    }

    /// Stores `bytes`; returns their digest.
    pub fn write_blob(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let digest = digest_of(bytes);
        let path = self.blob_path(&digest)?;
        if !path.is_file() {
            std::fs::create_dir_all(path.parent().expect("blob dir")).map_err(io(&self.dir))?;
            write_atomically(&path, bytes)?;
        }
        Ok(digest)
    }

    /// Copies a blob from another layout (a hard link when both are on one file system).
    pub fn copy_blob_from(&self, other: &Layout, digest: &str) -> Result<(), ImageError> {
        let (from, to) = (other.blob_path(digest)?, self.blob_path(digest)?);
        if to.is_file() || from == to {
            return Ok(());
        }
        std::fs::create_dir_all(to.parent().expect("blob dir")).map_err(io(&self.dir))?;
        if std::fs::hard_link(&from, &to).is_err() {
            let tmp = temp_name(&to);
            std::fs::copy(&from, &tmp).map_err(io(&from))?;
            std::fs::rename(&tmp, &to).map_err(io(&to))?;
        }
        Ok(())
    }

    pub fn index(&self) -> Result<Index, ImageError> {
        let path = self.dir.join("index.json");
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| ImageError::Format { what: path.display().to_string(), detail: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Index { schema_version: 2, media_type: Some(INDEX_MEDIA_TYPE.into()), manifests: Vec::new() })
            }
            Err(e) => Err(ImageError::Io { path, source: e }),
        }
    }

    /// The manifest named `tag`, or with no tag the layout's only manifest.
    pub fn resolve(&self, tag: Option<&str>) -> Result<Descriptor, ImageError> {
        let index = self.index()?;
        let tagged = |d: &&Descriptor| d.annotations.as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str) == tag;
        let found: Vec<&Descriptor> = match tag {
            Some(_) => index.manifests.iter().filter(tagged).collect(),
            None => index.manifests.iter().collect(),
        };
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ImageError::Layout {
                dir: self.dir.clone(),
                why: match tag {
                    Some(t) => format!("has no image tagged {t:?}"),
                    None => "holds no image".into(),
                },
            }),
            _ => Err(ImageError::Layout {
                dir: self.dir.clone(),
                why: "holds several images: name one by its tag (PATH:TAG)".into(),
            }),
        }
    }

    /// Names `manifest` `tag` in the index, replacing what had that tag.
    pub fn tag(&self, tag: &str, manifest: &Descriptor) -> Result<(), ImageError> {
        let lock_path = self.dir.join(".index.lock");
        let lock = File::create(&lock_path).map_err(io(&lock_path))?;
        lock.lock().map_err(io(&lock_path))?;
        let mut index = self.index()?;
        index
            .manifests
            .retain(|d| d.annotations.as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str) != Some(tag));
        let mut entry = manifest.clone();
        entry.annotations = Some([(REF_NAME.to_string(), tag.to_string())].into());
        index.manifests.push(entry);
        index.manifests.sort_by(|a, b| a.annotations.cmp(&b.annotations));
        write_atomically(&self.dir.join("index.json"), &canonical(&index))
    }
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let tmp = temp_name(path);
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
