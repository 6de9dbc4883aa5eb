use weft::prelude::*;

pub struct Shop;

#[weft::service(name = "shop")]
impl Shop {
    #[event_handler(topic = "orders.created")]
    async fn no_event(&self, ctx: &Context) {
        let _ = ctx;
    }

    #[event_handler(topic = "orders.created")]
    async fn two_events(&self, order: u64, customer: String) {
        let _ = (order, customer);
    }

    #[event_handler(topic = "orders.created")]
    async fn by_value(self, order: u64) {
        let _ = order;
    }
}

fn main() {}
