use weft::prelude::*;

pub struct Shop;

#[weft::service(name = "shop")]
impl Shop {
    #[event_handler(topic = "orders.created")]
    fn on_order(&self, order: u64) {
        let _ = order;
    }
}

fn main() {}
