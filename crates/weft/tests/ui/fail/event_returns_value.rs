use weft::prelude::*;

pub struct Shop;

#[weft::service(name = "shop")]
impl Shop {
    #[event_handler(topic = "orders.created")]
    async fn on_order(&self, order: u64) -> u64 {
        order
    }

    #[event_handler(topic = "orders.created")]
    async fn on_order_result(&self, order: u64) -> weft::Result<u64> {
        Ok(order)
    }
}

fn main() {}
