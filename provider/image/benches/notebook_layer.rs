//! How long building a workload image takes on top of the base runtime image: the one layer
//! holding the notebook, its parameters and the manifest, the config and the manifest — what
//! `dcr_workload` and `data "dcr_image_digest"` do on every plan. Reads the base image from
//! `runtime-image/build.sh`'s default layout (or `DCR_BASE_LAYOUT`) and the quickstart notebook.
//!
//! `cargo bench -p dcr-image --bench notebook_layer`

use std::path::PathBuf;
use std::time::Instant;

use dcr_image::{BaseImage, FileEntry};

fn main() {
    let layout = std::env::var_os("DCR_BASE_LAYOUT").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("DCR_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/dcr"));
        cache.join("runtime-image/layout")
    });
    let base = BaseImage::from_layout(&layout, Some("dcr-runtime:0.1.0"))
        .unwrap_or_else(|e| panic!("no base image in {}: {e} (run runtime-image/build.sh)", layout.display()));
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let notebook = std::fs::read(root.join("examples/quickstart/analysis.ipynb")).expect("quickstart notebook");
    let manifest = br#"{"format": "dcr-workload-v1", "name": "bench"}"#.to_vec();
    let files = vec![
        FileEntry::new("dcr/workload.json", 0o644, manifest),
        FileEntry::new("dcr/notebook.ipynb", 0o644, notebook),
        FileEntry::new("dcr/parameters.json", 0o644, b"{\"min_group_size\": 10}".to_vec()),
    ];
    let runs = 50;
    let mut times = Vec::with_capacity(runs);
    let mut digest = String::new();
    for _ in 0..runs {
        let start = Instant::now();
        let image = dcr_image::build(&base, &files, "bench").expect("build");
        times.push(start.elapsed());
        digest = image.digest;
    }
    times.sort();
    let base_bytes: u64 = base.manifest.layers.iter().map(|l| l.size).sum();
    println!(
        "notebook layer build: median {:?}, min {:?}, max {:?} over {runs} builds",
        times[runs / 2],
        times[0],
        times[runs - 1]
    );
    println!("notebook image digest: {digest}");
    println!("base image: {} ({} layer(s), {} bytes compressed)", base.digest, base.manifest.layers.len(), base_bytes);
}
