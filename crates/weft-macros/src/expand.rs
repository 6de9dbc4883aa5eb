//! Code generation for `#[weft::service]`. Everything generated names items
//! through `::weft::__private`, so a user crate needs no dependency but weft.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{ItemImpl, Type};

use crate::parse::{self, Arg, Entrypoint, Errors, Model, Output};

/// Expands `#[weft::service(attr)] item`.
pub(crate) fn service(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let mut item: ItemImpl = match syn::parse2(item.clone()) {
        Ok(i) => i,
        Err(_) => {
            let e = syn::Error::new(
                Span::call_site(),
                "`#[weft::service(name = \"...\")]` goes on an inherent impl block: `impl MyService { .. }`",
            );
            let e = e.to_compile_error();
            return quote!(#e #item);
        }
    };
    let args = parse::service_args(attr, &mut errors);
    let model = parse::model(
        args.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
        &mut item,
        &mut errors,
    );
    let client_ident = client_ident(&item.self_ty);
    if client_ident.is_none() && item.trait_.is_none() {
        errors.push(syn::Error::new_spanned(
            &item.self_ty,
            "`#[weft::service]` needs a named type (`impl MyService { .. }`)",
        ));
    }
    if !errors.is_empty() || args.is_none() {
        let errors = errors.to_tokens();
        return quote!(#errors #item);
    }
    let client_ident = client_ident.unwrap_or_else(|| format_ident!("Client"));
    let service = service_impl(&item.self_ty, &model);
    let client = client(&client_ident, &model);
    quote! {
        #item
        #service
        #client
    }
}

/// `DieRoller` → `DieRollerClient`.
fn client_ident(ty: &Type) -> Option<syn::Ident> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p
            .path
            .segments
            .last()
            .map(|s| format_ident!("{}Client", s.ident.unraw(), span = s.ident.span())),
        Type::Group(g) => client_ident(&g.elem),
        _ => None,
    }
}

fn ok_type(out: &Output) -> &Type {
    match out {
        Output::Plain(t) | Output::Result { ok: t, .. } => t,
    }
}

fn service_impl(self_ty: &Type, model: &Model) -> TokenStream {
    let name = &model.name;
    let description = &model.description;
    let specs = model.entrypoints.iter().map(entrypoint_spec);
    let handlers: Vec<syn::Ident> = model
        .entrypoints
        .iter()
        .map(|ep| format_ident!("__weft_handle_{}", ep.method.unraw()))
        .collect();
    let names = model.entrypoints.iter().map(|ep| &ep.name);
    let handler_fns = model
        .entrypoints
        .iter()
        .zip(&handlers)
        .map(|(ep, h)| handler(self_ty, ep, h));
    quote! {
        const _: () = {
            #[automatically_derived]
            impl ::weft::__private::Service for #self_ty {
                const NAME: &'static str = #name;
                const VERSION: &'static str = ::core::env!("CARGO_PKG_VERSION");

                fn spec() -> ::weft::__private::ServiceSpec {
                    ::weft::__private::service_spec(
                        #name,
                        #description,
                        ::weft::__private::Vec::from([#(#specs),*]),
                    )
                }

                fn dispatch(
                    self: ::weft::__private::Arc<Self>,
                    call: ::weft::__private::Incoming,
                ) -> ::weft::__private::Dispatch {
                    match ::weft::__private::Incoming::entrypoint(&call) {
                        #(
                            #names => ::weft::__private::Dispatch::Unary(
                                ::weft::__private::Box::pin(#handlers(self, call)),
                            ),
                        )*
                        _ => ::weft::__private::Dispatch::NotFound(call),
                    }
                }
            }

            #(#handler_fns)*
        };
    }
}

fn entrypoint_spec(ep: &Entrypoint) -> TokenStream {
    let name = &ep.name;
    let description = &ep.description;
    let params = ep.args.iter().filter_map(|a| match a {
        Arg::Context => None,
        Arg::Named(p) => {
            let (ty, pname, required) = (&p.ty, &p.name, p.required);
            Some(quote_spanned! {ty.span()=>
                ::weft::__private::Param::<#ty>::spec(#pname, #required)
            })
        }
    });
    let ok = ok_type(&ep.output);
    let result = quote_spanned! {ok.span()=> ::weft::__private::Reply::<#ok>::schema() };
    let error = match &ep.output {
        Output::Result { err: Some(err), .. } => quote_spanned! {err.span()=>
            {
                #[allow(unused_imports)]
                use ::weft::__private::{ErrorSchemaFallback as _, ErrorSchemaViaJsonSchema as _};
                (&&::weft::__private::ErrorSchemaProbe::<#err>::new()).__weft_error_schema()
            }
        },
        _ => quote!(::core::option::Option::None),
    };
    quote! {
        ::weft::__private::entrypoint_spec(
            #name,
            #description,
            ::weft::__private::Vec::from([#(#params),*]),
            #result,
            #error,
        )
    }
}

/// The async fn that decodes a call's arguments, runs the method and
/// encodes its reply.
fn handler(self_ty: &Type, ep: &Entrypoint, handler: &syn::Ident) -> TokenStream {
    let method = &ep.method;
    let mut takes = Vec::new();
    let mut call_args = Vec::new();
    let mut names = Vec::new();
    for (i, arg) in ep.args.iter().enumerate() {
        match arg {
            Arg::Context => call_args.push(quote!(&__weft_ctx)),
            Arg::Named(p) => {
                let var = format_ident!("__weft_arg{}", i, span = Span::mixed_site());
                let (ty, name) = (&p.ty, &p.name);
                let take = quote_spanned! {ty.span()=> ::weft::__private::Param::<#ty>::take };
                takes.push(quote! { let #var = #take(&mut __weft_args, #name)?; });
                call_args.push(quote!(#var));
                names.push(name);
            }
        }
    }
    let ok = ok_type(&ep.output);
    let encode_ok = quote_spanned! {ok.span()=> ::weft::__private::Reply::<#ok>::encode };
    let reply = match &ep.output {
        Output::Plain(_) => quote!(#encode_ok(__weft_codec, &__weft_out)),
        Output::Result { err, .. } => {
            let check = err.as_ref().map(|err| {
                quote_spanned! {err.span()=> ::weft::__private::error_type::<#err>(); }
            });
            let convert = quote_spanned! {ep.method.span()=> ::weft::__private::application_error };
            quote! {
                match __weft_out {
                    ::core::result::Result::Ok(__weft_v) => #encode_ok(__weft_codec, &__weft_v),
                    ::core::result::Result::Err(__weft_e) => {
                        #check
                        #[allow(unused_imports)]
                        use ::weft::__private::{KindFallback as _, KindViaSerialize as _};
                        let __weft_kind = (&&::weft::__private::KindProbe(&__weft_e)).__weft_kind();
                        ::core::result::Result::Err(#convert(__weft_e, __weft_kind))
                    }
                }
            }
        }
    };
    let run = quote_spanned! {method.span()=>
        ::weft::__private::assert_send(<#self_ty>::#method(&*__weft_this, #(#call_args),*)).await
    };
    quote! {
        async fn #handler(
            __weft_this: ::weft::__private::Arc<#self_ty>,
            __weft_call: ::weft::__private::Incoming,
        ) -> ::core::result::Result<::weft::__private::Bytes, ::weft::__private::Error> {
            let (__weft_ctx, __weft_codec, __weft_payload) =
                ::weft::__private::Incoming::into_parts(__weft_call);
            let mut __weft_args = ::weft::__private::Args::decode(__weft_codec, &__weft_payload)?;
            #(#takes)*
            __weft_args.finish(&[#(#names),*])?;
            let __weft_out = #run;
            #reply
        }
    }
}

/// The typed client: one async method per entrypoint.
fn client(ident: &syn::Ident, model: &Model) -> TokenStream {
    let service = &model.name;
    let doc = format!(
        "Typed client of the `{service}` service, generated by `#[weft::service]`.\n\n\
         Create it from anything that can make calls (a `Context`, a client, a test mesh) \
         with [`new`]({ident}::new)."
    );
    let methods = model.entrypoints.iter().map(|ep| {
        let method = &ep.method;
        let name = &ep.name;
        let docs = &ep.docs;
        let fallback_doc = format!("Calls `{service}.{name}`.");
        let doc = if docs.is_empty() {
            quote!(#[doc = #fallback_doc])
        } else {
            quote!(#(#docs)*)
        };
        let params: Vec<_> = ep
            .args
            .iter()
            .filter_map(|a| match a {
                Arg::Named(p) => Some(p),
                Arg::Context => None,
            })
            .collect();
        let decls = params.iter().map(|p| {
            let (id, ty) = (&p.ident, &p.ty);
            quote!(#id: #ty)
        });
        let names = params.iter().map(|p| &p.name);
        let values = params.iter().rev().fold(quote!(()), |rest, p| {
            let (id, ty) = (&p.ident, &p.ty);
            let value = quote_spanned! {ty.span()=> ::weft::__private::Param::<#ty>::value };
            quote!((#value(#id), #rest))
        });
        let ok = ok_type(&ep.output);
        let call = quote_spanned! {ok.span()=> ::weft::__private::Reply::<#ok>::call };
        quote! {
            #doc
            pub async fn #method(&self, #(#decls),*)
                -> ::core::result::Result<#ok, ::weft::__private::Error>
            {
                #call(
                    ::weft::__private::Context::request(&self.ctx, #service, #name),
                    ::weft::__private::NamedArgs::new(&[#(#names),*], #values),
                )
                .await
            }
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone)]
        #[allow(dead_code, unreachable_pub)]
        pub struct #ident {
            ctx: ::weft::__private::Context,
        }

        #[allow(dead_code, unreachable_pub, private_interfaces, clippy::too_many_arguments)]
        impl #ident {
            /// A client that makes its calls through `caller`, inheriting its
            /// deadline and identity.
            pub fn new(caller: &impl ::weft::__private::AsContext) -> Self {
                Self {
                    ctx: ::weft::__private::AsContext::context(caller),
                }
            }

            #(#methods)*
        }
    }
}
