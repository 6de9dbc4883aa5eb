//! `echo`: a service that answers in every way the gateway has to
//! translate, as version 1 (the crate's) and 2.0.0.

use std::sync::Arc;
use std::time::Duration;

use weft::prelude::*;
use weft::{Dispatch, Incoming, Service};
use weft_core::spec::ServiceSpec;

/// A service for testing the gateway's answers.
#[derive(Debug, Default)]
pub(crate) struct Echo;

/// Answers in every way the gateway has to translate.
#[weft::service(name = "echo")]
impl Echo {
    /// Returns `text`, `times` times over.
    #[entrypoint]
    async fn echo(&self, text: String, times: Option<u32>) -> String {
        text.repeat(times.unwrap_or(1) as usize)
    }

    /// The version of the instance that answered.
    #[entrypoint]
    async fn version(&self, ctx: &Context) -> String {
        ctx.identity()
            .map(|i| i.version.clone())
            .unwrap_or_default()
    }

    /// Answers after `ms` milliseconds.
    #[entrypoint]
    async fn sleep(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    /// Always fails with an error of its own.
    #[entrypoint]
    async fn fail(&self) -> weft::Result<u8> {
        Err(weft::Error::application("Broken", "it broke, as asked"))
    }
}

/// [`Echo`] registered as version 2.0.0.
#[derive(Debug, Default)]
pub(crate) struct EchoV2;

impl Service for EchoV2 {
    const NAME: &'static str = <Echo as Service>::NAME;
    const VERSION: &'static str = "2.0.0";

    fn spec() -> ServiceSpec {
        <Echo as Service>::spec()
    }

    fn dispatch(self: Arc<Self>, call: Incoming) -> Dispatch {
        Arc::new(Echo).dispatch(call)
    }
}
