//! The results of a run, as JSON (everything) and as the Markdown tables the README quotes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::{Run, Shape};
use crate::process::Memory;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Self {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        })
    }

    /// What `self` (through a proxy) adds to `direct`, percentile by percentile.
    fn minus(&self, direct: &Self) -> Self {
        Self {
            p50_ms: self.p50_ms - direct.p50_ms,
            p90_ms: self.p90_ms - direct.p90_ms,
            p99_ms: self.p99_ms - direct.p99_ms,
            p999_ms: self.p999_ms - direct.p999_ms,
            max_ms: self.max_ms - direct.max_ms,
            mean_ms: self.mean_ms - direct.mean_ms,
        }
    }
}

/// One scenario against one target.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub target: String,
    pub planned: usize,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed_s: f64,
    pub throughput_rps: f64,
    pub latency: Option<Percentiles>,
    /// Time to the first body bytes (the first event of a stream).
    pub first_byte: Option<Percentiles>,
    /// The target server's memory right after the scenario (not known for `direct`).
    pub memory: Option<Memory>,
    pub loadavg: String,
}

impl Measurement {
    pub fn new(target: &str, run: &Run, memory: Option<Memory>) -> Self {
        let elapsed = run.elapsed.as_secs_f64();
        Self {
            target: target.to_owned(),
            planned: run.planned,
            ok: run.recorder.ok,
            errors: run.recorder.errors.clone(),
            elapsed_s: elapsed,
            throughput_rps: if elapsed > 0.0 { run.recorder.ok as f64 / elapsed } else { 0.0 },
            latency: Percentiles::of(&run.recorder.latency),
            first_byte: Percentiles::of(&run.recorder.first_byte),
            memory,
            loadavg: loadavg(),
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// What a proxy adds over the direct call in one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Added {
    pub target: String,
    pub latency: Percentiles,
    pub first_byte: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub description: String,
    pub shape: Shape,
    pub stream: bool,
    pub upstream_latency_ms: u64,
    pub measurements: Vec<Measurement>,
    pub added: Vec<Added>,
}

impl ScenarioResult {
    /// Fills `added` from the `direct` measurement.
    pub fn compute_added(&mut self) {
        let Some(direct) = self.measurements.iter().find(|m| m.target == "direct").cloned() else { return };
        let Some(direct_latency) = direct.latency else { return };
        self.added = self
            .measurements
            .iter()
            .filter(|m| m.target != "direct")
            .filter_map(|m| {
                Some(Added {
                    target: m.target.clone(),
                    latency: m.latency?.minus(&direct_latency),
                    first_byte: m.first_byte.zip(direct.first_byte).map(|(p, d)| p.minus(&d)),
                })
            })
            .collect();
    }

    fn added_for(&self, target: &str) -> Option<&Added> {
        self.added.iter().find(|a| a.target == target)
    }
}

/// Memory over a long run.
#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    pub seconds: u64,
    pub rate: u32,
    pub ok: u64,
    pub errors: u64,
    /// (seconds since the soak started, RSS in MiB).
    pub rss_mib: Vec<(u64, f64)>,
    pub latency: Option<Percentiles>,
}

/// The server's own account of what it added (`keyguard_proxy_added_latency_seconds`).
#[derive(Debug, Clone, Serialize)]
pub struct ServerSide {
    pub count: u64,
    /// Upper bounds of the buckets holding the 50th and 99th percentiles.
    pub p50_le_ms: Option<f64>,
    pub p99_le_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub started_at: String,
    pub machine: Machine,
    pub settings: serde_json::Value,
    pub notes: Vec<String>,
    pub idle_memory: BTreeMap<String, Memory>,
    pub scenarios: Vec<ScenarioResult>,
    pub soak: Option<Soak>,
    pub keyguard_server_side: Option<ServerSide>,
    pub loadavg_before: String,
    pub loadavg_after: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory: String,
    pub kernel: String,
    pub commit: String,
}

impl Machine {
    pub fn this() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpu = read("/proc/cpuinfo")
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_default();
        let memory = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kib| format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
            .unwrap_or_default();
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            commit,
        }
    }
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn ms(v: f64) -> String {
    if v.abs() < 10.0 { format!("{v:.3}") } else { format!("{v:.1}") }
}

fn ratio(ours: f64, theirs: f64) -> String {
    if ours > 0.0 && theirs > 0.0 { format!("{:.3}", ours / theirs) } else { "–".to_owned() }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(out, "# keyguard-bench results\n");
        let _ = writeln!(
            out,
            "Run {} on {} ({} cores, {}), Linux {}, commit `{}`. Load average before {}, after {}.\n",
            self.started_at,
            m.cpu,
            m.cores,
            m.memory,
            m.kernel,
            m.commit,
            self.loadavg_before,
            self.loadavg_after
        );
        for note in &self.notes {
            let _ = writeln!(out, "- {note}");
        }
        let _ = writeln!(out, "\n## Added latency (through the proxy minus direct, ms)\n");
        let _ = writeln!(
            out,
            "| scenario | KeyGuard p50 | p90 | p99 | max | LiteLLM p50 | p90 | p99 | max | KeyGuard/LiteLLM p99 |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
        for s in &self.scenarios {
            let cell = |target: &str| {
                s.added_for(target).map_or_else(
                    || "– | – | – | –".to_owned(),
                    |a| {
                        let l = &a.latency;
                        format!("{} | {} | {} | {}", ms(l.p50_ms), ms(l.p90_ms), ms(l.p99_ms), ms(l.max_ms))
                    },
                )
            };
            let r = match (s.added_for("keyguard"), s.added_for("litellm")) {
                (Some(k), Some(l)) => ratio(k.latency.p99_ms, l.latency.p99_ms),
                _ => "–".to_owned(),
            };
            let _ = writeln!(out, "| {} | {} | {} | {r} |", s.name, cell("keyguard"), cell("litellm"));
        }
        let _ = writeln!(out, "\n## Every measurement\n");
        let _ = writeln!(
            out,
            "| scenario | target | ok | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | first byte p50 / p99 ms | server RSS MiB |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
        for s in &self.scenarios {
            for x in &s.measurements {
                let l = x.latency.unwrap_or_default();
                let fb = x
                    .first_byte
                    .filter(|_| s.stream)
                    .map_or_else(|| "–".to_owned(), |f| format!("{} / {}", ms(f.p50_ms), ms(f.p99_ms)));
                let rss = x.memory.map_or_else(|| "–".to_owned(), |m| format!("{:.1}", m.rss_mib()));
                let errors = if x.errors.is_empty() {
                    "0".to_owned()
                } else {
                    format!(
                        "{} ({})",
                        x.error_count(),
                        x.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
                    )
                };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {errors} | {:.0} | {} | {} | {} | {} | {fb} | {rss} |",
                    s.name,
                    x.target,
                    x.ok,
                    x.throughput_rps,
                    ms(l.p50_ms),
                    ms(l.p90_ms),
                    ms(l.p99_ms),
                    ms(l.max_ms),
                );
            }
        }
        let streams: Vec<_> = self.scenarios.iter().filter(|s| s.stream).collect();
        if !streams.is_empty() {
            let _ = writeln!(out, "\n## Streaming: added time to first token (ms)\n");
            let _ = writeln!(out, "| scenario | target | added TTFT p50 | p90 | p99 | max |");
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            for s in streams {
                for a in &s.added {
                    if let Some(f) = &a.first_byte {
                        let _ = writeln!(
                            out,
                            "| {} | {} | {} | {} | {} | {} |",
                            s.name,
                            a.target,
                            ms(f.p50_ms),
                            ms(f.p90_ms),
                            ms(f.p99_ms),
                            ms(f.max_ms)
                        );
                    }
                }
            }
        }
        let _ = writeln!(out, "\n## Memory\n");
        let _ = writeln!(out, "| target | idle RSS MiB | RSS after the scenarios MiB | peak RSS MiB |");
        let _ = writeln!(out, "|---|---|---|---|");
        for (target, idle) in &self.idle_memory {
            let last = self
                .scenarios
                .iter()
                .rev()
                .flat_map(|s| s.measurements.iter())
                .find(|x| &x.target == target)
                .and_then(|x| x.memory);
            let _ = writeln!(
                out,
                "| {target} | {:.1} | {} | {} |",
                idle.rss_mib(),
                last.map_or("–".to_owned(), |m| format!("{:.1}", m.rss_mib())),
                last.map_or("–".to_owned(), |m| format!("{:.1}", m.peak_mib())),
            );
        }
        if let Some(side) = &self.keyguard_server_side {
            let le = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("≤ {}", ms(v)));
            let _ = writeln!(
                out,
                "\nKeyGuard's own histogram (`keyguard_proxy_added_latency_seconds`, {} requests): \
                 p50 {} ms, p99 {} ms (bucket bounds).",
                side.count,
                le(side.p50_le_ms),
                le(side.p99_le_ms)
            );
        }
        if let Some(soak) = &self.soak {
            let _ = writeln!(
                out,
                "\n## Soak\n\n{} s at {} req/s through KeyGuard: {} ok, {} errors, p99 {} ms.\n",
                soak.seconds,
                soak.rate,
                soak.ok,
                soak.errors,
                soak.latency.map_or("–".to_owned(), |l| ms(l.p99_ms))
            );
            let series: Vec<String> = soak.rss_mib.iter().map(|(t, m)| format!("{t} s: {m:.1}")).collect();
            let _ = writeln!(out, "RSS (MiB): {}", series.join(", "));
        }
        out
    }
}
