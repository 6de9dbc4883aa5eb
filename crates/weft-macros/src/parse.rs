//! Reading `#[weft::service]` input into a model of the service, collecting
//! every error with its span instead of stopping at the first.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt;
use syn::{
    Attribute, Expr, FnArg, GenericArgument, ImplItem, ImplItemFn, ItemImpl, Lit, LitStr, Meta,
    Pat, PathArguments, ReturnType, Type,
};

/// Arguments of `#[weft::service(..)]`.
pub(crate) struct ServiceArgs {
    pub(crate) name: String,
    /// `publishes("topic" = Type, ..)`.
    pub(crate) publishes: Vec<Published>,
}

/// A topic the service declares it publishes, with its payload type.
pub(crate) struct Published {
    pub(crate) topic: String,
    pub(crate) ty: Type,
}

/// A service as the macro understands it.
pub(crate) struct Model {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) entrypoints: Vec<Entrypoint>,
    pub(crate) event_handlers: Vec<EventHandler>,
}

/// One `#[event_handler(topic = "..")]` method.
pub(crate) struct EventHandler {
    pub(crate) method: syn::Ident,
    /// The handler's name (the method's, without `r#`): with the service it
    /// names the consumer group.
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) topic: String,
    pub(crate) mode: Mode,
    pub(crate) max_attempts: u32,
    /// Arguments in the order the method takes them; exactly one is the event.
    pub(crate) args: Vec<EventArg>,
    /// The event's type.
    pub(crate) event: Box<Type>,
    /// `None` for a handler returning `()`; `Some(err)` for `Result<(), E>`
    /// (`err` is `None` for an alias such as `weft::Result<()>`).
    pub(crate) error: Option<Option<Box<Type>>>,
}

/// One argument of an event handler method.
pub(crate) enum EventArg {
    Context,
    Event,
}

/// How a handler's events are spread over the service's instances.
pub(crate) enum Mode {
    Pool,
    Broadcast,
    Ordered(String),
}

/// The number of attempts when `max_attempts` is not given.
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// One `#[entrypoint]` method.
pub(crate) struct Entrypoint {
    pub(crate) method: syn::Ident,
    pub(crate) name: String,
    pub(crate) description: String,
    /// Doc attributes copied to the typed client's method.
    pub(crate) docs: Vec<Attribute>,
    /// Arguments in the order the method takes them.
    pub(crate) args: Vec<Arg>,
    pub(crate) output: Output,
    /// `#[entrypoint(get)]`: the entrypoint only reads, and the gateway
    /// also takes it as `GET`.
    pub(crate) read_only: bool,
    /// `#[entrypoint(idempotent)]` (or `get`): running it twice does what
    /// running it once does, so callers may send it again.
    pub(crate) idempotent: bool,
    /// `#[entrypoint(max_concurrency = N, queue = M)]`: at most N calls
    /// run at once, M wait, the rest are refused.
    pub(crate) bulkhead: Option<(u32, u32)>,
}

/// One argument of an entrypoint method.
pub(crate) enum Arg {
    /// `&Context`: passed by the runtime, not by callers.
    Context,
    /// A named parameter callers pass.
    Named(Box<Param>),
}

/// A named parameter.
pub(crate) struct Param {
    /// The binding in the method, without `mut`; names the client's argument.
    pub(crate) ident: syn::Ident,
    /// The name on the wire (the identifier without `r#`).
    pub(crate) name: String,
    pub(crate) ty: Type,
    pub(crate) required: bool,
    /// `#[arg(default = ...)]`: the value used when the argument is missing.
    pub(crate) default: Option<Expr>,
    /// `#[arg(example = ...)]`: a value for the docs.
    pub(crate) example: Option<Expr>,
}

/// What an entrypoint returns.
pub(crate) enum Output {
    /// A plain value: the call always succeeds.
    Plain(Box<Type>),
    /// `Result<T, E>`; `err` is `None` for `Result<T>` (an alias such as
    /// `weft::Result<T>` whose error type is not written out).
    Result {
        ok: Box<Type>,
        err: Option<Box<Type>>,
    },
}

/// Parses `name = "..."` and `publishes("topic" = Type, ..)`.
pub(crate) fn service_args(attr: TokenStream, errors: &mut Errors) -> Option<ServiceArgs> {
    let mut name: Option<LitStr> = None;
    let mut publishes: Vec<Published> = Vec::new();
    let mut topic_errors = Errors::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            name = Some(meta.value()?.parse()?);
            Ok(())
        } else if meta.path.is_ident("publishes") {
            let content;
            syn::parenthesized!(content in meta.input);
            let decls = content.parse_terminated(
                |input: syn::parse::ParseStream<'_>| {
                    let topic: LitStr = input.parse().map_err(|e| {
                        syn::Error::new(
                            e.span(),
                            "write each published topic as `\"orders.created\" = OrderCreated`",
                        )
                    })?;
                    input.parse::<syn::Token![=]>()?;
                    let ty: Type = input.parse()?;
                    Ok((topic, ty))
                },
                syn::Token![,],
            )?;
            for (lit, ty) in decls {
                let topic = lit.value();
                if let Err(e) = weft_core::name::validate_topic(&topic) {
                    topic_errors.push(syn::Error::new(lit.span(), e.message()));
                } else if publishes.iter().any(|p| p.topic == topic) {
                    topic_errors.push(syn::Error::new(
                        lit.span(),
                        format!("`{topic}` is declared twice in `publishes(..)`"),
                    ));
                } else {
                    publishes.push(Published { topic, ty });
                }
            }
            Ok(())
        } else {
            Err(meta.error(
                "unknown argument: `#[weft::service]` takes `name = \"...\"` and `publishes(\"topic\" = Type, ..)`",
            ))
        }
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, attr) {
        errors.push(e);
        return None;
    }
    let topics_ok = topic_errors.is_empty();
    errors.0.extend(topic_errors.0);
    let Some(name) = name else {
        errors.push(syn::Error::new(
            Span::call_site(),
            "missing service name: write `#[weft::service(name = \"my_service\")]`",
        ));
        return None;
    };
    let value = name.value();
    if let Err(e) = weft_core::name::validate(&value) {
        errors.push(syn::Error::new(name.span(), e.message()));
        return None;
    }
    topics_ok.then_some(ServiceArgs {
        name: value,
        publishes,
    })
}

/// Errors found so far; all are reported together.
#[derive(Default)]
pub(crate) struct Errors(Vec<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, e: syn::Error) {
        self.0.push(e);
    }

    pub(crate) fn to_tokens(&self) -> TokenStream {
        self.0.iter().map(syn::Error::to_compile_error).collect()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Whether `attr` is the `#[entrypoint]` marker (also `#[weft::entrypoint]`).
pub(crate) fn is_entrypoint_attr(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "entrypoint")
}

/// Whether `attr` is the `#[event_handler]` marker (also `#[weft::event_handler]`).
pub(crate) fn is_event_handler_attr(attr: &Attribute) -> bool {
    attr.path()
        .segments
        .last()
        .is_some_and(|s| s.ident == "event_handler")
}

/// Reads the impl block and strips the `#[entrypoint]` and
/// `#[event_handler]` markers from it.
pub(crate) fn model(name: String, item: &mut ItemImpl, errors: &mut Errors) -> Model {
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(syn::Error::new_spanned(
            path,
            "`#[weft::service]` goes on an inherent impl block (`impl MyService { .. }`), not on a trait impl",
        ));
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "a service type cannot be generic: the runtime needs one concrete type per service",
        ));
    }
    let description = doc_string(&item.attrs);
    let mut entrypoints: Vec<Entrypoint> = Vec::new();
    let mut seen: Vec<(String, Span)> = Vec::new();
    let mut event_handlers = Vec::new();
    for impl_item in &mut item.items {
        let ImplItem::Fn(f) = impl_item else { continue };
        let handler_markers: Vec<Attribute> = f
            .attrs
            .iter()
            .filter(|a| is_event_handler_attr(a))
            .cloned()
            .collect();
        if let Some(first) = handler_markers.first() {
            f.attrs.retain(|a| !is_event_handler_attr(a));
            if let Some(extra) = handler_markers.get(1) {
                errors.push(syn::Error::new_spanned(
                    extra,
                    "duplicate `#[event_handler]`: a method handles one topic; write one method per topic",
                ));
            }
            if let Some(ep) = f.attrs.iter().find(|a| is_entrypoint_attr(a)) {
                errors.push(syn::Error::new_spanned(
                    ep,
                    "a method is either an `#[entrypoint]` or an `#[event_handler]`, not both; \
                     let one call the other",
                ));
                f.attrs.retain(|a| !is_entrypoint_attr(a));
            }
            if let Some(h) = event_handler(f, first, errors) {
                event_handlers.push(h);
            }
            continue;
        }
        let markers: Vec<Attribute> = f
            .attrs
            .iter()
            .filter(|a| is_entrypoint_attr(a))
            .cloned()
            .collect();
        if markers.is_empty() {
            continue;
        }
        f.attrs.retain(|a| !is_entrypoint_attr(a));
        if let Some(extra) = markers.get(1) {
            errors.push(syn::Error::new_spanned(extra, "duplicate `#[entrypoint]`"));
        }
        let options = entrypoint_options(&markers[0], errors);
        let read_only = options.get;
        let parsed = entrypoint(f, options.name, read_only, errors).map(|mut ep| {
            // What only reads is safe to run twice.
            ep.idempotent = options.idempotent || read_only;
            ep.bulkhead = options.bulkhead;
            ep
        });
        strip_arg_attrs(f);
        if let Some(ep) = parsed {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == ep.name) {
                let mut e = syn::Error::new(
                    ep_name_span(f, &markers[0]),
                    format!(
                        "two entrypoints are named `{}`; rename one with `#[entrypoint(name = \"...\")]`",
                        ep.name
                    ),
                );
                e.combine(syn::Error::new(*first, "the first one is here"));
                errors.push(e);
                continue;
            }
            seen.push((ep.name.clone(), ep_name_span(f, &markers[0])));
            entrypoints.push(ep);
        }
    }
    Model {
        name,
        description,
        entrypoints,
        event_handlers,
    }
}

/// The options of `#[event_handler(..)]`.
struct HandlerOptions {
    topic: String,
    mode: Mode,
    max_attempts: u32,
}

fn handler_options(attr: &Attribute, errors: &mut Errors) -> Option<HandlerOptions> {
    const USAGE: &str = "write `#[event_handler(topic = \"orders.created\")]`, optionally with \
                         `mode = \"pool\" | \"broadcast\"`, `ordered_by = \"field\"`, `max_attempts = N`";
    let Meta::List(_) = &attr.meta else {
        errors.push(syn::Error::new_spanned(
            attr,
            format!("missing topic: {USAGE}"),
        ));
        return None;
    };
    let mut topic: Option<LitStr> = None;
    let mut mode: Option<LitStr> = None;
    let mut ordered_by: Option<LitStr> = None;
    let mut max_attempts: Option<syn::LitInt> = None;
    let res = attr.parse_nested_meta(|meta| {
        let slot_err = |what: &str| meta.error(format!("`{what}` is given twice"));
        if meta.path.is_ident("topic") {
            if topic.is_some() {
                return Err(slot_err("topic"));
            }
            topic = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("mode") {
            if mode.is_some() {
                return Err(slot_err("mode"));
            }
            mode = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("ordered_by") {
            if ordered_by.is_some() {
                return Err(slot_err("ordered_by"));
            }
            ordered_by = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("max_attempts") {
            if max_attempts.is_some() {
                return Err(slot_err("max_attempts"));
            }
            max_attempts = Some(meta.value()?.parse()?);
        } else {
            return Err(meta.error(format!("unknown option: {USAGE}")));
        }
        Ok(())
    });
    if let Err(e) = res {
        errors.push(e);
        return None;
    }
    let before = errors.0.len();
    let topic = match topic {
        None => {
            errors.push(syn::Error::new_spanned(
                attr,
                format!("missing topic: {USAGE}"),
            ));
            String::new()
        }
        Some(lit) => {
            let value = lit.value();
            if let Err(e) = weft_core::name::validate_topic(&value) {
                errors.push(syn::Error::new(lit.span(), e.message()));
            }
            value
        }
    };
    let broadcast = match &mode {
        None => false,
        Some(lit) => match lit.value().as_str() {
            "pool" => false,
            "broadcast" => true,
            other => {
                errors.push(syn::Error::new(
                    lit.span(),
                    format!(
                        "unknown mode `{other}`: use `\"pool\"` (each event to one instance, the default) \
                         or `\"broadcast\"` (each event to every instance); for per-key order write \
                         `ordered_by = \"field\"`"
                    ),
                ));
                false
            }
        },
    };
    let mode = match ordered_by {
        None if broadcast => Mode::Broadcast,
        None => Mode::Pool,
        Some(lit) => {
            let field = lit.value();
            if broadcast {
                errors.push(syn::Error::new(
                    lit.span(),
                    "`ordered_by` spreads events over instances like `pool`; it cannot be combined \
                     with `mode = \"broadcast\"`",
                ));
            }
            if field.is_empty() || field.chars().any(char::is_whitespace) {
                errors.push(syn::Error::new(
                    lit.span(),
                    "`ordered_by` names a top-level field of the event, like `ordered_by = \"customer_id\"`",
                ));
            }
            Mode::Ordered(field)
        }
    };
    let max_attempts = match max_attempts {
        None => DEFAULT_MAX_ATTEMPTS,
        Some(lit) => match lit.base10_parse::<u32>() {
            Ok(n) if n >= 1 => n,
            _ => {
                errors.push(syn::Error::new(
                    lit.span(),
                    "`max_attempts` is a whole number from 1: how many times an event is tried \
                     before it goes to the dead letters",
                ));
                DEFAULT_MAX_ATTEMPTS
            }
        },
    };
    (errors.0.len() == before).then_some(HandlerOptions {
        topic,
        mode,
        max_attempts,
    })
}

fn event_handler(f: &ImplItemFn, marker: &Attribute, errors: &mut Errors) -> Option<EventHandler> {
    let sig = &f.sig;
    let before = errors.0.len();
    let options = handler_options(marker, errors);
    let name = sig.ident.unraw().to_string();
    if let Err(e) = weft_core::name::validate(&name) {
        errors.push(syn::Error::new(
            sig.ident.span(),
            format!(
                "{}; the event handler is named after its method, so rename the method",
                e.message()
            ),
        ));
    }
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            "an event handler must be an `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "an event handler cannot be generic: its event needs a concrete type for its schema",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            v,
            "an event handler cannot be variadic",
        ));
    }
    match sig.receiver() {
        None => errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            "an event handler takes `&self` as its first parameter",
        )),
        Some(r) if r.colon_token.is_some() || r.reference.is_none() || r.mutability.is_some() => {
            errors.push(syn::Error::new_spanned(
                r,
                "an event handler takes `&self`: the service is shared by concurrent handlers and calls",
            ))
        }
        Some(_) => {}
    }
    let mut args = Vec::new();
    let mut event: Option<Box<Type>> = None;
    for input in &sig.inputs {
        let FnArg::Typed(pt) = input else { continue };
        if is_context(&pt.ty) {
            args.push(EventArg::Context);
        } else if event.is_some() {
            errors.push(syn::Error::new_spanned(
                pt,
                "an event handler takes one event (and optionally `ctx: &Context`): \
                 put what the handler needs into the event's type",
            ));
        } else {
            event = Some(pt.ty.clone());
            args.push(EventArg::Event);
        }
    }
    if event.is_none() && sig.receiver().is_some() {
        errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            "an event handler takes the event as a parameter: \
             `async fn on_order(&self, event: OrderCreated)`",
        ));
    }
    let error = match &sig.output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) if is_unit(ty) => None,
        ReturnType::Type(_, ty) => match output(ty) {
            Output::Result { ok, err } if is_unit(&ok) => Some(err),
            _ => {
                errors.push(syn::Error::new_spanned(
                    ty,
                    "an event handler returns `()` or `Result<(), E>`: `Err` has the event delivered again",
                ));
                None
            }
        },
    };
    if errors.0.len() > before {
        return None;
    }
    let options = options?;
    Some(EventHandler {
        method: sig.ident.clone(),
        name,
        description: doc_string(&f.attrs),
        topic: options.topic,
        mode: options.mode,
        max_attempts: options.max_attempts,
        args,
        event: event?,
        error,
    })
}

/// `()`, however parenthesized.
fn is_unit(ty: &Type) -> bool {
    match ty {
        Type::Tuple(t) => t.elems.is_empty(),
        Type::Paren(p) => is_unit(&p.elem),
        Type::Group(g) => is_unit(&g.elem),
        _ => false,
    }
}

/// Where an entrypoint's name is written: the `name = ".."` literal when
/// renamed, else the method name.
fn ep_name_span(f: &ImplItemFn, marker: &Attribute) -> Span {
    if let Meta::List(list) = &marker.meta
        && let Ok(lit) = list.parse_args_with(|input: syn::parse::ParseStream<'_>| {
            input.parse::<syn::Ident>()?;
            input.parse::<syn::Token![=]>()?;
            input.parse::<LitStr>()
        })
    {
        return lit.span();
    }
    f.sig.ident.span()
}

/// What `#[entrypoint(..)]` says besides the method.
#[derive(Default)]
struct EntrypointOptions {
    name: Option<LitStr>,
    get: bool,
    idempotent: bool,
    /// `max_concurrency = N, queue = M`.
    bulkhead: Option<(u32, u32)>,
}

/// `#[entrypoint(name = "...", get, idempotent, max_concurrency = N,
/// queue = M)]`.
fn entrypoint_options(attr: &Attribute, errors: &mut Errors) -> EntrypointOptions {
    let mut options = EntrypointOptions::default();
    match &attr.meta {
        Meta::Path(_) => {}
        Meta::NameValue(nv) => {
            errors.push(syn::Error::new_spanned(
                nv,
                "write `#[entrypoint]`, `#[entrypoint(get)]`, `#[entrypoint(idempotent)]` or `#[entrypoint(name = \"...\")]`",
            ));
        }
        Meta::List(_) => {
            let mut max_concurrency = None;
            let mut queue = None;
            let res = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("name") {
                    options.name = Some(meta.value()?.parse::<LitStr>()?);
                } else if meta.path.is_ident("get") {
                    options.get = true;
                } else if meta.path.is_ident("idempotent") {
                    options.idempotent = true;
                } else if meta.path.is_ident("max_concurrency") {
                    let n: syn::LitInt = meta.value()?.parse()?;
                    let value: u32 = n.base10_parse()?;
                    if value == 0 {
                        return Err(syn::Error::new_spanned(
                            n,
                            "`max_concurrency` must be at least 1: it is how many calls may run at once",
                        ));
                    }
                    max_concurrency = Some(value);
                } else if meta.path.is_ident("queue") {
                    let n: syn::LitInt = meta.value()?.parse()?;
                    queue = Some((n.base10_parse::<u32>()?, n));
                } else {
                    return Err(meta.error(
                        "unknown argument: `#[entrypoint]` takes `name = \"...\"`, `get`, `idempotent`, `max_concurrency = N` and `queue = M`",
                    ));
                }
                Ok(())
            });
            if let Err(e) = res {
                errors.push(e);
            }
            match (max_concurrency, queue) {
                (Some(n), q) => options.bulkhead = Some((n, q.map_or(0, |(q, _)| q))),
                (None, Some((_, lit))) => errors.push(syn::Error::new_spanned(
                    lit,
                    "`queue` needs `max_concurrency = N`: calls wait in the queue for one of N places",
                )),
                (None, None) => {}
            }
        }
    }
    options
}

/// Whether `attr` is a parameter's `#[arg(..)]`.
fn is_arg_attr(attr: &Attribute) -> bool {
    attr.path().is_ident("arg")
}

/// Removes `#[arg(..)]` from the method's parameters: they are read by
/// [`entrypoint`] and mean nothing to the compiler.
fn strip_arg_attrs(f: &mut ImplItemFn) {
    for input in &mut f.sig.inputs {
        if let FnArg::Typed(pt) = input {
            pt.attrs.retain(|a| !is_arg_attr(a));
        }
    }
}

/// `#[arg(default = EXPR, example = EXPR)]` on a parameter.
fn arg_options(attrs: &[Attribute], errors: &mut Errors) -> (Option<Expr>, Option<Expr>) {
    let mut default = None;
    let mut example = None;
    for attr in attrs.iter().filter(|a| is_arg_attr(a)) {
        let res = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("default") {
                default = Some(meta.value()?.parse::<Expr>()?);
                Ok(())
            } else if meta.path.is_ident("example") {
                example = Some(meta.value()?.parse::<Expr>()?);
                Ok(())
            } else {
                Err(meta.error(
                    "unknown argument: `#[arg]` takes `default = value` and `example = value`",
                ))
            }
        });
        if let Err(e) = res {
            errors.push(e);
        }
    }
    (default, example)
}

fn entrypoint(
    f: &ImplItemFn,
    rename: Option<LitStr>,
    read_only: bool,
    errors: &mut Errors,
) -> Option<Entrypoint> {
    let sig = &f.sig;
    let before = errors.0.len();
    let name = match &rename {
        Some(lit) => {
            let value = lit.value();
            if let Err(e) = weft_core::name::validate(&value) {
                errors.push(syn::Error::new(lit.span(), e.message()));
            }
            value
        }
        None => {
            let value = sig.ident.unraw().to_string();
            if let Err(e) = weft_core::name::validate(&value) {
                errors.push(syn::Error::new(
                    sig.ident.span(),
                    format!(
                        "{}; keep the method name and rename the entrypoint with \
                         `#[entrypoint(name = \"...\")]`",
                        e.message()
                    ),
                ));
            }
            value
        }
    };
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new(
            sig.fn_token.span,
            "an entrypoint must be an `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "an entrypoint cannot be generic: its parameters and result need concrete types for their schemas",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            v,
            "an entrypoint cannot be variadic",
        ));
    }
    match sig.receiver() {
        None => errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            "an entrypoint takes `&self` as its first parameter",
        )),
        Some(r) if r.colon_token.is_some() => errors.push(syn::Error::new_spanned(
            r,
            "an entrypoint takes `&self`, not a typed `self`",
        )),
        Some(r) if r.reference.is_none() => errors.push(syn::Error::new_spanned(
            r,
            "an entrypoint takes `&self`, not `self` by value: the service is shared by concurrent calls",
        )),
        Some(r) if r.mutability.is_some() => errors.push(syn::Error::new_spanned(
            r,
            "an entrypoint takes `&self`, not `&mut self`: the service is shared by concurrent calls; \
             keep mutable state behind a lock",
        )),
        Some(_) => {}
    }
    let mut args = Vec::new();
    for input in &sig.inputs {
        let FnArg::Typed(pt) = input else { continue };
        if is_context(&pt.ty) {
            args.push(Arg::Context);
            continue;
        }
        let ident = match &*pt.pat {
            Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => pi.ident.clone(),
            other => {
                errors.push(syn::Error::new_spanned(
                    other,
                    "an entrypoint parameter must be a plain name (`a: T`): callers pass arguments by name",
                ));
                continue;
            }
        };
        let (default, example) = arg_options(&pt.attrs, errors);
        let name = ident.unraw().to_string();
        if read_only && name == "version" {
            errors.push(syn::Error::new_spanned(
                &ident,
                "a `#[entrypoint(get)]` cannot take a parameter named `version`: in a GET query, \
                 `?version=` picks the service's version; rename the parameter",
            ));
        }
        args.push(Arg::Named(Box::new(Param {
            name,
            ident,
            required: !is_option(&pt.ty) && default.is_none(),
            ty: (*pt.ty).clone(),
            default,
            example,
        })));
    }
    let output = match &sig.output {
        ReturnType::Default => Output::Plain(Box::new(syn::parse_quote!(()))),
        ReturnType::Type(_, ty) => output(ty),
    };
    if errors.0.len() > before {
        return None;
    }
    Some(Entrypoint {
        method: sig.ident.clone(),
        name,
        description: doc_string(&f.attrs),
        docs: f
            .attrs
            .iter()
            .filter(|a| a.path().is_ident("doc"))
            .cloned()
            .collect(),
        args,
        output,
        read_only,
        idempotent: false,
        bulkhead: None,
    })
}

/// The doc comment lines, each trimmed, joined by newlines.
fn doc_string(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value()),
                _ => None,
            },
            _ => None,
        })
        .flat_map(|s| {
            s.split('\n')
                .map(|l| l.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// `&Context`, `&weft::Context` or `&::weft::Context`.
fn is_context(ty: &Type) -> bool {
    let Type::Reference(r) = ty else { return false };
    if r.mutability.is_some() {
        return false;
    }
    let Type::Path(p) = &*r.elem else {
        return false;
    };
    if p.qself.is_some() {
        return false;
    }
    let segs: Vec<String> = p
        .path
        .segments
        .iter()
        .map(|s| s.ident.to_string())
        .collect();
    let plain = p.path.segments.iter().all(|s| s.arguments.is_none());
    plain
        && match segs.as_slice() {
            [c] => c == "Context",
            [w, c] => w == "weft" && c == "Context",
            _ => false,
        }
}

/// Whether the type is written `Option<..>` (any path ending in `Option`).
fn is_option(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Option")
}

/// `T` of `Option<T>`.
pub(crate) fn option_inner(ty: &Type) -> Option<&Type> {
    let seg = last_segment(ty).filter(|s| s.ident == "Option")?;
    let PathArguments::AngleBracketed(a) = &seg.arguments else {
        return None;
    };
    a.args.iter().find_map(|g| match g {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    })
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        Type::Group(g) => last_segment(&g.elem),
        Type::Paren(p) => last_segment(&p.elem),
        _ => None,
    }
}

/// Splits `Result<T, E>` / `Result<T>` from a plain return type.
fn output(ty: &Type) -> Output {
    if let Some(seg) = last_segment(ty)
        && seg.ident == "Result"
        && let PathArguments::AngleBracketed(a) = &seg.arguments
    {
        let types: Vec<&Type> = a
            .args
            .iter()
            .filter_map(|g| match g {
                GenericArgument::Type(t) => Some(t),
                _ => None,
            })
            .collect();
        match types.as_slice() {
            [ok] => {
                return Output::Result {
                    ok: Box::new((*ok).clone()),
                    err: None,
                };
            }
            [ok, err] => {
                return Output::Result {
                    ok: Box::new((*ok).clone()),
                    err: Some(Box::new((*err).clone())),
                };
            }
            _ => {}
        }
    }
    Output::Plain(Box::new(ty.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_and_option_are_recognised() {
        assert!(is_context(&syn::parse_quote!(&Context)));
        assert!(is_context(&syn::parse_quote!(&'_ weft::Context)));
        assert!(is_context(&syn::parse_quote!(&::weft::Context)));
        assert!(!is_context(&syn::parse_quote!(&mut Context)));
        assert!(!is_context(&syn::parse_quote!(Context)));
        assert!(!is_context(&syn::parse_quote!(&other::Context)));
        assert!(is_option(&syn::parse_quote!(Option<u8>)));
        assert!(is_option(&syn::parse_quote!(std::option::Option<u8>)));
        assert!(!is_option(&syn::parse_quote!(Vec<Option<u8>>)));
    }

    #[test]
    fn results_are_split() {
        assert!(matches!(output(&syn::parse_quote!(u8)), Output::Plain(_)));
        assert!(matches!(
            output(&syn::parse_quote!(weft::Result<u8>)),
            Output::Result { err: None, .. }
        ));
        assert!(matches!(
            output(&syn::parse_quote!(Result<u8, MyError>)),
            Output::Result { err: Some(_), .. }
        ));
    }

    #[test]
    fn docs_are_trimmed_and_joined() {
        let attrs: Vec<Attribute> = vec![
            syn::parse_quote!(#[doc = " Roll one die."]),
            syn::parse_quote!(#[doc = "  Fair.  "]),
            syn::parse_quote!(#[doc = ""]),
        ];
        assert_eq!(doc_string(&attrs), "Roll one die.\nFair.");
    }
}
