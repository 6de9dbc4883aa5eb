//! The orphan scan: a host killed before it could stop its instances left
//! them running; the next host on the data dir finds them by the tag in
//! their environment and kills them before it starts its own.

use super::instance;

/// Kills instances a previous host on this data dir left behind (it was
/// killed before it could stop them): they would register again and
/// collide with the instances started now.
pub(super) fn kill_orphans(tag: &str) {
    let needle = format!("{}={tag}\0", instance::SUPERVISOR_ENV);
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid as u32 == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let mut with_nul = environ;
        with_nul.push(0);
        if with_nul
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
        {
            tracing::warn!(pid, "killing an instance a previous host left running");
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}
