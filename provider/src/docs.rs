//! Registry-style documentation rendered from the schemas' own descriptions, in the layout and
//! shape tfplugindocs produces for Go providers: `docs/index.md`, `docs/resources/TYPE.md`,
//! `docs/data-sources/TYPE.md` and `docs/functions/NAME.md`. Examples come from
//! `examples/provider/provider.tf`, `examples/resources/TYPE/resource.tf` (and `import.sh` when
//! present), `examples/data-sources/TYPE/data-source.tf` and `examples/functions/NAME/function.tf`.

use std::collections::BTreeMap;
use std::path::Path;

use tfplugin6::Type;
use tfplugin6::schema::{Attribute, Block, NestedBlock, Presence, Schema};

/// Every generated file: path relative to the docs directory → contents.
pub fn render(examples: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let provider_example = read_example(&examples.join("provider/provider.tf"));
    out.insert(
        "index.md".to_string(),
        render_page("dcr Provider", "dcr Provider", "", &crate::config::schema(), provider_example.as_deref(), None),
    );
    let provider = crate::DcrProvider::new();
    for r in tfplugin6::Provider::resources(&provider) {
        let name = r.type_name();
        let dir = examples.join("resources").join(name);
        let page = render_page(
            &format!("{name} Resource - terraform-provider-dcr"),
            &format!("{name} (Resource)"),
            "",
            &r.schema(),
            read_example(&dir.join("resource.tf")).as_deref(),
            read_example(&dir.join("import.sh")).as_deref(),
        );
        out.insert(format!("resources/{name}.md"), page);
    }
    for ds in tfplugin6::Provider::data_sources(&provider) {
        let name = ds.type_name();
        let page = render_page(
            &format!("{name} Data Source - terraform-provider-dcr"),
            &format!("{name} (Data Source)"),
            "",
            &ds.schema(),
            read_example(&examples.join("data-sources").join(name).join("data-source.tf")).as_deref(),
            None,
        );
        out.insert(format!("data-sources/{name}.md"), page);
    }
    for f in tfplugin6::Provider::functions(&provider) {
        let name = f.name();
        let example = read_example(&examples.join("functions").join(name).join("function.tf"));
        out.insert(format!("functions/{name}.md"), render_function(f.as_ref(), example.as_deref()));
    }
    out
}

/// A function page, as tfplugindocs lays them out: summary, example, signature, arguments.
fn render_function(f: &dyn tfplugin6::Function, example: Option<&str>) -> String {
    let sig = f.signature();
    let name = f.name();
    let mut s = format!(
        "---\npage_title: \"{name} function - terraform-provider-dcr\"\nsubcategory: \"\"\ndescription: |-\n  {}\n---\n\n",
        sig.summary
    );
    s.push_str(&format!("# function: {name}\n\n{}\n\n", sig.description));
    if let Some(ex) = example {
        s.push_str(&format!("## Example Usage\n\n```terraform\n{ex}\n```\n\n"));
    }
    let params: Vec<String> = sig.parameters.iter().map(|p| format!("{} {}", p.name, type_keyword(&p.ty))).collect();
    s.push_str(&format!(
        "## Signature\n\n```text\n{name}({}) {}\n```\n\n## Arguments\n\n",
        params.join(", "),
        type_keyword(&sig.return_type)
    ));
    for (i, p) in sig.parameters.iter().enumerate() {
        s.push_str(&format!(
            "{}. `{}` ({}) {}\n",
            i + 1,
            p.name,
            type_name(&p.ty),
            p.description.replace('\n', "\n   ")
        ));
    }
    if let Type::Object(attrs) = &sig.return_type {
        s.push_str("\n## Return Value\n\nAn object with:\n\n");
        for (k, t) in attrs {
            s.push_str(&format!("- `{k}` ({})\n", type_name(t)));
        }
    }
    s
}

/// A type as Terraform writes it in a signature.
fn type_keyword(t: &Type) -> String {
    match t {
        Type::Bool => "bool".into(),
        Type::Number => "number".into(),
        Type::String => "string".into(),
        Type::Dynamic => "dynamic".into(),
        Type::List(e) => format!("list({})", type_keyword(e)),
        Type::Set(e) => format!("set({})", type_keyword(e)),
        Type::Map(e) => format!("map({})", type_keyword(e)),
        Type::Object(_) => "object".into(),
        Type::Tuple(_) => "tuple".into(),
    }
}

fn read_example(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim_end().to_string())
}

fn type_name(t: &Type) -> String {
    match t {
        Type::Bool => "Boolean".into(),
        Type::Number => "Number".into(),
        Type::String => "String".into(),
        Type::Dynamic => "Dynamic".into(),
        Type::List(e) => format!("List of {}", type_name(e)),
        Type::Set(e) => format!("Set of {}", type_name(e)),
        Type::Map(e) => format!("Map of {}", type_name(e)),
        Type::Object(_) => "Object".into(),
        Type::Tuple(_) => "Tuple".into(),
    }
}

fn render_page(
    page_title: &str,
    heading: &str,
    subcategory: &str,
    schema: &Schema,
    example: Option<&str>,
    import: Option<&str>,
) -> String {
    let desc = &schema.block.description;
    let mut s = String::new();
    s.push_str("---\n");
    s.push_str(&format!("page_title: \"{page_title}\"\nsubcategory: \"{subcategory}\"\ndescription: |-\n"));
    for line in desc.lines() {
        s.push_str(&format!("  {line}\n"));
    }
    s.push_str("---\n\n");
    s.push_str(&format!("# {heading}\n\n{desc}\n\n"));
    if let Some(ex) = example {
        s.push_str(&format!("## Example Usage\n\n```terraform\n{ex}\n```\n\n"));
    }
    s.push_str("<!-- schema generated by `terraform-provider-dcr docs`; do not edit by hand -->\n## Schema\n");
    let mut nested = Vec::new();
    render_block(&mut s, &schema.block, "", &mut nested);
    while !nested.is_empty() {
        let batch = std::mem::take(&mut nested);
        for (anchor, title, block) in batch {
            s.push_str(&format!("\n<a id=\"{anchor}\"></a>\n### Nested Schema for `{title}`\n"));
            render_block(&mut s, &block, &format!("{title}."), &mut nested);
        }
    }
    if let Some(imp) = import {
        s.push_str(&format!(
            "\n## Import\n\nImport is supported using the following syntax:\n\n```shell\n{imp}\n```\n"
        ));
    }
    s
}

/// The three lists tfplugindocs sorts a block's contents into.
#[derive(Clone, Copy)]
enum Section {
    Required,
    Optional,
    ReadOnly,
}

impl Section {
    fn has_attribute(self, a: &Attribute) -> bool {
        match self {
            Section::Required => a.presence == Presence::Required,
            Section::Optional => matches!(a.presence, Presence::Optional | Presence::OptionalComputed),
            Section::ReadOnly => a.presence == Presence::Computed,
        }
    }
    fn has_block(self, n: &NestedBlock) -> bool {
        match self {
            Section::Required => n.min_items > 0,
            Section::Optional => n.min_items == 0,
            Section::ReadOnly => false,
        }
    }
}

fn render_block(s: &mut String, b: &Block, prefix: &str, nested: &mut Vec<(String, String, Block)>) {
    let groups = [("Required", Section::Required), ("Optional", Section::Optional), ("Read-Only", Section::ReadOnly)];
    for (title, section) in groups {
        let mut lines: Vec<(String, String)> = Vec::new();
        for a in b.attributes.iter().filter(|a| section.has_attribute(a)) {
            let sens = if a.sensitive { ", Sensitive" } else { "" };
            lines.push((
                a.name.clone(),
                format!("- `{}` ({}{sens}) {}", a.name, type_name(&a.ty), a.full_description()),
            ));
        }
        for n in b.blocks.iter().filter(|n| section.has_block(n)) {
            let anchor = format!("nestedblock--{}{}", prefix.replace('.', "--"), n.name);
            let kind = match n.nesting {
                tfplugin6::schema::Nesting::Single => "Block",
                tfplugin6::schema::Nesting::List => "Block List",
                tfplugin6::schema::Nesting::Set => "Block Set",
            };
            let limits = match (n.min_items, n.max_items) {
                (0, 0) => String::new(),
                (min, 0) => format!(", Min: {min}"),
                (0, max) => format!(", Max: {max}"),
                (min, max) => format!(", Min: {min}, Max: {max}"),
            };
            lines.push((
                n.name.clone(),
                format!(
                    "- `{}` ({kind}{limits}) {} (see [below for nested schema](#{anchor}))",
                    n.name, n.block.description
                ),
            ));
            nested.push((anchor, format!("{prefix}{}", n.name), n.block.clone()));
        }
        if lines.is_empty() {
            continue;
        }
        lines.sort();
        s.push_str(&format!("\n### {title}\n\n"));
        for (_, l) in lines {
            s.push_str(&l);
            s.push('\n');
        }
    }
}

/// Files under `docs_dir` that differ from what [`render`] produces (missing, stale or extra).
pub fn stale(docs_dir: &Path, examples: &Path) -> Vec<String> {
    let want = render(examples);
    let mut bad: Vec<String> = want
        .iter()
        .filter(|(rel, body)| std::fs::read_to_string(docs_dir.join(rel)).ok().as_deref() != Some(body.as_str()))
        .map(|(rel, _)| rel.clone())
        .collect();
    for dir in ["resources", "data-sources", "functions"] {
        for e in std::fs::read_dir(docs_dir.join(dir)).into_iter().flatten().flatten() {
            let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
            if !want.contains_key(&rel) {
                bad.push(rel);
            }
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_attribute_is_described_and_documented() {
        let docs = render(Path::new("/nonexistent"));
        let page = &docs["resources/dcr_dataset.md"];
        fn walk(b: &Block, page: &str) {
            for a in &b.attributes {
                assert!(!a.description.trim().is_empty(), "{} has no description", a.name);
                assert!(page.contains(&format!("- `{}` (", a.name)), "{} missing from docs", a.name);
            }
            for n in &b.blocks {
                assert!(!n.block.description.trim().is_empty(), "block {} has no description", n.name);
                walk(&n.block, page);
            }
        }
        walk(&crate::resources::dataset::schema().block, page);
        walk(&crate::resources::policy::schema().block, &docs["resources/dcr_policy.md"]);
        walk(
            &crate::data_sources::verified_attestation::schema().block,
            &docs["data-sources/dcr_verified_attestation.md"],
        );
        walk(&crate::config::schema().block, &docs["index.md"]);
        assert!(
            docs["functions/verify_attestation.md"]
                .contains("verify_attestation(token string, expected dynamic) object")
        );
    }
}
