//! Child processes for tests: the test binary run again with `FRAMECACHE_CHILD` naming its
//! role (an ignored `child` test dispatches on it); a child prints one `RESULT {json}` line.

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The environment variable naming a child's role.
pub const CHILD_ENV: &str = "FRAMECACHE_CHILD";

/// A variable the parent must have set for the child.
pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child needs {name}"))
}

/// The command that runs this test binary's `child` test in role `role`.
pub fn spawn_child(role: &str, envs: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, role)
    .env_remove("RUST_LOG")
    .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd
}

/// Runs a child to completion and returns its result line and its stderr.
pub fn run_child(role: &str, envs: &[(&str, String)]) -> (Value, String) {
    let out = spawn_child(role, envs).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "child {role} failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (result_of(&stdout), stderr)
}

/// The JSON of a child's `RESULT` line.
pub fn result_of(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("RESULT ").map(|(_, json)| json))
        .unwrap_or_else(|| panic!("no RESULT line in:\n{stdout}"));
    serde_json::from_str(line).unwrap()
}

/// Runs `work` in the forked child and ends the child with its verdict, never returning
/// into the test harness (no destructors, no atexit: `_exit`).
pub fn exit_forked(work: impl FnOnce() -> bool) -> ! {
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or(false);
    // SAFETY: ends this forked process at once, as a child of a threaded parent must.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

/// The child's exit status, or `None` when it did not exit within `bound` (it is killed).
pub fn wait_forked(pid: libc::pid_t, bound: Duration) -> Option<i32> {
    let deadline = Instant::now() + bound;
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid out pointer.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(done >= 0, "waitpid: {}", std::io::Error::last_os_error());
        if done == pid {
            return Some(if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                -1
            });
        }
        if Instant::now() >= deadline {
            // SAFETY: kills and reaps our own child, which hung.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
