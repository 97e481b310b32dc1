//! Logging set-up: one subscriber for the whole process, text or JSON.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Where the log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    Stdout,
    /// For commands whose standard output is their result (an export), which logs must not mix into.
    Stderr,
}

/// Installs the global subscriber. Later calls (tests start many apps) are ignored.
pub fn init(filter: &str, format: LogFormat, output: LogOutput) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(true);
    let _ = match (format, output) {
        (LogFormat::Text, LogOutput::Stdout) => builder.try_init(),
        (LogFormat::Json, LogOutput::Stdout) => builder.json().try_init(),
        (LogFormat::Text, LogOutput::Stderr) => builder.with_writer(std::io::stderr).try_init(),
        (LogFormat::Json, LogOutput::Stderr) => builder.json().with_writer(std::io::stderr).try_init(),
    };
}
