use weft::prelude::*;

pub struct Shop;

#[weft::service(name = "shop")]
impl Shop {
    #[event_handler]
    async fn no_topic(&self, order: u64) {
        let _ = order;
    }

    #[event_handler(topic = "orders.created", mode = "fanout")]
    async fn unknown_mode(&self, order: u64) {
        let _ = order;
    }

    #[event_handler(topic = "orders.created", mode = "broadcast", ordered_by = "customer")]
    async fn broadcast_in_order(&self, order: u64) {
        let _ = order;
    }

    #[event_handler(topic = "orders.created", max_attempts = 0)]
    async fn never_tried(&self, order: u64) {
        let _ = order;
    }

    #[event_handler(topic = "orders.created", retries = 3)]
    async fn unknown_option(&self, order: u64) {
        let _ = order;
    }

    #[entrypoint]
    #[event_handler(topic = "orders.created")]
    async fn both(&self, order: u64) {
        let _ = order;
    }
}

fn main() {}
