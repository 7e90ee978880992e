//! `dcr_workload`: one run of a notebook on the data its policies allow, in a Confidential Space VM
//! (or, on the local backend, a runc container in a simulated TEE).
//!
//! Apply builds the workload image (its digest is planned, the same as `data "dcr_image_digest"`
//! computes), stores it (the local image store, or a registry), gives the consumer's output bucket a
//! workload identity pool whose condition pins exactly this digest (no long-lived credential
//! anywhere), starts the VM, waits for it to finish, and verifies the released attestation token —
//! signature, image digest, nonce = SHA-256 of the output manifest, hardware and debug status —
//! before it reports success. A changed notebook, parameter or input is a new image and so a new
//! run — in place, beside the earlier runs' results: each run has its own prefix (its digest) in
//! the output bucket, and a new run that fails or is refused leaves the last good one as it was.
//! Only a new name or output location replaces the workload (and its bucket).
//!
//! One file per phase: [`schema`] (and configuration checks), [`plan`], [`apply`] with the VM and
//! its access in [`vm`], [`read`] (a run is a record: refresh keeps it, import refuses).

mod apply;
pub mod model;
pub mod plan;
mod read;
pub mod schema;
pub mod vm;

use tfplugin6::{Diagnostics, Value};

pub use model::Workload;
pub use plan::{Placement, plan_state};
pub use schema::schema;
pub use vm::{instance_body, output_rules};

pub const TYPE_NAME: &str = "dcr_workload";
/// What a run needs besides the notebook's own time: the VM's boot, the pull of the ~165 MB base
/// image, the launcher's bounded wait for IAM changes to propagate (5 minutes at most), and the
/// release. The default time limit of every operation is `max_run_seconds` plus this.
const RUN_MARGIN: std::time::Duration = std::time::Duration::from_secs(20 * 60);
/// The boot disk's type: Balanced PD, which both N2D (SEV) and C3 (TDX) take (C3 takes no
/// Standard PD, Compute's default for older series; compute.v1 `AttachedDiskInitializeParams`).
const BOOT_DISK_TYPE: &str = "pd-balanced";
/// Roles the VM's service account needs, for the docs and diagnostics.
const SERVICE_ACCOUNT_ROLES: &str = "`roles/confidentialcomputing.workloadUser` on the VM's project (to get attestation \
     tokens), `roles/artifactregistry.reader` on the image repository (dcr grants it on Artifact Registry \
     repositories it manages) and `roles/logging.logWriter` (for the launcher's logs)";
/// Images in the local image store are named under this host, which never resolves: the local
/// cloud finds them by digest.
pub const LOCAL_IMAGE_HOST: &str = "images.dcr.invalid";
const OUTPUT_WRITER: &str = "roles/storage.objectAdmin";
const CONFIDENTIAL_SPACE_IMAGE: &str = "projects/confidential-space-images/global/images/family/confidential-space";
const LOG_TAIL_LINES: usize = 40;
resource_by_phase!(WorkloadResource);

/// The default time limit: the run's own limit plus [`RUN_MARGIN`].
fn default_timeout(w: &Workload) -> std::time::Duration {
    let run = w.image_attrs.max_run_seconds.known().and_then(|n| n.as_i64()).filter(|n| *n > 0).unwrap_or(3600) as u64;
    std::time::Duration::from_secs(run).saturating_add(RUN_MARGIN)
}

/// Where the image is stored: `REGISTRY/NAME` or the local image store's name.
fn repository(planned: &Workload) -> String {
    let name = planned.name().as_deref().unwrap_or("");
    match planned.registry.as_deref() {
        Some(r) => format!("{r}/{name}"),
        None => format!("{LOCAL_IMAGE_HOST}/{name}"),
    }
}

/// The workload a value holds (configuration, plan or state); a null one reads as all null.
fn read(v: &Value) -> Result<Workload, Diagnostics> {
    if v.is_null() { Ok(Workload::default()) } else { tfplugin6::model::read(v, TYPE_NAME) }
}

#[cfg(test)]
mod tests {
    use dcr_attestation::condition::attribute_condition;
    use serde_json::json;
    use tfplugin6::AttributePath;

    use super::schema::*;
    use super::vm::*;
    use super::*;

    /// A (partial) value as the workload model.
    fn w(v: &Value) -> Workload {
        super::read(v).unwrap()
    }

    #[test]
    fn the_output_pool_admits_only_this_digest_on_the_backends_tee() {
        let d = format!("sha256:{}", "a".repeat(64));
        let local = attribute_condition(&output_rules(&d, true));
        assert!(local.contains(&d) && !local.contains("swname"), "{local}");
        let gcp = attribute_condition(&output_rules(&d, false));
        assert!(gcp.contains("CONFIDENTIAL_SPACE") && gcp.contains("disabled-since-boot"), "{gcp}");
    }

    #[test]
    fn a_run_is_shared_by_a_condition_on_its_prefix() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let c = run_condition("out", "study/abab/", &d);
        assert_eq!(c.expression, "resource.name.startsWith('projects/_/buckets/out/objects/study/abab/')");
        assert_eq!(c.title.as_deref(), Some("dcr run abababababab"));
        assert_eq!(cel_string(r"it's a\b"), r"'it\'s a\\b'");
    }

    #[test]
    fn vms_get_an_external_ip_unless_told_otherwise_and_a_balanced_boot_disk() {
        let planned = Value::object([
            ("name", Value::string("study")),
            ("zone", Value::string("europe-west4-b")),
            ("machine_type", Value::string("n2d-standard-2")),
            ("confidential_type", Value::string("SEV")),
            ("external_ip", Value::Bool(true)),
        ]);
        let b = instance_body(&w(&planned), "r@sha256:00", false, None);
        assert_eq!(
            b["networkInterfaces"],
            json!([{"network": "global/networks/default", "accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]}])
        );
        assert_eq!(b["disks"][0]["initializeParams"]["diskType"], "zones/europe-west4-b/diskTypes/pd-balanced");
        let mut private = w(&planned);
        private.external_ip = tfplugin6::model::Attr::Known(false);
        private.subnetwork = tfplugin6::model::Attr::Known("regions/europe-west4/subnetworks/private".into());
        let b = instance_body(&private, "r@sha256:00", false, None);
        assert_eq!(b["networkInterfaces"], json!([{"subnetwork": "regions/europe-west4/subnetworks/private"}]));
    }

    #[test]
    fn the_default_time_limit_covers_the_run_and_its_margin() {
        assert_eq!(default_timeout(&Workload::default()), std::time::Duration::from_secs(3600 + 20 * 60));
        let long = Value::object([("max_run_seconds", Value::int(86_400))]);
        assert_eq!(default_timeout(&w(&long)), std::time::Duration::from_secs(86_400 + 20 * 60));
    }

    #[test]
    fn network_urls_and_service_accounts_are_checked() {
        for (attr, good) in [
            ("network", "global/networks/default"),
            ("network", "projects/host-proj/global/networks/shared"),
            ("network", "https://www.googleapis.com/compute/v1/projects/p/global/networks/n"),
            ("subnetwork", "regions/europe-west4/subnetworks/private"),
            ("subnetwork", "projects/host/regions/us-east1/subnetworks/s-1"),
        ] {
            assert!(validate_network(&w(&Value::object([(attr, Value::string(good))]))).0.is_empty(), "{good}");
        }
        for (attr, bad) in [("network", "default"), ("network", "global/networks/Bad"), ("subnetwork", "subnetworks/s")]
        {
            let d = validate_network(&w(&Value::object([(attr, Value::string(bad))])));
            assert_eq!(d.0[0].attribute, Some(AttributePath::root(attr)), "{bad}");
        }
        assert!(is_service_account_email("dcr-vm@my-proj.iam.gserviceaccount.com"));
        assert!(is_service_account_email("123456-compute@developer.gserviceaccount.com"));
        assert!(!is_service_account_email("alice@example.com"));
    }

    #[test]
    fn bad_settings_name_their_attribute() {
        let cfg = Value::object([
            ("confidential_type", Value::string("SNP")),
            ("registry", Value::string("no-slash")),
            ("parameters", Value::string("[1]")),
            ("name", Value::string("Bad")),
        ]);
        let d = validate_config(&cfg);
        let text = format!("{d:?}");
        for attr in ["confidential_type", "registry", "parameters", "name"] {
            assert!(text.contains(attr), "{attr}: {text}");
        }
    }
}
