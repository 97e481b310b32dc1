//! The servers this run starts: a free loopback port each, readiness by polling, resident memory
//! from `/proc`, and a guard that stops the process (and its children) however the run ends.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped, with its whole
/// process group, so that workers it forked go too.
pub struct Server {
    pub name: &'static str,
    child: Child,
}

impl Server {
    /// Starts `command` in a process group of its own.
    pub fn start(name: &'static str, mut command: Command) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
        let child = command.spawn().with_context(|| format!("cannot start {name} ({command:?})"))?;
        Ok(Self { name, child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has already exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early ({status})", self.name);
        }
        Ok(())
    }
}

/// Resident memory of a process and its descendants (a server that forks workers).
pub fn tree_memory(pid: u32) -> Option<Memory> {
    let mut total = Memory::default();
    for pid in descendants(pid) {
        if let Some(m) = Memory::of(pid) {
            total.rss_kib += m.rss_kib;
            total.peak_kib += m.peak_kib;
        }
    }
    (total.rss_kib > 0).then_some(total)
}

impl Drop for Server {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// `VmRSS` and `VmHWM` (the peak) of a process, in KiB.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

impl Memory {
    pub fn of(pid: u32) -> Option<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<u64>().ok())
        };
        Some(Self { rss_kib: field("VmRSS:")?, peak_kib: field("VmHWM:").unwrap_or(0) })
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn peak_mib(&self) -> f64 {
        self.peak_kib as f64 / 1024.0
    }
}

/// CPU time (user + system, in clock ticks) used so far by `pid` and its descendants.
fn tree_cpu_ticks(pid: u32) -> u64 {
    descendants(pid)
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name (field 2) may hold spaces: count fields after its closing parenthesis,
            // where utime and stime are the 12th and 13th.
            let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
            let utime: u64 = fields.next()?.parse().ok()?;
            let stime: u64 = fields.next()?.parse().ok()?;
            Some(utime + stime)
        })
        .sum()
}

/// Waits until the servers `pids` (with their children) are idle: less than 4 % of a core over
/// half a second, so that work queued by one measurement (a backlog of requests, usage batches,
/// read-model updates) is not paid for by the next one. Gives up after `timeout`; returns how
/// long it waited and whether they settled.
pub async fn settle(pids: &[u32], timeout: Duration) -> (Duration, bool) {
    const WINDOW: Duration = Duration::from_millis(500);
    // Clock ticks are 10 ms on Linux (USER_HZ = 100): 2 ticks in 500 ms is 4 % of a core.
    const IDLE_TICKS: u64 = 2;
    let started = Instant::now();
    let mut before: Vec<u64> = pids.iter().map(|&pid| tree_cpu_ticks(pid)).collect();
    loop {
        tokio::time::sleep(WINDOW).await;
        let now: Vec<u64> = pids.iter().map(|&pid| tree_cpu_ticks(pid)).collect();
        let idle = now.iter().zip(&before).all(|(now, before)| now.saturating_sub(*before) <= IDLE_TICKS);
        if idle || started.elapsed() >= timeout {
            return (started.elapsed(), idle);
        }
        before = now;
    }
}

/// `pid` and every process below it (from `/proc/<pid>/task/<tid>/children`).
fn descendants(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", all[i])).into_iter().flatten().flatten();
        for task in tasks {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(children.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
        i += 1;
    }
    all
}

/// Polls `url` until it answers 2xx, the server exits, or `timeout` passes.
pub async fn wait_ready(server: &mut Server, url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        server.check_running()?;
        if let Ok(response) = client.get(url).timeout(Duration::from_secs(2)).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{} did not answer {url} within {timeout:?}", server.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
