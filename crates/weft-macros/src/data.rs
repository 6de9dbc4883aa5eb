//! `#[weft::data]`: makes a struct or enum usable as an entrypoint's
//! parameter or result, an event or a published payload, with weft as the
//! only dependency it needs.
//!
//! It adds serde's `Serialize` and `Deserialize` and schemars' `JsonSchema`
//! derives, each pointed at the copy that weft re-exports, so the user's
//! crate does not name serde or schemars for them.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;

/// Expands `#[weft::data]` on `item`.
pub(crate) fn expand(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Vec::new();
    if !attr.is_empty() {
        errors.push(syn::Error::new_spanned(
            &attr,
            "`#[weft::data]` takes no arguments; put serde and schemars options in \
             `#[serde(..)]` and `#[schemars(..)]` attributes below it",
        ));
    }
    let input = match syn::parse2::<syn::DeriveInput>(item.clone()) {
        Ok(input) => input,
        Err(_) => {
            let error = syn::Error::new(item.span(), "`#[weft::data]` goes on a struct or an enum")
                .to_compile_error();
            return quote!(#error #item);
        }
    };
    if let syn::Data::Union(u) = &input.data {
        errors.push(syn::Error::new(
            u.union_token.span,
            "`#[weft::data]` goes on a struct or an enum; serde cannot encode a union",
        ));
    }
    for attr in &input.attrs {
        if attr.path().is_ident("derive") {
            let _ = attr.parse_nested_meta(|meta| {
                let last = meta.path.segments.last().map(|s| s.ident.to_string());
                if let Some(name @ ("Serialize" | "Deserialize" | "JsonSchema")) = last.as_deref()
                {
                    errors.push(syn::Error::new_spanned(
                        &meta.path,
                        format!(
                            "`#[weft::data]` already derives `{name}`; remove it from this `#[derive(..)]`"
                        ),
                    ));
                }
                Ok(())
            });
        }
    }
    if !errors.is_empty() {
        let errors = errors.iter().map(syn::Error::to_compile_error);
        return quote!(#(#errors)* #input);
    }
    quote! {
        #[derive(
            ::weft::__private::serde::Serialize,
            ::weft::__private::serde::Deserialize,
            ::weft::__private::schemars::JsonSchema
        )]
        #[serde(crate = "::weft::__private::serde")]
        #[schemars(crate = "::weft::__private::schemars")]
        #input
    }
}
