//! The contract between a service type and the runtime. `#[weft::service]`
//! implements [`Service`]; the runtime (network server or in-process test
//! mesh) hands it [`Incoming`] calls.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use weft_core::args::Args;
use weft_core::codec::Codec;
use weft_core::spec::ServiceSpec;

use crate::{Context, Error};

/// A type that serves entrypoints. Implemented by `#[weft::service]`; write
/// it by hand only for dynamic services.
pub trait Service: Send + Sync + 'static {
    /// The service name callers use.
    const NAME: &'static str;
    /// The version of the crate that defines the service; overridden at run
    /// time by `WEFT_VERSION` (the host sets it when it deploys a version).
    const VERSION: &'static str;

    /// The entrypoints, event handlers and published topics, with their
    /// schemas and docs.
    fn spec() -> ServiceSpec;

    /// Starts handling one call. Unknown entrypoints answer
    /// [`Dispatch::NotFound`].
    fn dispatch(self: Arc<Self>, call: Incoming) -> Dispatch;

    /// Starts handling one event with the event handler named `handler`
    /// (one of `spec().event_handlers`); `None` when there is no such
    /// handler. The future fails when the payload does not decode or the
    /// handler returns `Err`; the runtime then has the event delivered again.
    ///
    /// The default has no event handlers.
    fn dispatch_event(
        self: Arc<Self>,
        handler: &str,
        ctx: Context,
        payload: serde_json::Value,
    ) -> Option<BoxFuture<'static, Result<(), Error>>> {
        let _ = (handler, ctx, payload);
        None
    }
}

/// One call as the service sees it: which entrypoint, its arguments, and the
/// context to run it in.
#[derive(Debug)]
pub struct Incoming {
    pub(crate) entrypoint: String,
    pub(crate) codec: Codec,
    pub(crate) payload: Bytes,
    pub(crate) context: Context,
}

impl Incoming {
    /// A call of `entrypoint` with an encoded argument object.
    pub fn new(
        entrypoint: impl Into<String>,
        codec: Codec,
        payload: Bytes,
        context: Context,
    ) -> Self {
        Incoming {
            entrypoint: entrypoint.into(),
            codec,
            payload,
            context,
        }
    }

    /// The entrypoint called.
    pub fn entrypoint(&self) -> &str {
        &self.entrypoint
    }

    /// The codec of the arguments and of the reply.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The raw encoded argument object.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Decodes the arguments for taking parameters by name.
    pub fn args(&self) -> Result<Args, Error> {
        Args::decode_bytes(self.codec, self.payload.clone())
    }

    /// The call's context: deadline, caller, and the way to make further calls.
    pub fn context(&self) -> &Context {
        &self.context
    }

    /// Splits the call into its context and arguments.
    pub fn into_parts(self) -> (Context, Codec, Bytes) {
        (self.context, self.codec, self.payload)
    }
}

/// What a service does with a call.
pub enum Dispatch {
    /// One reply, encoded with the call's codec.
    Unary(BoxFuture<'static, Result<Bytes, Error>>),
    /// A stream of replies, each encoded with the call's codec.
    Stream(BoxStream<'static, Result<Bytes, Error>>),
    /// The service has no such entrypoint.
    NotFound(Incoming),
}

impl std::fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Dispatch::Unary(_) => "Dispatch::Unary",
            Dispatch::Stream(_) => "Dispatch::Stream",
            Dispatch::NotFound(_) => "Dispatch::NotFound",
        })
    }
}

/// A service behind a trait object, as the runtime holds it.
pub(crate) trait DynService: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    // Only the test mesh makes up identities; served instances get theirs
    // from the environment the host starts them in.
    #[cfg(feature = "testing")]
    fn version(&self) -> &'static str;
    fn spec(&self) -> ServiceSpec;
    fn dispatch(&self, call: Incoming) -> Dispatch;
    fn dispatch_event(
        &self,
        handler: &str,
        ctx: Context,
        payload: serde_json::Value,
    ) -> Option<BoxFuture<'static, Result<(), Error>>>;
}

impl<S: Service> DynService for Arc<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }
    #[cfg(feature = "testing")]
    fn version(&self) -> &'static str {
        S::VERSION
    }
    fn spec(&self) -> ServiceSpec {
        S::spec()
    }
    fn dispatch(&self, call: Incoming) -> Dispatch {
        Service::dispatch(self.clone(), call)
    }
    fn dispatch_event(
        &self,
        handler: &str,
        ctx: Context,
        payload: serde_json::Value,
    ) -> Option<BoxFuture<'static, Result<(), Error>>> {
        Service::dispatch_event(self.clone(), handler, ctx, payload)
    }
}

/// Runs one event through a service's handler: a handler that panics fails
/// like one that returns `Err`, and errors name the handler.
pub(crate) async fn handle_event(
    service: &dyn DynService,
    handler: &str,
    ctx: Context,
    payload: serde_json::Value,
) -> Result<(), Error> {
    use futures::FutureExt;

    let name = service.name();
    let Some(fut) = service.dispatch_event(handler, ctx, payload) else {
        return Err(Error::not_found(format!(
            "service `{name}` has no event handler `{handler}`"
        )));
    };
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r.map_err(|e| e.with_origin(name, handler)),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string panic payload".to_owned());
            Err(
                Error::internal(format!("event handler {name}.{handler} panicked: {why}"))
                    .with_origin(name, handler),
            )
        }
    }
}
