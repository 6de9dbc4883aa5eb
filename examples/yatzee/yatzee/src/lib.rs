//! The yatzee game of the tutorial: throws five dice by calling `die_roller`.

use weft::prelude::*;

/// Plays yatzee.
#[derive(Debug, Default)]
pub struct Yatzee;

/// Plays yatzee with dice from the `die_roller` service.
#[weft::service(name = "yatzee")]
impl Yatzee {
    /// Throw five dice; notify on all sixes.
    #[entrypoint]
    async fn play(&self, ctx: &Context) -> weft::Result<Vec<u8>> {
        let mut rolls = Vec::new();
        for _ in 0..5 {
            rolls.push(ctx.call("die_roller", "roll_die", ()).await?);
        }
        if rolls.iter().all(|&r| r == 6) {
            ctx.notify(Severity::Info, "YATZEE!!!").await?;
        }
        rolls.sort();
        Ok(rolls)
    }
}

#[cfg(test)]
mod tests {
    use weft::testing::Mesh;

    use super::*;

    #[tokio::test]
    async fn five_sixes_is_a_yatzee() {
        let mesh = Mesh::new();
        mesh.add(Yatzee);
        mesh.mock("die_roller").on("roll_die", |_| 6);
        let rolls: Vec<u8> = mesh.call("yatzee", "play", ()).await.unwrap();
        assert_eq!(rolls, [6, 6, 6, 6, 6]);
        let notes = mesh.notifications();
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].message, "YATZEE!!!");
        assert_eq!(notes[0].severity, Severity::Info);
        assert_eq!(notes[0].service, "yatzee");
    }

    #[tokio::test]
    async fn no_notification_without_a_yatzee() {
        let mesh = Mesh::new();
        mesh.add(Yatzee);
        let rolls = std::sync::atomic::AtomicU8::new(0);
        mesh.mock("die_roller").on("roll_die", move |_| {
            rolls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 6 + 1
        });
        let rolls: Vec<u8> = mesh.call("yatzee", "play", ()).await.unwrap();
        assert_eq!(rolls, [1, 2, 3, 4, 5]);
        assert!(mesh.notifications().is_empty());
    }

    #[tokio::test]
    async fn a_failing_die_roller_fails_the_game() {
        let mesh = Mesh::new();
        mesh.add(Yatzee);
        mesh.mock("die_roller").on_result("roll_die", |_| {
            Err::<u8, _>(weft::Error::unavailable("table is gone"))
        });
        let err = mesh
            .call::<_, Vec<u8>>("yatzee", "play", ())
            .await
            .unwrap_err();
        assert_eq!(err.code(), weft::Code::Unavailable);
        assert_eq!(err.service(), Some("die_roller"));
    }
}
