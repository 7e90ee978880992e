//! Tests over every resource schema: what an attribute declares about planning (a default,
//! "changing it replaces the resource") is what the resource's planner does, what it declares
//! about its values (validators) is what the resource's configuration check enforces, and each
//! typed model has exactly its schema's attributes.

use tfplugin6::schema::{AttributeDefault, Block, Nesting, Schema, Validator};
use tfplugin6::{AttributePath, Diagnostics, Type, Value};

use super::{dataset, policy, workload};
use crate::resources::common::settle;

type Plan = Box<dyn Fn(&Value, &Value) -> (Value, Vec<AttributePath>)>;

/// A resource's pure planner, and a configuration that sets what the schema requires.
struct Case {
    name: &'static str,
    schema: Schema,
    config: Value,
    plan: Plan,
    validate: fn(&Value) -> Diagnostics,
}

/// An object of `block`'s shape: every attribute null but `set`.
fn object(block: &Block, set: &[(&str, Value)]) -> Value {
    let mut v = Value::null_object(&block.implied_type());
    for (k, x) in set {
        v.set(k, x.clone());
    }
    v
}

fn nested<'a>(block: &'a Block, name: &str) -> &'a Block {
    &block.nested(name).expect("nested block").block
}

fn cases() -> Vec<Case> {
    let ds = dataset::schema();
    let columns = nested(nested(&ds.block, "schema"), "column");
    let column = object(
        columns,
        &[
            ("name", Value::string("age")),
            ("type", Value::string("integer")),
            ("min", Value::int(0)),
            ("max", Value::int(9)),
        ],
    );
    let dataset_config = object(
        &ds.block,
        &[
            ("name", Value::string("patients")),
            ("source", Value::string("patients.csv")),
            ("schema", Value::object([("column", Value::List(vec![column]))])),
        ],
    );
    let facts = dataset::PlanFacts {
        project: "dcr-local".into(),
        source_sha256: Some("ab".repeat(32)),
        source_rows: Some(3),
        public_sha256: None,
    };

    let ps = policy::schema();
    let policy_config = object(
        &ps.block,
        &[
            ("name", Value::string("study")),
            ("datasets", Value::Set(vec![Value::string("dcr-local-patients/patients")])),
            ("allowed_image_digests", Value::Set(vec![Value::string(format!("sha256:{}", "a".repeat(64)))])),
            ("allow_debug", Value::Bool(true)),
            ("output", object(nested(&ps.block, "output"), &[])),
        ],
    );
    let policy_facts = policy::PlanFacts {
        project: "dcr-local".into(),
        project_number: "123".into(),
        is_local: true,
        datasets: Some(Vec::new()),
    };

    let ws = workload::schema();
    let input = object(
        nested(&ws.block, "input"),
        &[
            ("name", Value::string("patients")),
            ("dataset", Value::string("dcr-local-patients/patients")),
            ("policy", Value::string("study")),
        ],
    );
    let workload_config = object(
        &ws.block,
        &[
            ("name", Value::string("study")),
            ("notebook", Value::string("study.ipynb")),
            ("input", Value::List(vec![input])),
            ("output", object(nested(&ws.block, "output"), &[("bucket", Value::string("results"))])),
        ],
    );
    let digest = format!("sha256:{}", "c".repeat(64));
    let placement = workload::Placement { is_local: true, ..Default::default() };

    vec![
        Case {
            name: dataset::TYPE_NAME,
            schema: ds,
            config: dataset_config,
            plan: Box::new(move |prior, config| dataset::plan_state(prior, config, &facts).expect("a plan")),
            validate: dataset::validate_config,
        },
        Case {
            name: policy::TYPE_NAME,
            schema: ps,
            config: policy_config,
            plan: Box::new(move |prior, config| {
                let model = tfplugin6::model::read(config, "policy").expect("a policy");
                let (rules, issuer, _) = policy::effective_rules(&model, true).expect("rules");
                policy::plan_state(prior, config, &rules, &issuer, Some("true"), &policy_facts).expect("a plan")
            }),
            validate: policy::validate_config,
        },
        Case {
            name: workload::TYPE_NAME,
            schema: ws,
            config: workload_config,
            plan: Box::new(move |prior, config| {
                workload::plan_state(prior, config, &placement, Some(&digest)).expect("a plan")
            }),
            validate: workload::schema::validate_config,
        },
    ]
}

/// Every attribute with a declaration, with the path to it in `config`: top-level ones, and
/// those of single blocks and of the first element of list blocks the configuration holds.
fn declared(block: &Block, config: &Value, at: Option<AttributePath>) -> Vec<(AttributePath, tfplugin6::Attribute)> {
    let path = |name: &str| match &at {
        Some(p) => p.clone().attr(name),
        None => AttributePath::root(name),
    };
    let mut out: Vec<_> = block
        .attributes
        .iter()
        .filter(|a| a.default.is_some() || a.requires_replace || !a.validators.is_empty())
        .map(|a| (path(&a.name), a.clone()))
        .collect();
    for nb in &block.blocks {
        let v = config.get(&nb.name);
        match nb.nesting {
            Nesting::Single if !v.is_null() => out.extend(declared(&nb.block, v, Some(path(&nb.name)))),
            Nesting::List if !v.elements().is_empty() => {
                out.extend(declared(&nb.block, &v.elements()[0], Some(path(&nb.name).index(0))))
            }
            _ => {}
        }
    }
    out
}

fn get<'a>(v: &'a Value, path: &AttributePath) -> &'a Value {
    path.0.iter().fold(v, |v, step| match step {
        tfplugin6::diag::Step::Attr(a) | tfplugin6::diag::Step::Key(a) => v.get(a),
        tfplugin6::diag::Step::Index(i) => v.elements().get(*i as usize).unwrap_or(&Value::Null),
    })
}

fn set(v: &mut Value, path: &[tfplugin6::diag::Step], x: Value) {
    use tfplugin6::diag::Step;
    match path {
        [] => *v = x,
        [Step::Attr(a) | Step::Key(a), rest @ ..] => {
            let mut inner = v.get(a).clone();
            set(&mut inner, rest, x);
            v.set(a, inner);
        }
        [Step::Index(i), rest @ ..] => {
            if let Value::List(items) = v {
                set(&mut items[*i as usize], rest, x);
            }
        }
    }
}

/// A value of the same type that differs from `v`, for the primitive types.
fn another(v: &Value) -> Option<Value> {
    match v {
        Value::String(s) => Some(Value::string(format!("{s}x"))),
        Value::Bool(b) => Some(Value::Bool(!b)),
        Value::Number(n) => Some(Value::int(n.as_i64()? + 1)),
        _ => None,
    }
}

/// `config` with every single nested block it leaves out present, its attributes null, so that
/// the declarations inside are reachable.
fn with_blocks(block: &Block, config: &Value) -> Value {
    let mut v = config.clone();
    for nb in block.blocks.iter().filter(|nb| nb.nesting == Nesting::Single) {
        let inner = config.get(&nb.name);
        let inner = if inner.is_null() { object(&nb.block, &[]) } else { inner.clone() };
        v.set(&nb.name, with_blocks(&nb.block, &inner));
    }
    v
}

#[test]
fn every_declared_validator_runs_in_the_resources_configuration_check() {
    for case in cases() {
        let config = with_blocks(&case.schema.block, &case.config);
        let d = (case.validate)(&config);
        assert!(!d.has_errors(), "{}: the base configuration is valid: {:?}", case.name, d.0);
        let mut checked = 0;
        for (path, a) in declared(&case.schema.block, &config, None) {
            for v in &a.validators {
                // A value each kind of validator refuses: every text check refuses an empty string.
                let refused = match v {
                    Validator::OneOf(_) => Value::string("not-a-listed-value"),
                    Validator::Text { .. } => Value::string(""),
                    Validator::WholeNumber { min, .. } => Value::int(min - 1),
                    // Every number check of ours refuses a negative number.
                    Validator::Number(_) => Value::int(-1),
                };
                let refused = match a.ty {
                    Type::Set(_) => Value::Set(vec![refused]),
                    Type::List(_) => Value::List(vec![refused]),
                    _ => refused,
                };
                let mut bad = config.clone();
                set(&mut bad, &path.0, refused.clone());
                let d = (case.validate)(&bad);
                let at: Vec<String> = d.iter().filter_map(|d| d.attribute.as_ref().map(|p| p.to_string())).collect();
                assert!(
                    d.iter().any(|d| d.attribute.as_ref() == Some(&path)),
                    "{} {path} = {refused:?}: {at:?}",
                    case.name
                );
                checked += 1;
            }
        }
        assert!(checked > 0, "{} declares no validator", case.name);
    }
}

/// Terraform refuses a plan that sets a value the configuration left out unless the attribute is
/// computed: a planned default needs an optional and computed attribute.
#[test]
fn planned_defaults_are_declared_on_optional_computed_attributes() {
    fn walk(block: &Block, at: &str) {
        for a in &block.attributes {
            if matches!(a.default, Some(AttributeDefault::Value(_) | AttributeDefault::Described(_))) {
                assert_eq!(a.presence, tfplugin6::schema::Presence::OptionalComputed, "{at}{}", a.name);
            }
            if matches!(a.default, Some(AttributeDefault::Meaning(_))) {
                assert!(!a.is_computed(), "{at}{}: a null that means something is not computed", a.name);
            }
        }
        for nb in &block.blocks {
            walk(&nb.block, &format!("{at}{}.", nb.name));
        }
    }
    for case in cases() {
        walk(&case.schema.block, &format!("{} ", case.name));
    }
}

#[test]
fn every_declared_default_appears_in_the_plan() {
    for case in cases() {
        let (planned, _) = (case.plan)(&Value::Null, &case.config);
        for (path, a) in declared(&case.schema.block, &case.config, None) {
            let (configured, value) = (get(&case.config, &path), get(&planned, &path));
            if !configured.is_null() {
                continue;
            }
            match &a.default {
                Some(AttributeDefault::Value(v)) => assert_eq!(value, v, "{} {path}", case.name),
                // Decided by the resource, from what it knows at plan time (here, everything).
                Some(AttributeDefault::Described(_)) => assert!(!value.is_unknown(), "{} {path} is unknown", case.name),
                Some(AttributeDefault::Meaning(_)) => assert!(value.is_null(), "{} {path} stays null", case.name),
                None => {}
            }
        }
    }
}

#[test]
fn every_attribute_declared_to_replace_replaces_when_changed_and_only_then() {
    for case in cases() {
        let (planned, replaced) = (case.plan)(&Value::Null, &case.config);
        assert!(replaced.is_empty(), "{}: a create replaces nothing", case.name);
        let prior = settle(&planned);
        let (_, replaced) = (case.plan)(&prior, &case.config);
        assert!(replaced.is_empty(), "{}: no change, no replacement: {replaced:?}", case.name);

        let rules = declared(&case.schema.block, &case.config, None);
        assert!(rules.iter().any(|(_, a)| a.requires_replace), "{} declares no replacement", case.name);
        for (path, a) in rules {
            let Some(changed) = another(get(&prior, &path)) else {
                assert!(!a.requires_replace, "{} {path}: no value to change to", case.name);
                continue;
            };
            let mut config = case.config.clone();
            set(&mut config, &path.0, changed);
            let (_, replaced) = (case.plan)(&prior, &config);
            let paths: Vec<String> = replaced.iter().map(|p| p.to_string()).collect();
            assert_eq!(
                replaced.contains(&path),
                a.requires_replace,
                "{} {path} changed: replacements {paths:?}",
                case.name
            );
        }
    }
}

#[test]
fn every_model_has_its_schemas_attributes() {
    use tfplugin6::model::check_fields;
    let ds = dataset::schema();
    check_fields::<dataset::model::Dataset>(&ds.block).unwrap();
    check_fields::<dataset::model::ProgrammingStage>(nested(&ds.block, "programming_stage")).unwrap();
    check_fields::<dataset::model::PrivacyBudget>(nested(&ds.block, "privacy_budget")).unwrap();
    let ps = policy::schema();
    check_fields::<policy::model::Policy>(&ps.block).unwrap();
    check_fields::<policy::model::PolicyOutput>(nested(&ps.block, "output")).unwrap();
    let ws = workload::schema();
    check_fields::<workload::Workload>(&ws.block).unwrap();
    check_fields::<workload::model::WorkloadOutput>(nested(&ws.block, "output")).unwrap();
    check_fields::<crate::workload_image::ImageInput>(nested(&ws.block, "input")).unwrap();
    let ds = crate::data_sources::image_digest::schema();
    check_fields::<crate::data_sources::image_digest::ImageDigestData>(&ds.block).unwrap();
    check_fields::<crate::workload_image::ImageOutput>(nested(&ds.block, "output")).unwrap();
    for block in [&dataset::schema().block, &ps.block, &ws.block] {
        check_fields::<crate::timeouts::Timeouts>(nested(block, "timeouts")).unwrap();
        let names: Vec<&str> = block
            .attributes
            .iter()
            .map(|a| a.name.as_str())
            .chain(block.blocks.iter().map(|b| b.name.as_str()))
            .collect();
        for field in <super::common::ConvergingResource as tfplugin6::Model>::fields() {
            assert!(names.contains(&field), "a converging resource lacks {field}");
        }
    }
}
