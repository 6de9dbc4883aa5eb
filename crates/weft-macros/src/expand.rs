//! Code generation for `#[weft::service]`. Everything generated names items
//! through `::weft::__private`, so a user crate needs no dependency but weft.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{ItemImpl, Type};

use crate::parse::{
    self, Arg, Entrypoint, Errors, EventArg, EventHandler, Mode, Model, Output, Published,
};

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
    let publishes = args.as_ref().map(|a| &a.publishes[..]).unwrap_or_default();
    let service = service_impl(&item.self_ty, &model, publishes);
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

/// The bounds an entrypoint's types must meet, as a where clause spanned at
/// each type, for the typed client's methods: inside them the compiler takes
/// the bounds as given, so a wrong type is reported at the type, not at
/// every use in the body. (The service side cannot do the same: the
/// `Service` impl calling a function with such a clause would have to prove
/// it again, at the attribute.)
fn bounds(ep: &Entrypoint) -> TokenStream {
    let params = ep.args.iter().filter_map(|a| match a {
        Arg::Named(p) => {
            let ty = &p.ty;
            Some(quote_spanned! {ty.span()=> #ty: ::weft::__private::ParamType })
        }
        Arg::Context => None,
    });
    let ok = ok_type(&ep.output);
    let reply = quote_spanned! {ok.span()=> #ok: ::weft::__private::ReplyType };
    let error = match &ep.output {
        Output::Result { err: Some(err), .. } => {
            Some(quote_spanned! {err.span()=> #err: ::weft::__private::ErrorType })
        }
        _ => None,
    };
    quote!(where #(#params,)* #reply, #error)
}

fn service_impl(self_ty: &Type, model: &Model, publishes: &[Published]) -> TokenStream {
    let name = &model.name;
    let description = &model.description;
    let handlers: Vec<syn::Ident> = model
        .entrypoints
        .iter()
        .map(|ep| format_ident!("__weft_handle_{}", ep.method.unraw()))
        .collect();
    let spec_fns: Vec<syn::Ident> = model
        .entrypoints
        .iter()
        .map(|ep| format_ident!("__weft_spec_{}", ep.method.unraw()))
        .collect();
    let names = model.entrypoints.iter().map(|ep| &ep.name);
    let helper_fns = model
        .entrypoints
        .iter()
        .zip(handlers.iter().zip(&spec_fns))
        .map(|(ep, (h, s))| {
            let handler = handler(self_ty, ep, h);
            let spec = entrypoint_spec(ep, s);
            quote!(#handler #spec)
        });
    let event_fns: Vec<syn::Ident> = model
        .event_handlers
        .iter()
        .map(|h| format_ident!("__weft_event_{}", h.method.unraw()))
        .collect();
    let event_spec_fns: Vec<syn::Ident> = model
        .event_handlers
        .iter()
        .map(|h| format_ident!("__weft_event_spec_{}", h.method.unraw()))
        .collect();
    let event_helpers = model
        .event_handlers
        .iter()
        .zip(event_fns.iter().zip(&event_spec_fns))
        .map(|(h, (f, s))| {
            let run = event_fn(self_ty, h, f);
            let spec = event_spec(h, s);
            quote!(#run #spec)
        });
    let topics = publishes.iter().map(|p| {
        let (topic, ty) = (&p.topic, &p.ty);
        let schema =
            quote_spanned! {ty.span()=> <#ty as ::weft::__private::PublishedType>::__weft_schema };
        quote!(::weft::__private::topic_spec(#topic, #schema()))
    });
    let dispatch_event = if model.event_handlers.is_empty() {
        quote!()
    } else {
        let handler_names = model.event_handlers.iter().map(|h| &h.name);
        quote! {
            fn dispatch_event(
                self: ::weft::__private::Arc<Self>,
                handler: &str,
                ctx: ::weft::__private::Context,
                payload: ::weft::__private::JsonValue,
            ) -> ::core::option::Option<
                ::weft::__private::BoxFuture<
                    'static,
                    ::core::result::Result<(), ::weft::__private::Error>,
                >,
            > {
                match handler {
                    #(
                        #handler_names => ::core::option::Option::Some(
                            ::weft::__private::Box::pin(#event_fns(self, ctx, payload)),
                        ),
                    )*
                    _ => ::core::option::Option::None,
                }
            }
        }
    };
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
                        <::weft::__private::Vec<_> as ::core::convert::From<_>>::from([#(#spec_fns()),*]),
                        <::weft::__private::Vec<_> as ::core::convert::From<_>>::from([#(#event_spec_fns()),*]),
                        <::weft::__private::Vec<_> as ::core::convert::From<_>>::from([#(#topics),*]),
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

                #dispatch_event
            }

            #(#helper_fns)*
            #(#event_helpers)*
        };
    }
}

/// The fn that builds one event handler's spec.
fn event_spec(h: &EventHandler, spec_fn: &syn::Ident) -> TokenStream {
    let (name, description, topic, max_attempts) =
        (&h.name, &h.description, &h.topic, h.max_attempts);
    let (mode, ordered_by) = match &h.mode {
        Mode::Pool => ("pool", quote!(::core::option::Option::None)),
        Mode::Broadcast => ("broadcast", quote!(::core::option::Option::None)),
        Mode::Ordered(field) => ("ordered", quote!(::core::option::Option::Some(#field))),
    };
    let ty = &h.event;
    let schema = quote_spanned! {ty.span()=> <#ty as ::weft::__private::EventType>::__weft_schema };
    quote! {
        fn #spec_fn() -> ::weft::__private::EventHandlerSpec {
            ::weft::__private::event_handler_spec(
                #name,
                #description,
                #topic,
                #mode,
                #ordered_by,
                #max_attempts,
                #schema(),
            )
        }
    }
}

/// The async fn that decodes an event, runs the handler and turns its
/// outcome into success or failure.
fn event_fn(self_ty: &Type, h: &EventHandler, f: &syn::Ident) -> TokenStream {
    let method = &h.method;
    let (name, topic) = (&h.name, &h.topic);
    let ty = &h.event;
    let decode = quote_spanned! {ty.span()=> <#ty as ::weft::__private::EventType>::__weft_decode };
    let call_args = h.args.iter().map(|a| match a {
        EventArg::Context => quote!(&__weft_ctx),
        EventArg::Event => quote!(__weft_event),
    });
    let run = quote_spanned! {method.span()=>
        ::weft::__private::assert_send(<#self_ty>::#method(&*__weft_this, #(#call_args),*)).await
    };
    let outcome = match &h.error {
        None => quote! {
            let () = __weft_out;
            ::core::result::Result::Ok(())
        },
        Some(err) => {
            let convert = match err {
                Some(err) => quote_spanned! {err.span()=>
                    <#err as ::weft::__private::ErrorType>::__weft_into_error
                },
                None => quote_spanned! {method.span()=> ::weft::__private::application_error },
            };
            quote! {
                match __weft_out {
                    ::core::result::Result::Ok(()) => ::core::result::Result::Ok(()),
                    ::core::result::Result::Err(__weft_e) => {
                        #[allow(unused_imports)]
                        use ::weft::__private::{KindFallback as _, KindViaSerialize as _};
                        let __weft_kind = (&&::weft::__private::KindProbe(&__weft_e)).__weft_kind();
                        ::core::result::Result::Err(#convert(__weft_e, __weft_kind))
                    }
                }
            }
        }
    };
    quote! {
        async fn #f(
            __weft_this: ::weft::__private::Arc<#self_ty>,
            __weft_ctx: ::weft::__private::Context,
            __weft_payload: ::weft::__private::JsonValue,
        ) -> ::core::result::Result<(), ::weft::__private::Error> {
            let __weft_event = #decode(__weft_payload, #topic, #name)?;
            let __weft_out = #run;
            #outcome
        }
    }
}

/// The fn that builds one entrypoint's spec.
fn entrypoint_spec(ep: &Entrypoint, spec_fn: &syn::Ident) -> TokenStream {
    let name = &ep.name;
    let description = &ep.description;
    let params = ep.args.iter().filter_map(|a| match a {
        Arg::Context => None,
        Arg::Named(p) => {
            let (ty, pname, required) = (&p.ty, &p.name, p.required);
            let mut spec = quote_spanned! {ty.span()=>
                <#ty as ::weft::__private::ParamType>::__weft_spec(#pname, #required)
            };
            if let Some(default) = &p.default {
                let value = typed_value(ty, default);
                spec = quote!(::weft::__private::with_default(#spec, &#value));
            }
            if let Some(example) = &p.example {
                let value = typed_value(ty, example);
                spec = quote!(::weft::__private::with_example(#spec, &#value));
            }
            Some(spec)
        }
    });
    let ok = ok_type(&ep.output);
    let error = match &ep.output {
        Output::Result { err: Some(err), .. } => quote! {
            {
                #[allow(unused_imports)]
                use ::weft::__private::{ErrorSchemaFallback as _, ErrorSchemaViaJsonSchema as _};
                (&&::weft::__private::ErrorSchemaProbe::<#err>::new()).__weft_error_schema()
            }
        },
        _ => quote!(::core::option::Option::None),
    };
    let schema = quote_spanned! {ok.span()=> <#ok as ::weft::__private::ReplyType>::__weft_schema };
    let mut spec = quote! {
        ::weft::__private::entrypoint_spec(
            #name,
            #description,
            <::weft::__private::Vec<_> as ::core::convert::From<_>>::from([#(#params),*]),
            #schema(),
            #error,
        )
    };
    if ep.read_only {
        spec = quote!(::weft::__private::read_only(#spec));
    }
    if ep.idempotent {
        spec = quote!(::weft::__private::idempotent(#spec));
    }
    if let Some((max, queue)) = ep.bulkhead {
        spec = quote!(::weft::__private::bulkhead(#spec, #max, #queue));
    }
    quote! {
        fn #spec_fn() -> ::weft::__private::EntrypointSpec {
            #spec
        }
    }
}

/// `value` as a `ty`, checked by the compiler at `value`: a string literal
/// becomes the type through `From` (`"abc"` for a `String`), anything else
/// must already be one; for an `Option<T>`, `value` is the `T` inside.
fn typed_value(ty: &Type, value: &syn::Expr) -> TokenStream {
    if let Some(inner) = parse::option_inner(ty) {
        let inner = typed_value(inner, value);
        return quote!(::core::option::Option::Some(#inner));
    }
    let is_str = matches!(
        value,
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Str(_),
            ..
        })
    );
    if is_str {
        quote_spanned! {value.span()=>
            {
                let __weft_v: #ty = ::core::convert::From::from(#value);
                __weft_v
            }
        }
    } else {
        quote_spanned! {value.span()=>
            {
                let __weft_v: #ty = #value;
                __weft_v
            }
        }
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
                let take = quote_spanned! {ty.span()=>
                    <#ty as ::weft::__private::ParamType>::__weft_take
                };
                match &p.default {
                    None => takes.push(quote! { let #var = #take(&mut __weft_args, #name)?; }),
                    Some(default) => {
                        let value = typed_value(ty, default);
                        takes.push(quote! {
                            let #var = ::weft::__private::take_or(
                                &mut __weft_args,
                                #name,
                                || #value,
                            )?;
                        });
                    }
                }
                call_args.push(quote!(#var));
                names.push(name);
            }
        }
    }
    let ok = ok_type(&ep.output);
    let encode_ok =
        quote_spanned! {ok.span()=> <#ok as ::weft::__private::ReplyType>::__weft_encode };
    let reply = match &ep.output {
        Output::Plain(_) => quote!(#encode_ok(&__weft_out, __weft_codec)),
        Output::Result { err, .. } => {
            let convert = match err {
                Some(err) => quote_spanned! {err.span()=>
                    <#err as ::weft::__private::ErrorType>::__weft_into_error
                },
                None => quote_spanned! {ep.method.span()=> ::weft::__private::application_error },
            };
            quote! {
                match __weft_out {
                    ::core::result::Result::Ok(__weft_v) => #encode_ok(&__weft_v, __weft_codec),
                    ::core::result::Result::Err(__weft_e) => {
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
            let mut __weft_args =
                ::weft::__private::Args::decode_bytes(__weft_codec, __weft_payload)?;
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
        // Named like the entrypoint callers see, unless that name is no Rust
        // identifier (`get-user`); then like the method.
        let method = match syn::parse_str::<syn::Ident>(&ep.name) {
            Ok(_) => syn::Ident::new(&ep.name, ep.method.span()),
            Err(_) => ep.method.clone(),
        };
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
            let id = &p.ident;
            quote!((#id, #rest))
        });
        let ok = ok_type(&ep.output);
        let bounds = bounds(ep);
        quote! {
            #doc
            pub async fn #method(&self, #(#decls),*)
                -> ::core::result::Result<#ok, ::weft::__private::Error>
            #bounds
            {
                <#ok as ::weft::__private::ReplyType>::__weft_call(
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

#[cfg(test)]
mod tests {
    use proc_macro2::{TokenStream, TokenTree};
    use quote::quote;

    /// Every token, groups flattened.
    fn flatten(ts: TokenStream, out: &mut Vec<TokenTree>) {
        for tt in ts {
            if let TokenTree::Group(g) = &tt {
                flatten(g.stream(), out);
            } else {
                out.push(tt);
            }
        }
    }

    #[test]
    fn absolute_paths_go_through_weft_or_core() {
        let out = super::service(
            quote!(name = "dice", publishes("dice.rolled" = Rolled)),
            quote! {
                impl Dice {
                    /// Roll.
                    #[entrypoint]
                    async fn roll(&self, ctx: &Context, n: u8) -> Result<u8, MyError> { Ok(n) }
                    #[entrypoint]
                    async fn plain(&self) -> Vec<u8> { Vec::new() }
                    #[event_handler(topic = "dice.rolled", ordered_by = "who")]
                    async fn on_roll(&self, ctx: &Context, event: Rolled) -> Result<(), MyError> { Ok(()) }
                    #[event_handler(topic = "dice.rolled", mode = "broadcast")]
                    async fn on_roll_plain(&self, event: Rolled) {}
                }
            },
        );
        let mut tokens = Vec::new();
        flatten(out, &mut tokens);
        let mut checked = 0;
        for w in tokens.windows(4) {
            let [
                before,
                TokenTree::Punct(a),
                TokenTree::Punct(b),
                TokenTree::Ident(root),
            ] = w
            else {
                continue;
            };
            let leading = !matches!(before, TokenTree::Ident(_))
                && !matches!(before, TokenTree::Punct(p) if p.as_char() == '>' || p.as_char() == ':');
            if a.as_char() == ':' && b.as_char() == ':' && leading {
                assert!(
                    root == "weft" || root == "core",
                    "generated code names `::{root}`"
                );
                checked += 1;
            }
        }
        assert!(checked > 10, "only {checked} absolute paths found");
    }

    #[test]
    fn errors_are_collected_not_panicked() {
        let out = super::service(
            quote!(name = "Bad Name"),
            quote! {
                impl Dice {
                    #[entrypoint]
                    fn a(self) {}
                    #[entrypoint]
                    async fn b(&mut self, (x, y): (u8, u8)) {}
                }
            },
        )
        .to_string();
        assert_eq!(out.matches("compile_error").count(), 5, "{out}");
        assert!(
            !out.contains("# [entrypoint]"),
            "markers are stripped: {out}"
        );
    }

    #[test]
    fn event_handler_errors_are_collected_and_markers_stripped() {
        let out = super::service(
            quote!(name = "dice", publishes("Bad Topic" = u8)),
            quote! {
                impl Dice {
                    #[event_handler(topic = "dice.rolled", mode = "fanout", max_attempts = 0)]
                    fn a(&self, e: u8, f: u8) -> u8 { 0 }
                    #[event_handler]
                    async fn b(&self, e: u8) {}
                    #[entrypoint]
                    #[event_handler(topic = "x")]
                    async fn c(&self, e: u8) {}
                }
            },
        )
        .to_string();
        // bad topic; mode, max_attempts, not async, two events, result; no topic; both markers
        assert_eq!(out.matches("compile_error").count(), 8, "{out}");
        assert!(
            !out.contains("# [event_handler") && !out.contains("# [entrypoint"),
            "markers are stripped: {out}"
        );
    }
}
