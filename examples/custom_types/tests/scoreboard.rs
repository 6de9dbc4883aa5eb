//! The scoreboard's own types cross calls, appear in its spec with their
//! schemas, and a wrong argument is answered in their terms.

use custom_types::{Outcome, Score, Scoreboard, Standing};
use weft::serde_json::json;
use weft::testing::Mesh;
use weft::{Code, Service};

#[tokio::test]
async fn own_types_cross_calls() {
    let mesh = Mesh::new();
    mesh.add(Scoreboard::default());
    let score = Score {
        player: "ada".into(),
        points: 120,
        outcome: Outcome::Finished,
    };
    let standing: Standing = mesh
        .call("scoreboard", "record", json!({ "score": score }))
        .await
        .unwrap();
    assert_eq!(standing.total, 120);
    // `#[serde(default)]` and `rename_all` below `#[weft::data]` apply.
    let _: Standing = mesh
        .call(
            "scoreboard",
            "record",
            json!({ "score": { "player": "bob", "points": 90 } }),
        )
        .await
        .unwrap();
    let _: Standing = mesh
        .call(
            "scoreboard",
            "record",
            json!({ "score": { "player": "ada", "points": 7, "outcome": "resigned" } }),
        )
        .await
        .unwrap();
    let standings: Vec<Standing> = mesh.call("scoreboard", "standings", ()).await.unwrap();
    assert_eq!(
        standings,
        [
            Standing {
                player: "ada".into(),
                total: 120
            },
            Standing {
                player: "bob".into(),
                total: 90
            },
        ]
    );
}

#[tokio::test]
async fn a_wrong_argument_is_answered_in_the_types_terms() {
    let mesh = Mesh::new();
    mesh.add(Scoreboard::default());
    let err = mesh
        .call::<_, Standing>(
            "scoreboard",
            "record",
            json!({ "score": { "player": "ada", "points": 400.5 } }),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.field(), Some("score"));
    assert_eq!(
        err.message(),
        r#"parameter `score` expects `Score { outcome: Outcome, player: String, points: u16 }`, got an object {"player":"ada","points":400.5} (at `points`: invalid type: floating point `400.5`, expected u16)"#
    );
}

#[test]
fn the_spec_carries_the_schemas_and_doc_comments() {
    let spec = Scoreboard::spec();
    let record = spec.entrypoint("record").unwrap();
    let schema = &record.params[0].schema;
    assert_eq!(schema["title"], "Score");
    assert_eq!(schema["description"], "One player's result in a round.");
    assert_eq!(schema["properties"]["points"]["format"], "uint16");
    assert_eq!(
        schema["$defs"]["Outcome"]["oneOf"][1]["const"], "resigned",
        "{schema:#}"
    );
    assert_eq!(record.result["title"], "Standing");
    assert_eq!(
        record.result["properties"]["total"]["description"],
        "Points over every round recorded."
    );
}
