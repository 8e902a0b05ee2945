//! CPU time from `/proc`: of this process, and of the calling thread (the load client runs on a
//! thread of its own, so its share can be told apart from the server's).

use std::time::Duration;

/// utime + stime of a `/proc/…/stat` file.
fn from_stat(path: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

pub fn this_thread() -> Duration {
    from_stat("/proc/thread-self/stat").unwrap_or_default()
}

pub fn this_process() -> Duration {
    from_stat("/proc/self/stat").unwrap_or_default()
}

/// Another process's (a server started by the bench).
pub fn of_process(pid: u32) -> Duration {
    from_stat(&format!("/proc/{pid}/stat")).unwrap_or_default()
}
