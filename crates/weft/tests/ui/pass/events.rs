use weft::prelude::*;

/// A new order.
#[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct OrderCreated {
    order: u64,
    customer: String,
}

#[derive(Default)]
pub struct Shop;

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
    async fn in_order(&self, event: OrderCreated, ctx: &weft::Context) -> Result<(), std::fmt::Error> {
        let _ = (ctx, event);
        Ok(())
    }
}

fn main() {}
