//! `keyguard-bench`: what KeyGuard adds to an LLM call, measured in one run beside a direct call
//! to the same fake upstream and, when its virtualenv is given, beside LiteLLM's proxy.
//!
//! Every scenario runs against each target in turn: `direct` (the fake upstream itself),
//! `keyguard` (signed requests, every check on: signature, nonce, policy, rate limit, usage
//! audit) and `litellm`. Requests are prepared (and for KeyGuard signed, with unique nonces)
//! before the clock starts. The report goes to `bench/results/` as JSON and Markdown.

mod keyguard;
mod litellm;
mod load;
mod process;
mod report;
mod upstream;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use keyguard_sdk::Signer;

use keyguard::{KeyGuard, Launch};
use litellm::LiteLlm;
use load::{Prepared, Shape, Target};
use process::Memory;
use report::{Measurement, Report, ScenarioResult, ServerSide, Soak};
use upstream::{FakeUpstream, SseShape, model_for};

/// Measures KeyGuard's added latency, throughput, streaming and memory against a direct call and
/// LiteLLM, on loopback.
#[derive(Debug, Parser)]
#[command(name = "keyguard-bench", version)]
struct Cli {
    /// The `keyguard` binary to start (default: the one beside this program).
    #[arg(long)]
    keyguard_bin: Option<PathBuf>,
    /// Use a KeyGuard that is already running (and has no administrator yet) instead.
    #[arg(long)]
    keyguard_url: Option<String>,
    /// `KEYGUARD_DATABASE_URL` for the started server (default: SQLite in a temporary directory).
    #[arg(long)]
    keyguard_database_url: Option<String>,
    /// KeyGuard's audit mode: `async` or `strict`.
    #[arg(long, default_value = "async")]
    audit_mode: String,
    /// LiteLLM's `litellm` executable (in its virtualenv); without it LiteLLM is not measured.
    #[arg(long)]
    litellm: Option<PathBuf>,
    /// Devices enrolled through the API; requests are spread over them.
    #[arg(long, default_value_t = 4)]
    devices: usize,
    /// Seconds each scenario runs against each target.
    #[arg(long, default_value_t = 5)]
    duration: u64,
    /// Scenarios to run (comma-separated): latency, throughput, sustained, stream.
    #[arg(long, value_delimiter = ',', default_value = "latency,throughput,sustained,stream")]
    scenarios: Vec<String>,
    /// Closed-loop concurrency of the throughput scenario.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Open-loop rate (requests/s) of the sustained scenario.
    #[arg(long, default_value_t = 5000)]
    rate: u32,
    /// Concurrency of the streaming scenario (16 gives some 600 streams in 5 s, enough for a p99).
    #[arg(long, default_value_t = 16)]
    stream_concurrency: usize,
    /// Most requests per second a closed-loop scenario can use: that many are signed ahead per
    /// second of duration.
    #[arg(long, default_value_t = 8000)]
    max_rate: u32,
    /// The fake upstream's delay before answering, in the throughput, sustained and stream
    /// scenarios (the latency scenario uses 0).
    #[arg(long, default_value_t = 20)]
    upstream_latency_ms: u64,
    /// Events in each fake stream.
    #[arg(long, default_value_t = 20)]
    sse_chunks: u32,
    /// Milliseconds between stream events.
    #[arg(long, default_value_t = 5)]
    sse_interval_ms: u64,
    /// Requests sent to each target before its first scenario (connections, caches).
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// After the scenarios, drive KeyGuard alone for this many seconds and follow its memory
    /// (600 for the 10-minute soak).
    #[arg(long, default_value_t = 0)]
    soak: u64,
    /// Open-loop rate of the soak.
    #[arg(long, default_value_t = 1000)]
    soak_rate: u32,
    /// Targets to measure (comma-separated): direct, keyguard, litellm. `direct` is needed for
    /// the added-latency figures.
    #[arg(long, value_delimiter = ',', default_value = "direct,keyguard,litellm")]
    targets: Vec<String>,
    /// At most this many requests per scenario and target (for profiling a fixed amount of work).
    #[arg(long)]
    requests: Option<usize>,
    /// Where the report goes.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

struct Scenario {
    name: &'static str,
    description: String,
    shape: Shape,
    stream: bool,
    upstream_latency: Duration,
}

fn scenarios(cli: &Cli) -> anyhow::Result<Vec<Scenario>> {
    let latency = Duration::from_millis(cli.upstream_latency_ms);
    let stream_length = latency + Duration::from_millis(cli.sse_interval_ms) * cli.sse_chunks;
    let stream_stagger = stream_length / u32::try_from(cli.stream_concurrency.max(1)).unwrap_or(u32::MAX);
    cli.scenarios
        .iter()
        .map(|name| {
            Ok(match name.trim() {
                "latency" => Scenario {
                    name: "latency",
                    description: "one request at a time, JSON, instant upstream".into(),
                    shape: Shape::Closed { concurrency: 1, stagger: Duration::ZERO },
                    stream: false,
                    upstream_latency: Duration::ZERO,
                },
                "throughput" => Scenario {
                    name: "throughput",
                    description: format!(
                        "{} concurrent clients, JSON, upstream {} ms",
                        cli.concurrency, cli.upstream_latency_ms
                    ),
                    shape: Shape::Closed { concurrency: cli.concurrency, stagger: Duration::ZERO },
                    stream: false,
                    upstream_latency: latency,
                },
                "sustained" => Scenario {
                    name: "sustained",
                    description: format!(
                        "open loop at {} req/s, JSON, upstream {} ms",
                        cli.rate, cli.upstream_latency_ms
                    ),
                    shape: Shape::Open { rate: cli.rate },
                    stream: false,
                    upstream_latency: latency,
                },
                "stream" => Scenario {
                    name: "stream",
                    description: format!(
                        "{} concurrent streams of {} events {} ms apart, first after {} ms; streams started {:.1} ms apart",
                        cli.stream_concurrency,
                        cli.sse_chunks,
                        cli.sse_interval_ms,
                        cli.upstream_latency_ms,
                        stream_stagger.as_secs_f64() * 1e3
                    ),
                    // Streams last alike, so starts spread over one stream's length stay spread, as
                    // independent clients' are; started together, all of them would arrive in the
                    // same instant at every round and queue behind each other's admission.
                    shape: Shape::Closed {
                        concurrency: cli.stream_concurrency,
                        stagger: stream_stagger,
                    },
                    stream: true,
                    upstream_latency: latency,
                },
                other => anyhow::bail!("unknown scenario {other:?}"),
            })
        })
        .collect()
}

fn body(model: &str, stream: bool) -> Bytes {
    let mut body = serde_json::json!({
        "model": model,
        "messages": [{ "role": "user", "content": "Say hello in one short sentence." }],
    });
    if stream {
        body["stream"] = true.into();
    }
    Bytes::from(body.to_string())
}

/// A target and how its requests are made.
enum Kind {
    Direct,
    KeyGuard(Vec<Signer>),
    LiteLlm,
}

struct Endpoint {
    name: &'static str,
    kind: Kind,
    target: Target,
    memory: Box<dyn Fn() -> Option<Memory>>,
}

impl Endpoint {
    /// `count` requests for this target (signed ahead for KeyGuard).
    fn requests(&self, body: &Bytes, count: usize) -> anyhow::Result<Arc<Vec<Prepared>>> {
        let json = ("content-type".to_owned(), "application/json".to_owned());
        let plain = |path: &str, headers: &[(String, String)]| -> anyhow::Result<Arc<Vec<Prepared>>> {
            let one = Prepared::new(path, headers, body.clone())?;
            Ok(Arc::new(vec![one; count]))
        };
        match &self.kind {
            Kind::Direct => plain("/v1/chat/completions", &[json]),
            Kind::LiteLlm => plain(
                "/v1/chat/completions",
                &[json, ("authorization".to_owned(), format!("Bearer {}", litellm::MASTER_KEY))],
            ),
            Kind::KeyGuard(signers) => Ok(Arc::new(keyguard::presign(signers, body, count)?)),
        }
    }
}

/// The longest a measurement waits for the servers to go idle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let scenarios = scenarios(&cli)?;
    let started_at = chrono::Utc::now();
    let loadavg_before = report::loadavg();
    let mut notes = vec![
        "Each scenario runs against every target in turn on loopback; the fake upstream, the load \
         generator and the proxy share the machine's cores."
            .to_owned(),
        "Added latency is the proxy's percentile minus the direct call's, from separate runs of the same \
         schedule; at small values it is within run-to-run noise and can be negative."
            .to_owned(),
        format!(
            "KeyGuard: {} devices enrolled through the API, requests signed ahead with unique nonces; global \
             policy with a rate limit, audit mode `{}`.",
            cli.devices, cli.audit_mode
        ),
    ];
    let upstream = FakeUpstream::spawn(SseShape {
        chunks: cli.sse_chunks,
        interval: Duration::from_millis(cli.sse_interval_ms),
    })?;
    eprintln!("fake upstream on {}", upstream.addr);

    let kg = match &cli.keyguard_url {
        Some(url) => KeyGuard::external(url),
        None => {
            let binary = match &cli.keyguard_bin {
                Some(path) => path.clone(),
                None => std::env::current_exe()?.with_file_name("keyguard"),
            };
            let launch = Launch {
                binary,
                audit_mode: cli.audit_mode.clone(),
                database_url: cli.keyguard_database_url.clone(),
            };
            KeyGuard::start(&launch).await.context("starting KeyGuard")?
        }
    };
    eprintln!("keyguard on {}; enrolling {} devices", kg.url, cli.devices);
    let provisioned = keyguard::provision(&kg, &upstream.base_url(), cli.devices).await?;
    let kg_pid = kg.server.as_ref().map(process::Server::pid);
    let kg_memory = move || kg_pid.and_then(Memory::of);

    let models: Vec<String> = scenarios.iter().map(|s| model_for(s.upstream_latency)).collect();
    let litellm = match cli.litellm.as_ref().filter(|_| cli.targets.iter().any(|t| t == "litellm")) {
        Some(executable) => match LiteLlm::start(executable, &upstream.base_url(), &models).await {
            Ok(litellm) => {
                notes.push(format!(
                    "LiteLLM {} proxy, one worker, authenticated with its master key: its virtual keys need \
                     a database managed by Prisma, whose engines are downloaded at first use, which this \
                     machine cannot do.",
                    litellm.version
                ));
                Some(litellm)
            }
            Err(err) => {
                eprintln!("LiteLLM could not be started: {err:#}");
                notes.push(format!("LiteLLM was not measured: it could not be started ({err:#})."));
                None
            }
        },
        None => {
            notes.push(
                "LiteLLM was not measured in this run (not asked for: no --litellm, or not among --targets)."
                    .to_owned(),
            );
            None
        }
    };

    let mut endpoints = vec![
        Endpoint {
            name: "direct",
            kind: Kind::Direct,
            target: Target::new(&format!("http://{}", upstream.addr)),
            memory: Box::new(|| None),
        },
        Endpoint {
            name: "keyguard",
            kind: Kind::KeyGuard(provisioned.signers),
            target: Target::new(&kg.url),
            memory: Box::new(kg_memory),
        },
    ];
    if let Some(litellm) = litellm.as_ref().filter(|_| cli.targets.iter().any(|t| t == "litellm")) {
        let pid = litellm.server.pid();
        endpoints.push(Endpoint {
            name: "litellm",
            kind: Kind::LiteLlm,
            target: Target::new(&litellm.url),
            memory: Box::new(move || process::tree_memory(pid)),
        });
    }

    endpoints.retain(|e| cli.targets.iter().any(|t| t == e.name));

    // Idle memory: after start-up and provisioning, before any proxied request.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut idle_memory = BTreeMap::new();
    for endpoint in &endpoints {
        if let Some(memory) = (endpoint.memory)() {
            idle_memory.insert(endpoint.name.to_owned(), memory);
        }
    }

    let warm = body(&model_for(Duration::ZERO), false);
    for endpoint in &endpoints {
        let requests = endpoint.requests(&warm, cli.warmup)?;
        let run = load::drive(
            &endpoint.target,
            requests,
            Shape::Closed { concurrency: 4, stagger: Duration::ZERO },
            Duration::from_secs(30),
        )
        .await;
        if run.recorder.ok == 0 {
            anyhow::bail!("{}: no warm-up request succeeded ({:?})", endpoint.name, run.recorder.errors);
        }
    }

    // Every measurement starts once the servers have finished what earlier ones left them.
    let server_pids: Vec<u32> = kg_pid.into_iter().chain(litellm.as_ref().map(|l| l.server.pid())).collect();
    let mut unsettled = Vec::new();
    let duration = Duration::from_secs(cli.duration);
    let mut results = Vec::new();
    for scenario in &scenarios {
        let body = body(&model_for(scenario.upstream_latency), scenario.stream);
        let count = match scenario.shape {
            Shape::Open { rate } => (f64::from(rate) * duration.as_secs_f64()).ceil() as usize,
            Shape::Closed { .. } => (f64::from(cli.max_rate) * duration.as_secs_f64()).ceil() as usize,
        };
        let count = cli.requests.map_or(count, |cap| count.min(cap));
        let mut result = ScenarioResult {
            name: scenario.name.to_owned(),
            description: scenario.description.clone(),
            shape: scenario.shape,
            stream: scenario.stream,
            upstream_latency_ms: scenario.upstream_latency.as_millis() as u64,
            measurements: Vec::new(),
            added: Vec::new(),
        };
        for endpoint in &endpoints {
            eprintln!("{}: {} ({count} requests prepared)", scenario.name, endpoint.name);
            let requests = endpoint.requests(&body, count)?;
            let (waited, settled) = process::settle(&server_pids, SETTLE_TIMEOUT).await;
            // Signing the requests just now kept every core busy, which KeyGuard's watchdog takes
            // for a node short of CPU: its bookkeeping has normal priority for a while.
            let (rested, at_rest) = bookkeeping_at_rest(&kg.url, SETTLE_TIMEOUT).await;
            if !settled || !at_rest {
                unsettled.push(format!("{} / {}", scenario.name, endpoint.name));
            }
            eprintln!(
                "  servers idle after {:.1} s{}, KeyGuard's bookkeeping yielding after {:.1} s more{}",
                waited.as_secs_f64(),
                if settled { "" } else { " (not idle)" },
                rested.as_secs_f64(),
                if at_rest { "" } else { " (not yielding)" }
            );
            let fell_before = bookkeeping(&kg.url).await.map(|b| b.fell_behind);
            let run = load::drive(&endpoint.target, requests, scenario.shape, duration).await;
            let fell_after = bookkeeping(&kg.url).await.map(|b| b.fell_behind);
            if let (Some(before), Some(after)) = (fell_before, fell_after)
                && after > before
            {
                notes.push(format!(
                    "During {} / {} KeyGuard's bookkeeping fell behind {} time(s) and had normal priority \
                     back for part of the measurement.",
                    scenario.name,
                    endpoint.name,
                    after - before
                ));
            }
            let measurement = Measurement::new(endpoint.name, &run, (endpoint.memory)());
            eprintln!(
                "  {} ok, {} errors, {:.0} req/s, p99 {:.3} ms",
                measurement.ok,
                run.recorder.error_count(),
                measurement.throughput_rps,
                measurement.latency.map_or(f64::NAN, |l| l.p99_ms)
            );
            result.measurements.push(measurement);
        }
        result.compute_added();
        results.push(result);
    }

    notes.push(if unsettled.is_empty() {
        "Each measurement started once the servers this run started were idle (under 4 % of a core over \
         half a second), so that none pays for work queued by the one before, and KeyGuard's bookkeeping \
         yielded the CPU again (signing a measurement's requests ahead keeps every core busy, which gives \
         it normal priority back for a second or more)."
            .to_owned()
    } else {
        format!(
            "Each measurement waited for the servers to be idle (under 4 % of a core over half a second) and \
             KeyGuard's bookkeeping to yield again, at most {} s each; these started without: {}.",
            SETTLE_TIMEOUT.as_secs(),
            unsettled.join(", ")
        )
    });

    let soak = if cli.soak > 0 {
        let keyguard = endpoints.iter().find(|e| e.name == "keyguard").context("the soak needs keyguard")?;
        Some(soak(keyguard, cli.soak, cli.soak_rate).await?)
    } else {
        None
    };

    let server_side = server_side(&kg.url).await;
    let report = Report {
        started_at: started_at.format("%Y-%m-%d %H:%M UTC").to_string(),
        machine: report::Machine::this(),
        settings: serde_json::json!({
            "duration_s": cli.duration, "devices": cli.devices, "concurrency": cli.concurrency,
            "rate": cli.rate, "stream_concurrency": cli.stream_concurrency,
            "upstream_latency_ms": cli.upstream_latency_ms, "sse_chunks": cli.sse_chunks,
            "sse_interval_ms": cli.sse_interval_ms, "audit_mode": cli.audit_mode, "warmup": cli.warmup,
            "litellm": litellm.as_ref().map(|l| l.version.clone()),
        }),
        notes,
        idle_memory,
        scenarios: results,
        soak,
        keyguard_server_side: server_side,
        loadavg_before,
        loadavg_after: report::loadavg(),
    };
    write(&cli.out, &report, started_at)?;
    drop(litellm);
    drop(kg);
    Ok(())
}

/// Drives KeyGuard alone at `rate` for `seconds`, in segments of at most a minute whose requests
/// are signed just before they start (a signature is only valid within the policy's window),
/// and samples its memory every few seconds.
async fn soak(keyguard: &Endpoint, seconds: u64, rate: u32) -> anyhow::Result<Soak> {
    const SEGMENT: u64 = 60;
    let body = body(&model_for(Duration::from_millis(20)), false);
    let started = tokio::time::Instant::now();
    let mut rss = Vec::new();
    let mut ok = 0;
    let mut errors = 0;
    let mut latency = None::<hdrhistogram::Histogram<u64>>;
    let mut done = 0;
    if let Some(m) = (keyguard.memory)() {
        rss.push((0, m.rss_mib()));
    }
    while done < seconds {
        let length = SEGMENT.min(seconds - done);
        let requests = keyguard.requests(&body, (u64::from(rate) * length) as usize)?;
        let drive =
            load::drive(&keyguard.target, requests, Shape::Open { rate }, Duration::from_secs(length));
        tokio::pin!(drive);
        let mut ticker = tokio::time::interval(Duration::from_secs(5));
        let run = loop {
            tokio::select! {
                run = &mut drive => break run,
                _ = ticker.tick() => {
                    if let Some(m) = (keyguard.memory)() {
                        rss.push((started.elapsed().as_secs(), m.rss_mib()));
                    }
                }
            }
        };
        ok += run.recorder.ok;
        errors += run.recorder.error_count();
        match &mut latency {
            Some(h) => h.add(&run.recorder.latency).expect("same bounds"),
            None => latency = Some(run.recorder.latency.clone()),
        }
        done += length;
        eprintln!("soak: {done}/{seconds} s, {ok} ok, {errors} errors, RSS {:?}", rss.last());
    }
    if let Some(m) = (keyguard.memory)() {
        rss.push((started.elapsed().as_secs(), m.rss_mib()));
    }
    Ok(Soak {
        seconds,
        rate,
        ok,
        errors,
        rss_mib: rss,
        latency: latency.as_ref().and_then(report::Percentiles::of),
    })
}

/// KeyGuard's bookkeeping as `/metrics` tells it.
struct BookkeepingState {
    /// Whether its threads yield the CPU to requests now.
    yielding: bool,
    /// How many times it fell behind and got normal priority back.
    fell_behind: u64,
}

/// The bookkeeping's state, or `None` when KeyGuard keeps it at normal priority throughout (or
/// does not answer).
async fn bookkeeping(url: &str) -> Option<BookkeepingState> {
    BookkeepingState::parse(&metrics(url).await?)
}

/// KeyGuard's `/metrics` text, if it answers.
async fn metrics(url: &str) -> Option<String> {
    reqwest::get(format!("{url}/metrics")).await.ok()?.text().await.ok()
}

impl BookkeepingState {
    /// From `/metrics` in the Prometheus text format.
    fn parse(metrics: &str) -> Option<Self> {
        let value = |name: &str| {
            metrics
                .lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse::<u64>().ok())
        };
        Some(Self {
            yielding: value("keyguard_bookkeeping_yielding")? == 1,
            fell_behind: value("keyguard_bookkeeping_fell_behind_total")?,
        })
    }
}

/// Waits until KeyGuard's bookkeeping yields the CPU again (at once when it never does), at most
/// `timeout`; returns how long it waited and whether it does.
async fn bookkeeping_at_rest(url: &str, timeout: Duration) -> (Duration, bool) {
    let started = Instant::now();
    loop {
        match bookkeeping(url).await {
            None => return (started.elapsed(), true),
            Some(state) if state.yielding => return (started.elapsed(), true),
            Some(_) if started.elapsed() >= timeout => return (started.elapsed(), false),
            Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Reads KeyGuard's added-latency histogram from `/metrics`.
async fn server_side(url: &str) -> Option<ServerSide> {
    let text = metrics(url).await?;
    let mut buckets = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("keyguard_proxy_added_latency_seconds_bucket{le=\"") else {
            continue;
        };
        let (le, count) = rest.split_once("\"}")?;
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
        buckets.push((le, count.trim().parse::<u64>().ok()?));
    }
    let count = buckets.last()?.1;
    let quantile = |q: f64| {
        let needed = (count as f64 * q).ceil() as u64;
        buckets.iter().find(|(_, c)| *c >= needed).map(|(le, _)| le * 1000.0).filter(|v| v.is_finite())
    };
    Some(ServerSide { count, p50_le_ms: quantile(0.5), p99_le_ms: quantile(0.99) })
}

fn write(dir: &PathBuf, report: &Report, at: chrono::DateTime<chrono::Utc>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = at.format("%Y%m%dT%H%M%SZ");
    let json = serde_json::to_string_pretty(report)?;
    let markdown = report.markdown();
    for (name, text) in [
        (format!("{stamp}.json"), &json),
        (format!("{stamp}.md"), &markdown),
        ("latest.json".to_owned(), &json),
        ("latest.md".to_owned(), &markdown),
    ] {
        std::fs::write(dir.join(&name), text).with_context(|| format!("writing {name}"))?;
    }
    println!("{markdown}");
    eprintln!("results written to {}", dir.join(format!("{stamp}.md")).display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bookkeeping_state_comes_from_its_two_metrics() {
        let metrics = "# HELP keyguard_bookkeeping_yielding 1 while the bookkeeping threads yield\n\
                       # TYPE keyguard_bookkeeping_yielding gauge\n\
                       keyguard_bookkeeping_yielding 0\n\
                       # TYPE keyguard_bookkeeping_fell_behind counter\n\
                       keyguard_bookkeeping_fell_behind_total 3\n";
        let state = BookkeepingState::parse(metrics).expect("both metrics are there");
        assert!(!state.yielding);
        assert_eq!(state.fell_behind, 3);
        let yielding = metrics.replace("yielding 0", "yielding 1");
        assert!(BookkeepingState::parse(&yielding).is_some_and(|s| s.yielding));
        // A server that keeps its bookkeeping at normal priority reports neither.
        assert!(BookkeepingState::parse("keyguard_http_requests_total 1\n").is_none());
    }
}
