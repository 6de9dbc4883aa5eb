//! Events in a service: the handler specs `#[event_handler]` builds, how the
//! generated `dispatch_event` decodes and runs them, the topics declared in
//! `publishes(..)`, and publishing and handling in the test mesh.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use weft::prelude::*;
use weft::testing::Mesh;
use weft::{Code, Service};

/// An order was placed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct OrderCreated {
    /// The order.
    pub(crate) order: u64,
    /// Who placed it.
    pub(crate) customer: String,
}

/// An invoice was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub(crate) struct InvoiceSent {
    /// The order it bills.
    pub(crate) order: u64,
}

/// Why billing failed.
#[derive(Debug, Serialize)]
pub(crate) enum BillingError {
    /// The customer has no address.
    NoAddress,
}

impl std::fmt::Display for BillingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the customer has no billing address")
    }
}

/// A service with every kind of event handler.
#[derive(Debug, Default)]
pub(crate) struct Billing {
    seen: Mutex<Vec<(String, u64)>>,
    audits: AtomicU32,
    /// (order, event id, attempt) of each event `bill` handled.
    billed: Mutex<Vec<(u64, u64, u32)>>,
}

/// Bills orders.
#[weft::service(
    name = "billing",
    publishes("invoices.sent" = InvoiceSent, "billing.audited" = u32)
)]
impl Billing {
    /// Bills a new order and announces the invoice.
    #[event_handler(topic = "orders.created", ordered_by = "customer", max_attempts = 3)]
    async fn bill(&self, ctx: &Context, event: OrderCreated) -> weft::Result<()> {
        self.seen.lock().push(("bill".into(), event.order));
        if let Some(e) = ctx.event() {
            assert_eq!(e.topic, "orders.created");
            self.billed.lock().push((event.order, e.id, e.attempt));
        }
        ctx.publish("invoices.sent", &InvoiceSent { order: event.order })
            .await?;
        Ok(())
    }

    /// Counts every order on every instance.
    #[event_handler(topic = "orders.created", mode = "broadcast")]
    async fn audit(&self, event: OrderCreated) {
        let _ = event;
        self.audits.fetch_add(1, Ordering::SeqCst);
    }

    /// Fails for customer `nobody`, panics for `panic`.
    #[event_handler(topic = "orders.cancelled", mode = "pool")]
    async fn refund(&self, event: OrderCreated, _ctx: &weft::Context) -> Result<(), BillingError> {
        match event.customer.as_str() {
            "nobody" => Err(BillingError::NoAddress),
            "panic" => panic!("refund of order {} exploded", event.order),
            _ => {
                self.seen.lock().push(("refund".into(), event.order));
                Ok(())
            }
        }
    }

    /// An ordinary entrypoint next to the handlers.
    #[entrypoint]
    async fn audits(&self) -> u32 {
        self.audits.load(Ordering::SeqCst)
    }

    /// What `bill` saw of each event: (order, event id, attempt).
    #[entrypoint]
    async fn billed(&self, ctx: &Context) -> Vec<(u64, u64, u32)> {
        assert!(ctx.event().is_none(), "a call is not an event");
        self.billed.lock().clone()
    }
}

fn order(order: u64, customer: &str) -> Value {
    json!({ "order": order, "customer": customer })
}

async fn dispatch(service: &Arc<Billing>, handler: &str, payload: Value) -> weft::Result<()> {
    let ctx = Mesh::new().context();
    let fut = Service::dispatch_event(service.clone(), handler, ctx, payload)
        .unwrap_or_else(|| panic!("no handler `{handler}`"));
    fut.await
}

#[test]
fn spec_lists_handlers_and_published_topics() {
    let spec = Billing::spec();
    assert_eq!(spec.entrypoints.len(), 2);
    let names: Vec<_> = spec
        .event_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(names, ["bill", "audit", "refund"]);

    let bill = &spec.event_handlers[0];
    assert_eq!(bill.topic, "orders.created");
    assert_eq!(bill.mode, "ordered");
    assert_eq!(bill.ordered_by.as_deref(), Some("customer"));
    assert_eq!(bill.max_attempts, 3);
    assert_eq!(
        bill.description,
        "Bills a new order and announces the invoice."
    );
    assert_eq!(bill.payload["properties"]["customer"]["type"], "string");
    assert_eq!(bill.payload["description"], "An order was placed.");

    let audit = &spec.event_handlers[1];
    assert_eq!(
        (audit.mode.as_str(), audit.ordered_by.as_deref()),
        ("broadcast", None)
    );
    assert_eq!(audit.max_attempts, 5, "the default number of attempts");
    assert_eq!(spec.event_handlers[2].mode, "pool");

    let topics: Vec<_> = spec.publishes.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(topics, ["invoices.sent", "billing.audited"]);
    assert_eq!(spec.publishes[0].description, "An invoice was sent.");
    assert_eq!(
        spec.publishes[0].payload["properties"]["order"]["type"],
        "integer"
    );
    assert_eq!(spec.publishes[1].payload["type"], "integer");
}

#[tokio::test]
async fn dispatch_event_decodes_and_runs_the_handler() {
    let billing = Arc::new(Billing::default());
    dispatch(&billing, "audit", order(1, "ada")).await.unwrap();
    dispatch(&billing, "refund", order(2, "ada")).await.unwrap();
    assert_eq!(billing.audits.load(Ordering::SeqCst), 1);
    assert_eq!(*billing.seen.lock(), [("refund".to_owned(), 2)]);
    let ctx = Mesh::new().context();
    assert!(Service::dispatch_event(billing.clone(), "nope", ctx, json!({})).is_none());
}

#[tokio::test]
async fn a_bad_event_or_an_err_fails_the_delivery() {
    let billing = Arc::new(Billing::default());
    let err = dispatch(&billing, "audit", json!({ "order": "seven" }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("`orders.created`")
            && err.message().contains("`OrderCreated`")
            && err.message().contains("`audit`"),
        "{err}"
    );
    let err = dispatch(&billing, "refund", order(3, "nobody"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Application);
    assert_eq!(err.kind(), Some("NoAddress"));
    assert_eq!(err.message(), "the customer has no billing address");
}

#[tokio::test]
async fn the_mesh_delivers_to_every_handler_of_the_topic() {
    let mesh = Mesh::new();
    mesh.add(Billing::default());
    // `bill` and `audit` both take orders.created.
    assert_eq!(
        mesh.publish("orders.created", &order(7, "ada"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        mesh.call::<_, u32>("billing", "audits", ()).await.unwrap(),
        1
    );
    assert_eq!(mesh.publish("nothing.here", &json!({})).await.unwrap(), 0);
}

#[tokio::test]
async fn the_mesh_records_what_services_publish() {
    let mesh = Mesh::new();
    mesh.add(Billing::default());
    mesh.publish("orders.created", &order(7, "ada"))
        .await
        .unwrap();
    mesh.publish("orders.created", &order(8, "bob"))
        .await
        .unwrap();
    assert_eq!(
        mesh.published_on("invoices.sent"),
        [json!({ "order": 7 }), json!({ "order": 8 })]
    );
    let all = mesh.published();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1].id, 2);
    assert_eq!(all[1].publisher.as_deref(), Some("billing"));
    // What the test itself publishes is delivered, not recorded.
    assert!(mesh.published_on("orders.created").is_empty());
    // Handlers see each event's id in its topic and the attempt.
    assert_eq!(
        mesh.call::<_, Vec<(u64, u64, u32)>>("billing", "billed", ())
            .await
            .unwrap(),
        [(7, 1, 1), (8, 2, 1)]
    );
}

#[tokio::test]
async fn handler_failures_and_panics_come_back_from_publish() {
    let mesh = Mesh::new();
    mesh.add(Billing::default());
    let err = mesh
        .publish("orders.cancelled", &order(1, "nobody"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Application);
    assert_eq!(
        (err.service(), err.entrypoint()),
        (Some("billing"), Some("refund"))
    );

    let err = mesh
        .publish("orders.cancelled", &order(2, "panic"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(
        err.message()
            .contains("billing.refund panicked: refund of order 2 exploded"),
        "{err}"
    );
}

#[tokio::test]
async fn publishing_from_a_context_validates_and_deduplicates() {
    let mesh = Mesh::new();
    let ctx = mesh.context();
    let first = ctx
        .publish("orders.created", &order(1, "ada"))
        .await
        .unwrap();
    let again = ctx
        .publish_with("orders.created")
        .idempotency_key("o-2")
        .send(&order(2, "ada"))
        .await
        .unwrap();
    let dup = ctx
        .publish_with("orders.created")
        .idempotency_key("o-2")
        .send(&order(2, "ada"))
        .await
        .unwrap();
    assert_eq!((first, again, dup), (1, 2, 2));
    assert_eq!(mesh.published().len(), 2);
    assert_eq!(mesh.published()[0].publisher, None);

    let err = ctx.publish("Orders Created", &1).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.field(), Some("topic"));
}
