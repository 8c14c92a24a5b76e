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
    allow_tracing_by_any();
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or(false);
    // SAFETY: ends this forked process at once, as a child of a threaded parent must.
    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
}

/// Lets any process of this user attach a debugger to this one (under Yama's
/// `ptrace_scope` 1 only ancestors may, and the debugger [`wait_forked`] starts is a sibling).
fn allow_tracing_by_any() {
    #[cfg(target_os = "linux")]
    // SAFETY: a plain system call on this process, async-signal-safe.
    unsafe {
        libc::prctl(libc::PR_SET_PTRACER, libc::PR_SET_PTRACER_ANY, 0, 0, 0);
    }
}

/// How long the debugger may take to print a hung child's stacks.
const GDB_BOUND: Duration = Duration::from_secs(60);

/// Every thread's stack in process `pid`, for the report of a child that hung: gdb's
/// backtraces when gdb is installed and can attach, otherwise what the kernel shows of each
/// thread (its name, state, wait channel, system call and kernel stack).
pub fn stacks_of(pid: libc::pid_t) -> String {
    let mut report = String::new();
    match gdb_backtraces(pid) {
        Ok(out) => report.push_str(&out),
        Err(why) => report.push_str(&format!("(no gdb backtraces: {why})\n")),
    }
    report.push_str(&kernel_view(pid));
    report
}

fn gdb_backtraces(pid: libc::pid_t) -> Result<String, String> {
    let mut gdb = Command::new("gdb")
        .args([
            "-batch",
            "-nx",
            "-p",
            &pid.to_string(),
            "-ex",
            "thread apply all bt",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("gdb: {e}"))?;
    let deadline = Instant::now() + GDB_BOUND;
    loop {
        match gdb.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = gdb.kill();
                break;
            }
        }
    }
    let out = gdb.wait_with_output().map_err(|e| format!("gdb: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if text.contains("Thread ") || text.contains("#0 ") {
        Ok(text)
    } else {
        Err(text)
    }
}

/// Per thread of `pid`: `/proc/PID/task/TID/{comm,status State,wchan,syscall,stack}`.
fn kernel_view(pid: libc::pid_t) -> String {
    let read = |path: String| {
        std::fs::read_to_string(&path).unwrap_or_else(|e| format!("({path}: {e})\n"))
    };
    let mut out = format!(
        "--- /proc/{pid}/status ---\n{}",
        read(format!("/proc/{pid}/status"))
    );
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    let mut tids: Vec<String> = tasks
        .filter_map(|t| t.ok().map(|t| t.file_name().to_string_lossy().into_owned()))
        .collect();
    tids.sort();
    for tid in tids {
        let task = format!("/proc/{pid}/task/{tid}");
        let state = read(format!("{task}/status"))
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or("State: ?")
            .to_owned();
        out.push_str(&format!(
            "--- thread {tid} ({}) {state}, wchan {}\nsyscall: {}{}",
            read(format!("{task}/comm")).trim(),
            read(format!("{task}/wchan")).trim(),
            read(format!("{task}/syscall")),
            read(format!("{task}/stack")),
        ));
    }
    out
}

/// The child's exit status, or `None` when it did not exit within `bound`: its stacks are
/// printed to stderr (see [`stacks_of`]) and it is killed.
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
            eprintln!(
                "forked child {pid} still running after {bound:?}; its stacks:\n{}",
                stacks_of(pid)
            );
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
