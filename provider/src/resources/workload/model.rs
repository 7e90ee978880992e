//! What a `dcr_workload`'s configuration, plan and state hold, as Rust values.

use tfplugin6::Value;
use tfplugin6::model::{Attr, Model, SetOf};

use crate::workload_image::{ImageAttributes, ImageOutput, ImageSpec, OutputBlock};

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct Workload {
    pub id: Attr<String>,
    /// What decides the image: name, notebook, parameters, inputs, output and the rest.
    #[model(flatten)]
    pub image_attrs: ImageAttributes<WorkloadOutput>,
    pub registry: Attr<String>,
    pub zone: Attr<String>,
    pub confidential_type: Attr<String>,
    pub machine_type: Attr<String>,
    pub service_account: Attr<String>,
    pub network: Attr<String>,
    pub subnetwork: Attr<String>,
    pub external_ip: Attr<bool>,
    pub wait: Attr<bool>,
    pub image: Attr<String>,
    pub image_digest: Attr<String>,
    pub instance: Attr<String>,
    pub status: Attr<String>,
    pub output_uri: Attr<String>,
    pub output_manifest_sha256: Attr<String>,
    pub attestation_token: Attr<String>,
    /// The verified claims, an object of [`crate::verification::claims_type`].
    pub attestation_claims: Value,
    pub shared_with: Attr<SetOf<Attr<String>>>,
    pub log_tail: Attr<String>,
    pub timeouts: Attr<crate::timeouts::Timeouts>,
}

#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct WorkloadOutput {
    pub bucket: Attr<String>,
    pub prefix: Attr<String>,
    pub location: Attr<String>,
}

impl Workload {
    /// What decides the image.
    pub fn image_spec(&self) -> ImageSpec {
        let a = self.image_attrs.clone();
        ImageSpec {
            name: a.name,
            notebook: a.notebook,
            parameters: a.parameters,
            max_run_seconds: a.max_run_seconds,
            base_image: a.base_image,
            input: a.input,
            output: a.output.map(|o| ImageOutput { bucket: o.bucket, prefix: o.prefix }),
        }
    }

    /// Whether `other` defines the same run: a change of any of these starts a new run in place.
    pub fn same_run(&self, other: &Workload) -> bool {
        self.image_digest == other.image_digest
            && self.registry == other.registry
            && self.zone == other.zone
            && self.machine_type == other.machine_type
            && self.confidential_type == other.confidential_type
            && self.service_account == other.service_account
            && self.network == other.network
            && self.subnetwork == other.subnetwork
            && self.external_ip == other.external_ip
            && self.image_attrs.base_image == other.image_attrs.base_image
            && self.image_attrs.max_run_seconds == other.image_attrs.max_run_seconds
            && self.image_attrs.parameters == other.image_attrs.parameters
    }

    /// Whether `other` builds the same image from the same notebook file: the same inputs to the
    /// image besides the notebook's bytes.
    pub fn same_image_inputs(&self, other: &Workload) -> bool {
        // The image spec holds the output's bucket and prefix, not its location.
        self.image_spec() == other.image_spec()
    }

    pub fn name(&self) -> &Attr<String> {
        &self.image_attrs.name
    }

    pub fn output(&self) -> WorkloadOutput {
        self.image_attrs.output.known().cloned().unwrap_or_default()
    }
}

/// A string the plan made known; its absence at apply is a provider bug.
pub fn known<'a>(v: &'a Attr<String>, attribute: &str) -> Result<&'a str, tfplugin6::Diagnostics> {
    crate::resources::common::known(super::TYPE_NAME, v, attribute)
}

impl OutputBlock for WorkloadOutput {
    fn prefix_mut(&mut self) -> &mut Attr<String> {
        &mut self.prefix
    }
}
