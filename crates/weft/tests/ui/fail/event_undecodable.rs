use weft::prelude::*;

pub struct Shop;

pub struct Order;

pub struct Shipped;

#[weft::service(name = "shop", publishes("orders.shipped" = Shipped))]
impl Shop {
    #[event_handler(topic = "orders.created")]
    async fn on_order(&self, order: Order) {
        let _ = order;
    }
}

fn main() {}
