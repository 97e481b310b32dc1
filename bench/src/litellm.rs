//! LiteLLM's proxy as the peer: started from its virtualenv with a generated config that maps
//! each model the scenarios ask for to the same fake upstream, authenticated with its master key.
//!
//! LiteLLM's virtual keys live in a database that its Prisma client manages; Prisma fetches its
//! engines from the internet at first use, which this benchmark cannot rely on. So LiteLLM is
//! measured with its master key (no per-key database lookup), and the report says so.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::process::{Server, free_port, wait_ready};

pub const MASTER_KEY: &str = "sk-bench-litellm-master";

pub struct LiteLlm {
    pub url: String,
    pub server: Server,
    pub version: String,
    _dir: tempfile::TempDir,
}

impl LiteLlm {
    /// `executable` is the virtualenv's `litellm`; `models` the names the scenarios send.
    pub async fn start(
        executable: &PathBuf,
        upstream_base_url: &str,
        models: &[String],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut config = String::from("model_list:\n");
        for model in models {
            config.push_str(&format!(
                "  - model_name: {model}\n    litellm_params:\n      model: openai/{model}\n      \
                 api_base: {upstream_base_url}\n      api_key: sk-bench-provider-secret\n"
            ));
        }
        config.push_str(&format!(
            "general_settings:\n  master_key: {MASTER_KEY}\nlitellm_settings:\n  telemetry: false\n  \
             drop_params: true\n"
        ));
        let path = dir.path().join("litellm.yaml");
        std::fs::write(&path, config)?;
        let addr = free_port()?;
        let mut command = Command::new(executable);
        command
            .arg("--config")
            .arg(&path)
            .args(["--host", "127.0.0.1", "--port", &addr.port().to_string(), "--num_workers", "1"])
            // No download of the model price list at start-up; no database.
            .env("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            .env("LITELLM_LOG", "ERROR")
            .env_remove("DATABASE_URL")
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut server = Server::start("litellm", command)?;
        let url = format!("http://{addr}");
        wait_ready(&mut server, &format!("{url}/health/liveliness"), Duration::from_secs(180)).await?;
        let version = executable
            .parent()
            .map(|bin| bin.join("python"))
            .and_then(|python| {
                Command::new(python)
                    .args(["-c", "import importlib.metadata as m; print(m.version('litellm'))"])
                    .output()
                    .ok()
            })
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
            .unwrap_or_default();
        Ok(Self { url, server, version, _dir: dir })
    }
}
