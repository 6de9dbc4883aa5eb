//! What `#[weft::service]` accepts: every kind of entrypoint and its typed
//! client, an empty service, and event handlers with every option. That
//! this module compiles is most of the test.

mod die_roller {
    use weft::prelude::*;

    #[derive(Default)]
    pub(crate) struct DieRoller;

    /// Rolls dice.
    #[weft::service(name = "die_roller")]
    impl DieRoller {
        /// Roll one die.
        #[entrypoint]
        async fn roll_die(&self) -> u8 {
            4
        }

        /// Add.
        #[entrypoint]
        async fn add(&self, ctx: &Context, a: i64, b: Option<i64>) -> weft::Result<i64> {
            let _ = ctx;
            Ok(a + b.unwrap_or(0))
        }

        #[entrypoint(name = "echo")]
        async fn echo_impl(&self, mut s: String) -> Result<String, std::fmt::Error> {
            s.push('!');
            Ok(s)
        }

        #[entrypoint(name = "get-user")]
        async fn get_user(&self, id: u64) {
            let _ = id;
        }

        /// Safe to run twice.
        #[entrypoint(idempotent)]
        async fn set_sides(&self, sides: u8) {
            let _ = sides;
        }

        /// At most two at once, four waiting.
        #[entrypoint(max_concurrency = 2, queue = 4, idempotent)]
        async fn reroll(&self) -> u8 {
            5
        }

        /// At most one at once, none waiting.
        #[entrypoint(max_concurrency = 1)]
        async fn alone(&self) {}

        /// Only reads.
        #[entrypoint(get, name = "sides")]
        async fn get_sides(&self) -> u8 {
            6
        }

        fn helper(&self) {}
    }

    pub(crate) async fn caller(ctx: &Context) -> weft::Result<()> {
        let client = DieRollerClient::new(ctx);
        let _: u8 = client.roll_die().await?;
        let _: i64 = client.add(1, None).await?;
        let _: String = client.echo("hi".to_owned()).await?;
        client.get_user(7).await?;
        DieRoller.helper();
        Ok(())
    }
}

mod empty_service {
    pub(crate) struct Nothing;

    #[weft::service(name = "nothing")]
    impl Nothing {}
}

mod events {
    use weft::prelude::*;

    /// A new order.
    #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    pub(crate) struct OrderCreated {
        order: u64,
        customer: String,
    }

    #[derive(Default)]
    pub(crate) struct Shop;

    #[weft::service(name = "shop", publishes("orders.created" = OrderCreated, "orders.counted" = u64))]
    impl Shop {
        /// Places an order and tells everyone.
        #[entrypoint]
        async fn order(&self, ctx: &Context, customer: String) -> weft::Result<u64> {
            ctx.publish("orders.created", &OrderCreated { order: 1, customer })
                .await
        }

        #[event_handler(topic = "orders.created")]
        async fn pooled(&self, event: OrderCreated) {
            let _ = event.order;
        }

        #[event_handler(topic = "orders.created", mode = "broadcast", max_attempts = 1)]
        async fn everywhere(&self, ctx: &Context, event: OrderCreated) -> weft::Result<()> {
            let _ = (ctx, event.customer);
            Ok(())
        }

        #[weft::event_handler(topic = "orders.created", ordered_by = "customer")]
        async fn in_order(
            &self,
            event: OrderCreated,
            ctx: &weft::Context,
        ) -> Result<(), std::fmt::Error> {
            let _ = (ctx, event);
            Ok(())
        }
    }
}

#[test]
fn every_accepted_form_compiles_and_describes_itself() {
    let _ = die_roller::caller;
    assert_eq!(<die_roller::DieRoller as weft::Service>::NAME, "die_roller");
    let spec = <die_roller::DieRoller as weft::Service>::spec();
    let idempotent: Vec<(&str, bool, bool)> = spec
        .entrypoints
        .iter()
        .map(|e| (e.name.as_str(), e.idempotent, e.read_only))
        .collect();
    // `get` is read-only, and so idempotent too.
    assert_eq!(
        idempotent,
        [
            ("roll_die", false, false),
            ("add", false, false),
            ("echo", false, false),
            ("get-user", false, false),
            ("set_sides", true, false),
            ("reroll", true, false),
            ("alone", false, false),
            ("sides", true, true),
        ]
    );
    let limits: Vec<(Option<u32>, Option<u32>)> = spec.entrypoints[4..7]
        .iter()
        .map(|e| (e.max_concurrency, e.queue))
        .collect();
    assert_eq!(
        limits,
        [(None, None), (Some(2), Some(4)), (Some(1), Some(0))]
    );

    let spec = <empty_service::Nothing as weft::Service>::spec();
    assert!(spec.entrypoints.is_empty());

    let spec = <events::Shop as weft::Service>::spec();
    assert_eq!(spec.event_handlers.len(), 3);
}
