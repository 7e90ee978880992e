//! `#[derive(Model)]`: reads a struct from a cty object [`Value`] and writes it back, one field
//! per attribute or nested block, named as the field is (`r#type` is `type`) or as
//! `#[model(rename = "…")]` says. The generated code calls `tfplugin6::model`'s `FromValue` and
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
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(input, "Model is derived for structs with named fields"));
    };
    let mut idents = Vec::new();
    let mut names = Vec::new();
    for f in &fields.named {
        let ident = f.ident.clone().expect("named field");
        let mut attr_name = ident.to_string().trim_start_matches("r#").to_string();
        for a in f.attrs.iter().filter(|a| a.path().is_ident("model")) {
            a.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    attr_name = meta.value()?.parse::<LitStr>()?.value();
                    Ok(())
                } else {
                    Err(meta.error("expected `rename = \"…\"`"))
                }
            })?;
        }
        idents.push(ident);
        names.push(attr_name);
    }
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::tfplugin6::model::FromValue for #name #ty_generics #where_clause {
            fn from_value(v: &::tfplugin6::Value) -> ::std::result::Result<Self, ::tfplugin6::model::ModelError> {
                if !matches!(v, ::tfplugin6::Value::Object(_)) {
                    return Err(::tfplugin6::model::ModelError::expected("an object", v));
                }
                Ok(Self {
                    #( #idents: ::tfplugin6::model::FromValue::from_value(v.get(#names))
                        .map_err(|e| e.within(#names))?, )*
                })
            }
        }
        impl #impl_generics ::tfplugin6::model::IntoValue for #name #ty_generics #where_clause {
            fn into_value(self) -> ::tfplugin6::Value {
                ::tfplugin6::Value::object([
                    #( (#names, ::tfplugin6::model::IntoValue::into_value(self.#idents)), )*
                ])
            }
        }
        impl #impl_generics ::tfplugin6::model::Model for #name #ty_generics #where_clause {
            const FIELDS: &'static [&'static str] = &[#(#names),*];
        }
    })
}
