use weft::prelude::*;

pub struct Shop;

#[weft::service(name = "shop", publishes("Orders Shipped" = u64))]
impl Shop {
    #[event_handler(topic = ".orders.created")]
    async fn on_order(&self, order: u64) {
        let _ = order;
    }
}

fn main() {}
