//! `#[derive(Model)]`: reads a struct from a cty object [`Value`] and writes it back, one field
//! per attribute or nested block, named as the field is (`r#type` is `type`) or as
//! `#[model(rename = "…")]` says; a `#[model(flatten)]` field is a model whose attributes are this
//! object's own (attributes several schemas share). The generated code calls `tfplugin6::model`'s `FromValue` and
//! `IntoValue` on each field, so a field's Rust type says what the attribute may hold.
//!
//! [`Value`]: ../tfplugin6/value/enum.Value.html

use proc_macro::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, LitStr, parse_macro_input};

#[proc_macro_derive(Model, attributes(model))]
pub fn derive_model(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let name = &input.ident;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(input, "Model is derived for structs with named fields"));
    };
    let Fields::Named(named) = &data.fields else {
        return Err(syn::Error::new_spanned(input, "Model is derived for structs with named fields"));
    };
    let (mut reads, mut writes, mut fields) = (Vec::new(), Vec::new(), Vec::new());
    for f in &named.named {
        let ident = f.ident.clone().expect("named field");
        let mut attr_name = ident.to_string().trim_start_matches("r#").to_string();
        let mut flatten = false;
        for a in f.attrs.iter().filter(|a| a.path().is_ident("model")) {
            a.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    attr_name = meta.value()?.parse::<LitStr>()?.value();
                    Ok(())
                } else if meta.path.is_ident("flatten") {
                    flatten = true;
                    Ok(())
                } else {
                    Err(meta.error("expected `rename = \"…\"` or `flatten`"))
                }
            })?;
        }
        let ty = &f.ty;
        if flatten {
            // The field's own fields are attributes of this object.
            reads.push(quote! { #ident: ::tfplugin6::model::FromValue::from_value(v)? });
            writes.push(quote! {
                if let ::tfplugin6::Value::Object(inner) = ::tfplugin6::model::IntoValue::into_value(self.#ident) {
                    attrs.extend(inner);
                }
            });
            fields.push(quote! { out.extend(<#ty as ::tfplugin6::model::Model>::fields()); });
        } else {
            reads.push(quote! {
                #ident: ::tfplugin6::model::FromValue::from_value(v.get(#attr_name)).map_err(|e| e.within(#attr_name))?
            });
            writes.push(quote! {
                attrs.insert(#attr_name.to_string(), ::tfplugin6::model::IntoValue::into_value(self.#ident));
            });
            fields.push(quote! { out.push(#attr_name); });
        }
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::tfplugin6::model::FromValue for #name #ty_generics #where_clause {
            fn from_value(v: &::tfplugin6::Value) -> ::std::result::Result<Self, ::tfplugin6::model::ModelError> {
                if !matches!(v, ::tfplugin6::Value::Object(_)) {
                    return Err(::tfplugin6::model::ModelError::expected("an object", v));
                }
                Ok(Self { #(#reads,)* })
            }
        }
        impl #impl_generics ::tfplugin6::model::IntoValue for #name #ty_generics #where_clause {
            fn into_value(self) -> ::tfplugin6::Value {
                let mut attrs = ::std::collections::BTreeMap::new();
                #(#writes)*
                ::tfplugin6::Value::Object(attrs)
            }
        }
        impl #impl_generics ::tfplugin6::model::Model for #name #ty_generics #where_clause {
            fn fields() -> ::std::vec::Vec<&'static str> {
                let mut out = ::std::vec::Vec::new();
                #(#fields)*
                out
            }
        }
    })
}
