//! Events: what `/api/v1/events` shows of topics, groups, tails and dead letters.
//!
//! ```
//! use weft_host_api::events::TopicInfo;
//!
//! let body = r#"[{"topic": "orders.created", "events": 2, "first_id": 1, "last_id": 2,
//!     "bytes": 120, "rate_per_min": 2, "groups": [{"group": "billing.on_order",
//!     "service": "billing", "handler": "on_order", "mode": {"mode": "pool"},
//!     "position": 2, "backlog": 0, "in_flight": 0, "dead": 0,
//!     "subscribers": ["billing-1.0.0-1"]}]}]"#;
//! let topics: Vec<TopicInfo> = serde_json::from_str(body).unwrap();
//! assert_eq!(topics[0].groups[0].instance, None);
//! ```

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::wire::DeliveryMode;

/// What `GET /api/v1/events/topics` shows of a topic: it answers a list of
/// these, ordered by topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopicInfo {
    /// The topic, like `orders.created`.
    pub topic: String,
    /// How many events it keeps.
    pub events: u64,
    /// The oldest event it keeps.
    pub first_id: u64,
    /// The newest event (0 before the first publish).
    pub last_id: u64,
    /// The bytes of its segment files.
    pub bytes: u64,
    /// Events published in the last minute.
    pub rate_per_min: u64,
    /// Its consumer groups.
    pub groups: Vec<GroupInfo>,
}

/// What `GET /api/v1/events/topics` shows of a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupInfo {
    /// `service.handler`, or `service.handler@instance` for broadcast.
    pub group: String,
    /// The service whose handler this is.
    pub service: String,
    /// The handler.
    pub handler: String,
    /// For broadcast: the instance this group delivers to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// How events are spread over the instances.
    pub mode: DeliveryMode,
    /// Every event up to this id is acknowledged or dead-lettered.
    pub position: u64,
    /// Events after the position not acknowledged yet.
    pub backlog: u64,
    /// Events delivered and not acknowledged yet.
    pub in_flight: usize,
    /// Dead letters of this group not being replayed.
    pub dead: u64,
    /// The instances subscribed right now.
    pub subscribers: Vec<String>,
}

/// One event as `GET /api/v1/events/topics/{topic}/tail` shows it, one JSON
/// object per line (`application/x-ndjson`).
///
/// ```
/// use weft_host_api::events::TailEvent;
///
/// let e = TailEvent {
///     id: 7,
///     published_ms: 1_795_348_578_000,
///     idempotency_key: None,
///     payload: serde_json::json!({"order": 7}),
/// };
/// assert_eq!(
///     serde_json::to_string(&e).unwrap(),
///     r#"{"id":7,"published_ms":1795348578000,"payload":{"order":7}}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TailEvent {
    /// The event's id in its topic.
    pub id: u64,
    /// When it was published, in milliseconds since the Unix epoch.
    pub published_ms: u64,
    /// The key it was published with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The event.
    pub payload: serde_json::Value,
}

/// An event a consumer group gave up on: `GET /api/v1/events/dead` answers
/// a list of these, ordered by topic and id.
///
/// ```
/// use weft_host_api::events::DeadLetter;
///
/// let d: DeadLetter = serde_json::from_str(
///     r#"{"topic": "orders.created", "id": 7, "group": "billing.on_order",
///         "attempts": 5, "error": "card declined", "time_ms": 1795348578000}"#,
/// )
/// .unwrap();
/// assert!(!d.replaying);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DeadLetter {
    /// The topic.
    pub topic: String,
    /// The event's id in its topic.
    pub id: u64,
    /// `service.handler`, or `service.handler@instance` for broadcast.
    pub group: String,
    /// How often it was delivered.
    pub attempts: u32,
    /// The error of the last attempt.
    pub error: String,
    /// When the group gave up, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// Whether a replay is delivering it again right now.
    #[serde(default)]
    pub replaying: bool,
}

/// The body of `POST /api/v1/events/replay`: one dead letter (`id`) or
/// every one of the topic (`all`).
///
/// ```
/// use weft_host_api::events::ReplayRequest;
///
/// let r: ReplayRequest = serde_json::from_str(r#"{"topic": "orders.created", "all": true}"#).unwrap();
/// assert_eq!((r.id, r.all), (None, true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// The topic of the dead letters.
    pub topic: String,
    /// The one dead letter to deliver again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Deliver every dead letter of the topic again.
    #[serde(default)]
    pub all: bool,
}

/// What `POST /api/v1/events/replay` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Replayed {
    /// How many dead letters went back to their groups.
    pub replayed: usize,
}

/// The body of `POST /api/v1/events/publish`; the host answers with a
/// [`Published`](crate::wire::Published).
///
/// ```
/// use weft_host_api::events::PublishRequest;
///
/// let r: PublishRequest =
///     serde_json::from_str(r#"{"topic": "orders.created", "payload": {"order": 7}}"#).unwrap();
/// assert_eq!(r.idempotency_key, None);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The topic, a name like `orders.created`.
    pub topic: String,
    /// The event, as JSON.
    pub payload: serde_json::Value,
    /// A publish with the same key as one stored within the host's
    /// deduplication window is dropped, and answered with the first one's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broadcast_group_names_its_instance_and_a_pool_group_does_not() {
        let mut g = GroupInfo {
            group: "s.h".into(),
            service: "s".into(),
            handler: "h".into(),
            instance: None,
            mode: DeliveryMode::Pool,
            position: 1,
            backlog: 2,
            in_flight: 3,
            dead: 4,
            subscribers: vec!["s-1".into()],
        };
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"group":"s.h","service":"s","handler":"h","mode":{"mode":"pool"},"position":1,"backlog":2,"in_flight":3,"dead":4,"subscribers":["s-1"]}"#
        );
        g.instance = Some("s-1".into());
        g.mode = DeliveryMode::Broadcast;
        let json = serde_json::to_string(&g).unwrap();
        assert!(json.contains(r#""instance":"s-1","mode":{"mode":"broadcast"}"#));
        assert_eq!(serde_json::from_str::<GroupInfo>(&json).unwrap(), g);
    }

    #[test]
    fn a_dead_letter_keeps_its_wire_form() {
        let d = DeadLetter {
            topic: "t".into(),
            id: 7,
            group: "s.h".into(),
            attempts: 5,
            error: "boom".into(),
            time_ms: 9,
            replaying: false,
        };
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"topic":"t","id":7,"group":"s.h","attempts":5,"error":"boom","time_ms":9,"replaying":false}"#
        );
    }

    #[test]
    fn the_delivery_mode_schema_is_tagged_by_mode() {
        let schema = serde_json::to_string(&schemars::schema_for!(GroupInfo)).unwrap();
        assert!(schema.contains("ordered"), "{schema}");
        assert!(schema.contains(r#""mode""#), "{schema}");
    }
}
