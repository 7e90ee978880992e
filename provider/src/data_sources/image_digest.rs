//! `data "dcr_image_digest"`: the digest `dcr_workload` will build and run for the same
//! attributes, computed without building anything remotely or pushing. A data owner reviews the
//! notebook and the manifest, then pins this digest in `dcr_policy.allowed_image_digests`.

use std::sync::Arc;

use async_trait::async_trait;
use tfplugin6::schema::{Attribute, Block, Schema};
use tfplugin6::{DataSource, Diagnostic, Diagnostics, Type, Value};

use tfplugin6::model::{Attr, IntoValue, Model};

use crate::provider::ProviderState;
use crate::workload_image::{ImageSpec, image_attributes, output_block, plan_image, validate};

pub const TYPE_NAME: &str = "dcr_image_digest";

pub struct ImageDigest {
    state: Arc<ProviderState>,
}

impl ImageDigest {
    pub fn new(state: Arc<ProviderState>) -> ImageDigest {
        ImageDigest { state }
    }
}

/// What the data source's configuration and state hold.
#[derive(Clone, Debug, Default, PartialEq, Model)]
pub struct ImageDigestData {
    #[model(flatten)]
    pub image: ImageSpec,
    pub digest: Attr<String>,
    pub manifest: Attr<String>,
}

/// The configuration's checks that need no cloud.
fn validate_config(config: &Value) -> Diagnostics {
    match tfplugin6::model::read::<ImageDigestData>(config, "dcr_image_digest configuration") {
        Ok(m) => {
            let mut d = tfplugin6::validate::declared(&schema().block, config);
            d.extend(validate(&m.image));
            d
        }
        Err(d) => d,
    }
}

/// The configuration with its defaults: the declared ones, the base image and the output prefix.
fn with_defaults(config: &Value) -> Result<ImageDigestData, Diagnostics> {
    let mut v = config.clone();
    tfplugin6::plan::fill_defaults(&schema().block, &mut v);
    let mut m: ImageDigestData = tfplugin6::model::read(&v, TYPE_NAME)?;
    m.image.fill_defaults();
    Ok(m)
}

pub fn schema() -> Schema {
    let b = Block::new(
        "The digest of the workload image `dcr_workload` builds from the same attributes: the base runtime image \
         plus the notebook, its parameters and the workload manifest. Computed locally, byte for byte as the \
         resource builds it, so a data owner can pin a reviewed notebook in `dcr_policy.allowed_image_digests` \
         before the workload runs.",
    );
    let b = image_attributes(b, output_block())
        .attr(Attribute::computed("digest", Type::String, "The image digest (`sha256:...`)."))
        .attr(Attribute::computed(
            "manifest",
            Type::String,
            "The workload manifest baked into the image (JSON): inputs, their policies, the output location.",
        ));
    Schema::new(0, b)
}

#[async_trait]
impl DataSource for ImageDigest {
    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn validate(&self, config: &Value) -> Diagnostics {
        validate_config(config)
    }

    async fn read(&self, config: Value) -> Result<(Value, Diagnostics), Diagnostics> {
        let d = validate_config(&config);
        if d.has_errors() {
            return Err(d);
        }
        let c = self.state.clients()?;
        let mut state = with_defaults(&config)?;
        if let Some(path) = state.image.notebook.as_deref().filter(|p| crate::files::is_missing(p)) {
            // Terraform reads data sources before it destroys (its pre-destroy refresh, a plan with
            // `PreDestroyRefresh` in hashicorp/terraform internal/terraform/context_plan.go): an error
            // here would make `terraform destroy` depend on a local file. A null digest instead
            // fails any plan that uses it (dcr_policy refuses a null digest), with this warning.
            let warning = Diagnostic::warning(
                format!("dcr_image_digest: the notebook {path:?} is not here; its digest reads as null"),
                "Destroy works without it; a plan that uses the digest fails until the notebook is back.",
            )
            .at(tfplugin6::AttributePath::root("notebook"));
            return Ok((state.into_value(), warning.into()));
        }
        let (manifest, image) = plan_image(&c, &state.image).await?.ok_or_else(|| {
            Diagnostics::from(Diagnostic::error(
                "dcr_image_digest: an attribute is not known",
                "This is a bug in the provider.",
            ))
        })?;
        state.digest = Attr::Known(image.digest);
        state.manifest = Attr::Known(String::from_utf8_lossy(&manifest.to_bytes()).into_owned());
        Ok((state.into_value(), Diagnostics::new()))
    }
}
