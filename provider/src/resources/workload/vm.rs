//! The workload's VM and the access around it: the instance Compute creates, its network, the
//! consumer pool's rules and the readers' binding on a run's results.

use dcr_attestation::claims::CONFIDENTIAL_HARDWARE;
use dcr_attestation::condition::PolicyRules;
use dcr_attestation::names::{digest_hex, instance_name};
use serde_json::json;
use tfplugin6::Diagnostics;
use tfplugin6::model::Attr;

use crate::clients::Clients;
use crate::resources::common::gcp_diag;

use super::model::Workload;
use super::{BOOT_DISK_TYPE, CONFIDENTIAL_SPACE_IMAGE};

/// The rules the consumer's pool applies: this digest only, on the backend's TEE. Public for the
/// CEL agreement test (tests/tests/cel_agreement.rs), which checks the condition they generate.
pub fn output_rules(digest: &str, is_local: bool) -> PolicyRules {
    PolicyRules {
        allowed_image_digests: vec![digest.to_string()],
        require_confidential_hardware: !is_local,
        allowed_hardware: CONFIDENTIAL_HARDWARE.iter().map(|h| h.to_string()).collect(),
        allow_debug: is_local,
        require_stable_image: !is_local,
    }
}

/// The VM: Confidential Space image, metadata the launcher reads, memory-backed `/run/dcr`.
pub fn instance_body(
    planned: &Workload,
    image: &str,
    is_local: bool,
    local_endpoint: Option<&str>,
) -> serde_json::Value {
    let s = |a: &Attr<String>| a.known().cloned().unwrap_or_default();
    let name = s(planned.name());
    let mut items = vec![
        json!({"key": "tee-image-reference", "value": image}),
        json!({"key": "tee-restart-policy", "value": "Never"}),
        // Container logs (the launcher's and papermill's, never cell output) reach the console only
        // where its owner may see the workload anyway: the local, debug-only simulated TEE.
        json!({"key": "tee-container-log-redirect", "value": if is_local { "true" } else { "false" }}),
        json!({"key": "tee-mount", "value": "type=tmpfs,source=tmpfs,destination=/run/dcr"}),
    ];
    if let Some(e) = local_endpoint {
        items.push(json!({"key": "tee-env-DCR_LOCAL_CLOUD", "value": e}));
    }
    let mut body = json!({
        "name": instance_name(&name),
        "machineType": format!("zones/{}/machineTypes/{}", s(&planned.zone), s(&planned.machine_type)),
        "confidentialInstanceConfig": {"confidentialInstanceType": s(&planned.confidential_type)},
        "shieldedInstanceConfig": {"enableSecureBoot": true, "enableVtpm": true, "enableIntegrityMonitoring": true},
        "scheduling": {"onHostMaintenance": "TERMINATE", "automaticRestart": false},
        "disks": [{"boot": true, "autoDelete": true, "initializeParams": {
            "sourceImage": if is_local { format!("{CONFIDENTIAL_SPACE_IMAGE}-debug") } else { CONFIDENTIAL_SPACE_IMAGE.to_string() },
            "diskType": format!("zones/{}/diskTypes/{BOOT_DISK_TYPE}", s(&planned.zone)),
        }}],
        "networkInterfaces": [network_interface(planned)],
        "metadata": {"items": items},
        "labels": {"dcr-workload": name},
    });
    if let Some(sa) = planned.service_account.as_deref() {
        body["serviceAccounts"] = json!([{"email": sa, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}]);
    }
    body
}

/// Lets `readers` read this run's results and nothing else in the bucket: a conditional
/// `roles/storage.objectViewer` binding on the output bucket limited to the run's prefix
/// (`resource.name.startsWith('projects/_/buckets/B/objects/PREFIX')`, the form Cloud Storage
/// documents for prefix-scoped access: https://cloud.google.com/storage/docs/access-control/iam#conditions).
/// Object names under the prefix are in the output manifest; listing the bucket stays the
/// consumer's. The binding is keyed by its title, so a re-run of the same image replaces it.
pub(super) async fn share_run(
    c: &Clients,
    bucket: &str,
    prefix: &str,
    digest: &str,
    readers: &[String],
) -> Result<(), Diagnostics> {
    let condition = run_condition(bucket, prefix, digest);
    let result = dcr_gcp::iam::read_modify_write(&c.storage.bucket_iam(bucket), |p| {
        p.set_conditional_members(RUN_READER_ROLE, &condition, readers)
    })
    .await;
    result.map(|_| ()).map_err(|e| gcp_diag(&format!("Cannot share the run's results in gs://{bucket}/{prefix}"), e))
}

const RUN_READER_ROLE: &str = "roles/storage.objectViewer";

/// The condition of a run's reader binding.
pub(super) fn run_condition(bucket: &str, prefix: &str, digest: &str) -> dcr_gcp::iam::Expr {
    dcr_gcp::iam::Expr {
        expression: format!(
            "resource.name.startsWith({})",
            cel_string(&format!("projects/_/buckets/{bucket}/objects/{prefix}"))
        ),
        title: Some(format!("dcr run {}", &digest_hex(digest)[..12.min(digest_hex(digest).len())])),
        description: Some(format!(
            "Readers the input policies name, for the results of image {digest} (managed by dcr)"
        )),
    }
}

/// A CEL string literal (single-quoted, `\\` and `'` escaped): object prefixes may hold quotes.
pub(super) fn cel_string(s: &str) -> String {
    dcr_attestation::condition::quoted(s)
}

/// The VM's one network interface. Without an access config a VM has no external internet access
/// (compute.v1 `NetworkInterface.accessConfigs`), and Confidential Space's launcher must reach the
/// registry, the attestation service, STS, Storage and KMS: an ephemeral external IP is the default,
/// as gcloud gives one (Google's `launcher/image/test/create_vm.sh` creates VMs this way).
pub(super) fn network_interface(planned: &Workload) -> serde_json::Value {
    let mut nic = serde_json::Map::new();
    match (planned.network.as_deref(), planned.subnetwork.as_deref()) {
        (None, None) => {
            nic.insert("network".into(), json!("global/networks/default"));
        }
        (network, subnetwork) => {
            if let Some(n) = network {
                nic.insert("network".into(), json!(n));
            }
            if let Some(s) = subnetwork {
                nic.insert("subnetwork".into(), json!(s));
            }
        }
    }
    if planned.external_ip != Attr::Known(false) {
        nic.insert("accessConfigs".into(), json!([{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]));
    }
    serde_json::Value::Object(nic)
}
