//! What the machine's TCP table says about the sockets a test left.

/// Sockets on this machine in CLOSE-WAIT (the peer closed, this side did
/// not close) whose remote end is one of `ports` on 127.0.0.1: sockets a
/// caller keeps to peers that went away.
///
/// ```
/// // Nothing has talked to port 1.
/// assert_eq!(weft_test_support::close_wait_to(&[1]), 0);
/// ```
pub fn close_wait_to(ports: &[u16]) -> usize {
    let remotes: Vec<String> = ports.iter().map(|p| format!("0100007F:{p:04X}")).collect();
    std::fs::read_to_string("/proc/net/tcp")
        .expect("/proc/net/tcp lists the machine's TCP sockets")
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // 08 is TCP_CLOSE_WAIT.
            cols.len() > 3 && remotes.iter().any(|r| r == cols[2]) && cols[3] == "08"
        })
        .count()
}
