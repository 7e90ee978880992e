//! The base runtime image recipe (runtime-image/build.sh), run for real: two builds into separate
//! OCI layouts give the same digest; skopeo reads the image as we describe it; and the image works —
//! its Python imports the pinned packages and its entrypoint is our static launcher, with no path
//! of the build machine inside.

use std::path::{Path, PathBuf};
use std::process::Command;

use dcr_e2e::clean_room::{base_layout, build_base_image};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

#[test]
fn the_base_image_builds_reproducibly_and_runs_the_launcher() {
    let scratch = std::env::temp_dir().join(format!("dcr-runtime-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    // The first build refreshes the default layout the workload tests start from.
    let (a, b) = (base_layout(), scratch.join("b"));
    let first = build_base_image(&[]);
    let second = build_base_image(&["--layout".as_ref(), b.as_os_str()]);
    assert_eq!(first, second, "two builds, two layouts, one digest");
    assert_eq!(std::fs::read(a.join("index.json")).unwrap(), std::fs::read(b.join("index.json")).unwrap());

    // skopeo, an independent reader, sees the digest and the entrypoint.
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci:{}:dcr-runtime:0.1.0", a.display()))
        .output()
        .expect("skopeo");
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    let info: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(info["Digest"], first.as_str());
    let manifest = read_json(&blob(&a, &first));
    let config = read_json(&blob(&a, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(config["config"]["Entrypoint"][0], "/usr/local/bin/dcr-launcher");
    assert_eq!(config["config"]["Labels"]["tee.launch_policy.allow_env_override"], "DCR_LOCAL_CLOUD");
    assert_eq!(config["created"], "1970-01-01T00:00:00Z");

    // The image works: unpack it and run its Python and its launcher in a chroot.
    let rootfs = scratch.join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    let untar = Command::new("tar").arg("-xzf").arg(blob(&a, layer)).arg("-C").arg(&rootfs).status().unwrap();
    assert!(untar.success());
    let python = Command::new("chroot")
        .arg(&rootfs)
        .args([
            "/usr/bin/python3",
            "-c",
            "import papermill, ipykernel, pandas, numpy; print(papermill.__version__, pandas.__version__)",
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&python.stdout).trim(),
        "2.6.0 3.1.1",
        "{}",
        String::from_utf8_lossy(&python.stderr)
    );
    let launcher = Command::new("chroot").arg(&rootfs).arg("/usr/local/bin/dcr-launcher").output().unwrap();
    let said = String::from_utf8_lossy(&launcher.stdout);
    assert_eq!(launcher.status.code(), Some(2), "{said}");
    assert!(said.contains("cannot read the workload manifest /dcr/workload.json"), "{said}");

    let binary = std::fs::read(rootfs.join("usr/local/bin/dcr-launcher")).unwrap();
    let text = String::from_utf8_lossy(&binary);
    for host_path in [root().display().to_string(), std::env::var("HOME").unwrap_or_else(|_| "/root".into())] {
        assert!(!text.contains(&format!("{host_path}/")), "the launcher embeds {host_path}");
    }
    assert!(!has_interpreter(&binary), "the launcher is dynamically linked (it has a PT_INTERP header)");
    std::fs::remove_dir_all(&scratch).unwrap();
}

/// Whether an ELF64 file asks for a dynamic loader (a `PT_INTERP` program header).
fn has_interpreter(elf: &[u8]) -> bool {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| u32::from_le_bytes(elf[phoff + i * size..phoff + i * size + 4].try_into().unwrap()) == 3)
}
