//! The tutorial end to end: a real host, `die_roller`
//! and `yatzee` as separate processes, games played by a program, by the CLI
//! and by `weft demo`.

use serde_json::Value;
use weft_test_support::{Weft, text, wait_instances};

use crate::{WEFT, start_host, tutorial};

fn assert_game(rolls: &[u8]) {
    assert_eq!(rolls.len(), 5, "a game throws five dice: {rolls:?}");
    assert!(
        rolls.iter().all(|r| (1..=6).contains(r)),
        "dice show 1 to 6: {rolls:?}"
    );
    assert!(rolls.is_sorted(), "the result is sorted: {rolls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn yatzee_plays_across_processes() {
    let host = start_host().await;
    let _die_roller = tutorial(&host, "die_roller");
    let _yatzee = tutorial(&host, "yatzee");
    let watcher = host.client().await;
    wait_instances(&watcher, "die_roller", None, 1).await;
    wait_instances(&watcher, "yatzee", None, 1).await;

    // A client that connects now starts from a snapshot with both services.
    let client = host.client().await;
    let mut seen = [false; 7];
    for game in 0..100 {
        let rolls: Vec<u8> = client
            .call("yatzee", "play", ())
            .await
            .unwrap_or_else(|e| panic!("game {game} failed: {e}"));
        assert_game(&rolls);
        for r in rolls {
            seen[r as usize] = true;
        }
    }
    // 500 fair dice show every face (a miss has probability < 1e-38).
    assert!(seen[1..].iter().all(|s| *s), "faces seen: {seen:?}");

    let out = host.weft(&["call", "yatzee", "play"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("`weft call` printed no JSON ({e}): {}", text(&out.stdout)));
    let rolls: Vec<u8> = serde_json::from_value(printed.clone())
        .unwrap_or_else(|e| panic!("not an array of dice ({e}): {printed}"));
    assert_game(&rolls);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_demo_plays_the_requested_games() {
    let out = Weft::new(WEFT)
        .host("127.0.0.1:1")
        .run(&["demo", "--listen", "127.0.0.1:0", "--once", "--games", "2"])
        .await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        text(&out.stderr)
    );
    let games: Vec<Vec<u8>> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("yatzee.play → "))
        .map(|rolls| serde_json::from_str(rolls).unwrap_or_else(|e| panic!("{rolls:?} ({e})")))
        .collect();
    assert_eq!(games.len(), 2, "{stdout}");
    for rolls in &games {
        assert_game(rolls);
    }
}
