pub struct Shop;

impl Shop {
    #[weft::event_handler(topic = "orders.created")]
    pub async fn on_order(&self, order: u64) {
        let _ = order;
    }
}

fn main() {}
