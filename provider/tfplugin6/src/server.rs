//! The `tfplugin6.Provider` gRPC service: decodes requests against the right schema, calls the
//! provider's traits, and encodes the answers.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::diag::{self, Diagnostic, Diagnostics};
use crate::proto;
use crate::provider::{ApplyRequest, DataSource, Function, PlanRequest, Provider, Resource};
use crate::schema::Schema;
use crate::value::{self, Type, Value};

pub(crate) struct ProviderService {
    provider: Arc<dyn Provider>,
    provider_schema: Schema,
    resources: HashMap<&'static str, (Arc<dyn Resource>, Schema)>,
    data_sources: HashMap<&'static str, (Arc<dyn DataSource>, Schema)>,
    functions: HashMap<&'static str, Arc<dyn Function>>,
}

impl ProviderService {
    pub(crate) fn new(provider: Arc<dyn Provider>) -> ProviderService {
        let resources = provider.resources().into_iter().map(|r| (r.type_name(), (r.clone(), r.schema()))).collect();
        let data_sources =
            provider.data_sources().into_iter().map(|d| (d.type_name(), (d.clone(), d.schema()))).collect();
        let functions = provider.functions().into_iter().map(|f| (f.name(), f)).collect();
        ProviderService { provider_schema: provider.schema(), provider, resources, data_sources, functions }
    }

    fn resource(&self, name: &str) -> Result<&(Arc<dyn Resource>, Schema), Status> {
        self.resources.get(name).ok_or_else(|| Status::invalid_argument(format!("unknown resource type {name:?}")))
    }
    fn data_source(&self, name: &str) -> Result<&(Arc<dyn DataSource>, Schema), Status> {
        self.data_sources
            .get(name)
            .ok_or_else(|| Status::invalid_argument(format!("unknown data source type {name:?}")))
    }
}

fn decode(dv: Option<&proto::DynamicValue>, ty: &Type) -> Result<Value, Diagnostics> {
    let Some(dv) = dv else { return Ok(Value::Null) };
    let r = if !dv.msgpack.is_empty() {
        value::from_msgpack(&dv.msgpack, ty)
    } else if !dv.json.is_empty() {
        serde_json::from_slice(&dv.json)
            .map_err(|e| value::ValueError::new(e.to_string()))
            .and_then(|j| value::from_json(&j, ty))
    } else {
        Ok(Value::Null)
    };
    r.map_err(|e| Diagnostic::error("Provider received a malformed value", e.to_string()).into())
}

fn encode(v: &Value, ty: &Type) -> Result<proto::DynamicValue, Diagnostics> {
    value::to_msgpack(v, ty)
        .map(|msgpack| proto::DynamicValue { msgpack, json: Vec::new() })
        .map_err(|e| Diagnostic::error("Provider produced a value that does not fit its schema", e.to_string()).into())
}

fn diags(d: &Diagnostics) -> Vec<proto::Diagnostic> {
    diag::to_proto(d)
}

fn function_to_proto(f: &dyn Function) -> proto::Function {
    let sig = f.signature();
    let ty = |t: &Type| serde_json::to_vec(&t.to_json()).expect("type JSON");
    proto::Function {
        parameters: sig
            .parameters
            .iter()
            .map(|p| proto::function::Parameter {
                name: p.name.clone(),
                r#type: ty(&p.ty),
                allow_null_value: false,
                allow_unknown_values: false,
                description: p.description.clone(),
                description_kind: proto::StringKind::Markdown as i32,
            })
            .collect(),
        variadic_parameter: None,
        r#return: Some(proto::function::Return { r#type: ty(&sig.return_type) }),
        summary: sig.summary,
        description: sig.description,
        description_kind: proto::StringKind::Markdown as i32,
        deprecation_message: String::new(),
    }
}

type Rpc<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl proto::provider_server::Provider for ProviderService {
    async fn get_metadata(&self, _: Request<proto::get_metadata::Request>) -> Rpc<proto::get_metadata::Response> {
        use proto::get_metadata as m;
        Ok(Response::new(m::Response {
            server_capabilities: Some(capabilities()),
            diagnostics: Vec::new(),
            data_sources: self
                .data_sources
                .keys()
                .map(|k| m::DataSourceMetadata { type_name: k.to_string() })
                .collect(),
            resources: self.resources.keys().map(|k| m::ResourceMetadata { type_name: k.to_string() }).collect(),
            functions: self.functions.keys().map(|k| m::FunctionMetadata { name: k.to_string() }).collect(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<proto::get_provider_schema::Request>,
    ) -> Rpc<proto::get_provider_schema::Response> {
        Ok(Response::new(proto::get_provider_schema::Response {
            provider: Some((&self.provider_schema).into()),
            resource_schemas: self.resources.iter().map(|(k, (_, s))| (k.to_string(), s.into())).collect(),
            data_source_schemas: self.data_sources.iter().map(|(k, (_, s))| (k.to_string(), s.into())).collect(),
            functions: self.functions.iter().map(|(k, f)| (k.to_string(), function_to_proto(f.as_ref()))).collect(),
            diagnostics: Vec::new(),
            provider_meta: None,
            server_capabilities: Some(capabilities()),
        }))
    }

    async fn validate_provider_config(
        &self,
        req: Request<proto::validate_provider_config::Request>,
    ) -> Rpc<proto::validate_provider_config::Response> {
        let req = req.into_inner();
        let d = match decode(req.config.as_ref(), &self.provider_schema.implied_type()) {
            Ok(cfg) => self.provider.validate(&cfg).await,
            Err(d) => d,
        };
        Ok(Response::new(proto::validate_provider_config::Response { diagnostics: diags(&d) }))
    }

    async fn validate_resource_config(
        &self,
        req: Request<proto::validate_resource_config::Request>,
    ) -> Rpc<proto::validate_resource_config::Response> {
        let req = req.into_inner();
        let (r, s) = self.resource(&req.type_name)?;
        let d = match decode(req.config.as_ref(), &s.implied_type()) {
            Ok(cfg) => r.validate(&cfg).await,
            Err(d) => d,
        };
        Ok(Response::new(proto::validate_resource_config::Response { diagnostics: diags(&d) }))
    }

    async fn validate_data_resource_config(
        &self,
        req: Request<proto::validate_data_resource_config::Request>,
    ) -> Rpc<proto::validate_data_resource_config::Response> {
        let req = req.into_inner();
        let (ds, s) = self.data_source(&req.type_name)?;
        let d = match decode(req.config.as_ref(), &s.implied_type()) {
            Ok(cfg) => ds.validate(&cfg).await,
            Err(d) => d,
        };
        Ok(Response::new(proto::validate_data_resource_config::Response { diagnostics: diags(&d) }))
    }

    async fn upgrade_resource_state(
        &self,
        req: Request<proto::upgrade_resource_state::Request>,
    ) -> Rpc<proto::upgrade_resource_state::Response> {
        let req = req.into_inner();
        let (r, s) = self.resource(&req.type_name)?;
        let ty = s.implied_type();
        let result = (|| {
            let raw = req.raw_state.unwrap_or_default();
            if raw.json.is_empty() {
                return Err(Diagnostic::error(
                    "Legacy state format is not supported",
                    "The stored state is in the pre-0.12 flatmap format, which dcr never wrote.",
                )
                .into());
            }
            let json: serde_json::Value = serde_json::from_slice(&raw.json)
                .map_err(|e| Diagnostics::from(Diagnostic::error("Stored state is not valid JSON", e.to_string())))?;
            let upgraded = r.upgrade_state(req.version, json)?;
            let v = value::from_json(&upgraded, &ty).map_err(|e| {
                Diagnostics::from(Diagnostic::error("Stored state does not fit the schema", e.to_string()))
            })?;
            encode(&v, &ty)
        })();
        Ok(Response::new(match result {
            Ok(dv) => proto::upgrade_resource_state::Response { upgraded_state: Some(dv), diagnostics: Vec::new() },
            Err(d) => proto::upgrade_resource_state::Response { upgraded_state: None, diagnostics: diags(&d) },
        }))
    }

    async fn get_resource_identity_schemas(
        &self,
        _: Request<proto::get_resource_identity_schemas::Request>,
    ) -> Rpc<proto::get_resource_identity_schemas::Response> {
        Ok(Response::new(proto::get_resource_identity_schemas::Response::default()))
    }

    async fn configure_provider(
        &self,
        req: Request<proto::configure_provider::Request>,
    ) -> Rpc<proto::configure_provider::Response> {
        let req = req.into_inner();
        let d = match decode(req.config.as_ref(), &self.provider_schema.implied_type()) {
            Ok(cfg) => self.provider.configure(&req.terraform_version, &cfg).await,
            Err(d) => d,
        };
        Ok(Response::new(proto::configure_provider::Response { diagnostics: diags(&d) }))
    }

    async fn read_resource(&self, req: Request<proto::read_resource::Request>) -> Rpc<proto::read_resource::Response> {
        let req = req.into_inner();
        let (r, s) = self.resource(&req.type_name)?;
        let ty = s.implied_type();
        let state = match decode(req.current_state.as_ref(), &ty) {
            Ok(v) => v,
            Err(d) => {
                return Ok(Response::new(proto::read_resource::Response {
                    diagnostics: diags(&d),
                    ..Default::default()
                }));
            }
        };
        let resp = r.read(state, req.private).await;
        let mut d = resp.diagnostics;
        let new_state = match encode(&resp.new_state, &ty) {
            Ok(v) => Some(v),
            Err(e) => {
                d.extend(e);
                None
            }
        };
        Ok(Response::new(proto::read_resource::Response { new_state, diagnostics: diags(&d), private: resp.private }))
    }

    async fn plan_resource_change(
        &self,
        req: Request<proto::plan_resource_change::Request>,
    ) -> Rpc<proto::plan_resource_change::Response> {
        let req = req.into_inner();
        let (r, s) = self.resource(&req.type_name)?;
        let ty = s.implied_type();
        let decoded = (|| {
            Ok::<_, Diagnostics>(PlanRequest {
                prior_state: decode(req.prior_state.as_ref(), &ty)?,
                proposed_new_state: decode(req.proposed_new_state.as_ref(), &ty)?,
                config: decode(req.config.as_ref(), &ty)?,
                prior_private: req.prior_private.clone(),
            })
        })();
        let plan = match decoded {
            Ok(p) => p,
            Err(d) => {
                return Ok(Response::new(proto::plan_resource_change::Response {
                    diagnostics: diags(&d),
                    ..Default::default()
                }));
            }
        };
        let resp = r.plan(plan).await;
        let mut d = resp.diagnostics;
        let planned_state = match encode(&resp.planned_state, &ty) {
            Ok(v) => Some(v),
            Err(e) => {
                d.extend(e);
                None
            }
        };
        Ok(Response::new(proto::plan_resource_change::Response {
            planned_state,
            requires_replace: resp.requires_replace.iter().map(Into::into).collect(),
            planned_private: resp.planned_private,
            diagnostics: diags(&d),
        }))
    }

    async fn apply_resource_change(
        &self,
        req: Request<proto::apply_resource_change::Request>,
    ) -> Rpc<proto::apply_resource_change::Response> {
        let req = req.into_inner();
        let (r, s) = self.resource(&req.type_name)?;
        let ty = s.implied_type();
        let decoded = (|| {
            Ok::<_, Diagnostics>(ApplyRequest {
                prior_state: decode(req.prior_state.as_ref(), &ty)?,
                planned_state: decode(req.planned_state.as_ref(), &ty)?,
                config: decode(req.config.as_ref(), &ty)?,
                planned_private: req.planned_private.clone(),
            })
        })();
        let apply = match decoded {
            Ok(a) => a,
            Err(d) => {
                // Keep what exists: answer with the prior state so nothing is forgotten.
                return Ok(Response::new(proto::apply_resource_change::Response {
                    new_state: req.prior_state,
                    diagnostics: diags(&d),
                    ..Default::default()
                }));
            }
        };
        let resp = r.apply(apply).await;
        let mut d = resp.diagnostics;
        let new_state = match encode(&resp.new_state, &ty) {
            Ok(v) => Some(v),
            Err(e) => {
                d.extend(e);
                req.prior_state
            }
        };
        Ok(Response::new(proto::apply_resource_change::Response {
            new_state,
            private: resp.private,
            diagnostics: diags(&d),
        }))
    }

    async fn import_resource_state(
        &self,
        req: Request<proto::import_resource_state::Request>,
    ) -> Rpc<proto::import_resource_state::Response> {
        let req = req.into_inner();
        let (r, s) = self.resource(&req.type_name)?;
        let ty = s.implied_type();
        let result = r.import(&req.id).await.and_then(|state| encode(&state, &ty));
        Ok(Response::new(match result {
            Ok(state) => proto::import_resource_state::Response {
                imported_resources: vec![proto::import_resource_state::ImportedResource {
                    type_name: req.type_name.clone(),
                    state: Some(state),
                    private: Vec::new(),
                    identity: None,
                }],
                diagnostics: Vec::new(),
            },
            Err(d) => proto::import_resource_state::Response { imported_resources: Vec::new(), diagnostics: diags(&d) },
        }))
    }

    async fn read_data_source(
        &self,
        req: Request<proto::read_data_source::Request>,
    ) -> Rpc<proto::read_data_source::Response> {
        let req = req.into_inner();
        let (ds, s) = self.data_source(&req.type_name)?;
        let ty = s.implied_type();
        let result = match decode(req.config.as_ref(), &ty) {
            Ok(cfg) => ds.read(cfg).await.and_then(|(v, warnings)| Ok((encode(&v, &ty)?, warnings))),
            Err(d) => Err(d),
        };
        Ok(Response::new(match result {
            Ok((state, warnings)) => {
                proto::read_data_source::Response { state: Some(state), diagnostics: diags(&warnings) }
            }
            Err(d) => proto::read_data_source::Response { state: None, diagnostics: diags(&d) },
        }))
    }

    async fn get_functions(&self, _: Request<proto::get_functions::Request>) -> Rpc<proto::get_functions::Response> {
        Ok(Response::new(proto::get_functions::Response {
            functions: self.functions.iter().map(|(k, f)| (k.to_string(), function_to_proto(f.as_ref()))).collect(),
            diagnostics: Vec::new(),
        }))
    }

    async fn call_function(&self, req: Request<proto::call_function::Request>) -> Rpc<proto::call_function::Response> {
        let req = req.into_inner();
        let fail = |text: String, argument: Option<i64>| {
            Ok(Response::new(proto::call_function::Response {
                result: None,
                error: Some(proto::FunctionError { text, function_argument: argument }),
            }))
        };
        let Some(f) = self.functions.get(req.name.as_str()) else {
            return fail(format!("unknown function {:?}", req.name), None);
        };
        let sig = f.signature();
        if req.arguments.len() != sig.parameters.len() {
            return fail(format!("{} takes {} arguments", req.name, sig.parameters.len()), None);
        }
        let mut args = Vec::with_capacity(req.arguments.len());
        for (i, (a, p)) in req.arguments.iter().zip(&sig.parameters).enumerate() {
            match decode(Some(a), &p.ty) {
                Ok(v) => args.push(v),
                Err(d) => return fail(d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; "), Some(i as i64)),
            }
        }
        match f.call(args).await {
            Ok(v) => match encode(&v, &sig.return_type) {
                Ok(result) => Ok(Response::new(proto::call_function::Response { result: Some(result), error: None })),
                Err(d) => fail(d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; "), None),
            },
            Err(e) => fail(e.text, e.argument),
        }
    }

    async fn stop_provider(&self, _: Request<proto::stop_provider::Request>) -> Rpc<proto::stop_provider::Response> {
        self.provider.stop().await;
        Ok(Response::new(proto::stop_provider::Response { error: String::new() }))
    }
}

fn capabilities() -> proto::ServerCapabilities {
    proto::ServerCapabilities {
        plan_destroy: false,
        get_provider_schema_optional: false,
        move_resource_state: false,
        generate_resource_config: false,
    }
}
