//! `keyguard-device`: enroll this machine with a KeyGuard project and make signed calls from the
//! shell.
//!
//! The binary is a thin wrapper around [`run`], which tests drive with their own arguments and
//! output. The key lives in the user's configuration directory (`keyguard/device.key`, mode
//! 0600) unless `--key-file` says otherwise; the enrollment record sits beside it as
//! `device.key.json`.

mod record;

use std::ffi::OsString;
use std::io::{Read as _, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use chrono::{SecondsFormat, Utc};
use clap::{Args, Parser, Subcommand};
use reqwest::Method;

pub use record::EnrollmentRecord;

use crate::{
    DeviceKey, DeviceStatus, EnrollmentPayload, Error, FileKeyStore, Fingerprint, KeyStore as _, ServerUrl,
    SignedClient, Signer, check, enroll_payload, user_agent,
};

/// Enroll this machine as a KeyGuard device and make signed requests through a KeyGuard server.
#[derive(Debug, Parser)]
#[command(name = "keyguard-device", version)]
pub struct Cli {
    /// The device's private key (PKCS#8 PEM, mode 0600) [default: CONFIG_DIR/keyguard/device.key].
    #[arg(long, global = true, env = "KEYGUARD_DEVICE_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a device key and enroll it with a project.
    Enroll(EnrollArgs),
    /// Ask the server whether this device's signed requests are accepted.
    Status,
    /// Send a signed request and print the response.
    Call(CallArgs),
    /// Show this device's enrollment, without contacting the server.
    Whoami,
    /// Delete this device's key and enrollment record from this machine.
    Forget,
}

#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The KeyGuard server's base URL (`https://…`).
    #[arg(long, env = "KEYGUARD_SERVER", value_name = "URL")]
    pub server: String,
    /// The project API key (kg_…) of the application.
    #[arg(long, env = "KEYGUARD_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub api_key: String,
    /// An enrollment code from an administrator (kgc_…). Without one the device waits for approval.
    #[arg(long, value_name = "CODE")]
    pub code: Option<String>,
    /// A name administrators will see [default: "keyguard-device on" and the OS name].
    #[arg(long, value_name = "LABEL")]
    pub label: Option<String>,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The HTTP method, e.g. GET or POST.
    pub method: String,
    /// The full route on the KeyGuard server with its query, e.g. /api/v1/proxy/v1/chat/completions.
    pub path: String,
    /// A JSON request body.
    #[arg(long, value_name = "JSON", conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Read the request body from a file ("-" for standard input); sent byte for byte.
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<PathBuf>,
    /// Ask for a server-sent event stream and print it as it arrives.
    #[arg(long)]
    pub stream: bool,
    /// An extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_name = "HEADER")]
    pub headers: Vec<String>,
}

/// Parses `args` (the program name first) and runs the command, writing its output to `out`.
/// Errors carry the message to show the user.
pub async fn run<I, T, W>(args: I, out: W) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
    W: Write + Send,
{
    let cli = Cli::try_parse_from(args)?;
    execute(cli, out).await
}

/// Runs an already parsed command.
pub async fn execute<W: Write + Send>(cli: Cli, mut out: W) -> anyhow::Result<()> {
    let paths = Paths::new(cli.key_file)?;
    match cli.command {
        Command::Enroll(args) => enroll(&paths, args, &mut out).await,
        Command::Status => status(&paths, &mut out).await,
        Command::Call(args) => call(&paths, args, &mut out).await,
        Command::Whoami => whoami(&paths, &mut out),
        Command::Forget => forget(&paths, &mut out),
    }
}

struct Paths {
    key: PathBuf,
    record: PathBuf,
}

impl Paths {
    fn new(key_file: Option<PathBuf>) -> anyhow::Result<Self> {
        let key = match key_file {
            Some(path) => path,
            None => dirs::config_dir()
                .context("cannot find the user's configuration directory; pass --key-file PATH")?
                .join("keyguard")
                .join("device.key"),
        };
        Ok(Self { record: EnrollmentRecord::path_for(&key), key })
    }

    fn store(&self) -> FileKeyStore {
        FileKeyStore::new(&self.key)
    }

    /// The record and key of an enrolled device, or an error saying what to do.
    fn enrolled(&self) -> anyhow::Result<(EnrollmentRecord, DeviceKey)> {
        let Some(record) = EnrollmentRecord::load(&self.record)? else {
            if self.key.exists() {
                bail!(
                    "this device is not enrolled: a key exists at {} but its enrollment did not complete. \
                     Run `keyguard-device enroll` again (it reuses the key)",
                    self.key.display()
                );
            }
            bail!(
                "this device is not enrolled (no key at {}). Run `keyguard-device enroll --server URL \
                 --api-key KEY --code CODE` first",
                self.key.display()
            );
        };
        let key = self.store().load()?.with_context(|| {
            format!(
                "the enrollment record {} exists but the key file {} is missing; run `keyguard-device forget` \
                 and enroll again",
                self.record.display(),
                self.key.display()
            )
        })?;
        if key.key_id().as_str() != record.key_id {
            bail!(
                "the key at {} (keyId {}) is not the enrolled one (keyId {}); run `keyguard-device forget` \
                 and enroll again",
                self.key.display(),
                key.key_id(),
                record.key_id
            );
        }
        Ok((record, key))
    }
}

async fn enroll(paths: &Paths, args: EnrollArgs, out: &mut impl Write) -> anyhow::Result<()> {
    if let Some(record) = EnrollmentRecord::load(&paths.record)? {
        bail!(
            "this machine is already enrolled on {} as device {} (keyId {}); run `keyguard-device forget` \
             first to enroll again",
            record.server,
            record.device_id,
            record.key_id
        );
    }
    let server = ServerUrl::parse(&args.server)?;
    let project_key = args.api_key.trim();
    // Checked before a key is created for nothing.
    crate::protocol::ProjectKey::parse(project_key).map_err(Error::InvalidProjectKey)?;
    let store = paths.store();
    let key = match store.load()? {
        Some(key) => {
            writeln!(out, "Using the existing device key at {}.", paths.key.display())?;
            key
        }
        None => {
            let key = DeviceKey::generate()?;
            store.save(&key)?;
            key
        }
    };
    let mut payload = EnrollmentPayload::new(&key, Fingerprint::of_this_machine(&key), args.label.as_deref())
        .with_user_agent(user_agent());
    if let Some(code) = &args.code {
        payload = payload.with_code(code.trim());
    }
    let http = reqwest::Client::new();
    let enrolled = enroll_payload(&http, &server, project_key, &payload)
        .await
        .with_context(|| format!("enrolling with {server} failed"))?;
    let record = EnrollmentRecord {
        server: server.to_string(),
        device_id: enrolled.id,
        key_id: key.key_id().to_string(),
        label: payload.label,
        status: enrolled.status,
        enrolled_at: enrolled.created_at,
        checked_at: None,
        project_key: project_key.to_owned(),
    };
    record.save(&paths.record)?;
    writeln!(out, "Enrolled device {} (keyId {}) on {}.", record.device_id, record.key_id, record.server)?;
    writeln!(out, "Status: {}", describe(record.status, &record))?;
    writeln!(out, "Key: {}", paths.key.display())?;
    Ok(())
}

fn describe(status: DeviceStatus, record: &EnrollmentRecord) -> String {
    match status {
        DeviceStatus::Active => "active: this device can sign requests.".to_owned(),
        DeviceStatus::Pending => format!(
            "pending approval: an administrator must approve device {} (keyId {}) before it can sign requests.",
            record.device_id, record.key_id
        ),
        DeviceStatus::Suspended => "suspended: an administrator must reactivate this device.".to_owned(),
        DeviceStatus::Revoked => {
            "revoked: this key can never sign again; run `keyguard-device forget` and enroll a new one."
                .to_owned()
        }
    }
}

fn client(record: &EnrollmentRecord, key: DeviceKey) -> anyhow::Result<SignedClient> {
    let server = ServerUrl::parse(&record.server)?;
    Ok(SignedClient::new(server, Signer::new(key, &record.project_key)?)?)
}

/// Turns a refusal of a signed request into advice that uses what the record knows.
fn explain(error: Error, record: &EnrollmentRecord) -> anyhow::Error {
    match &error {
        Error::Unauthorized { .. } if error.is_clock_skew() => anyhow!(error),
        Error::Unauthorized { .. } => match record.status {
            DeviceStatus::Pending => anyhow!(
                "the server did not accept this device's signature. The device was pending approval when \
                 it enrolled: ask an administrator to approve device {} (keyId {}) in the KeyGuard dashboard. \
                 If it has been approved, it may since have been suspended or revoked, or the project key \
                 revoked",
                record.device_id,
                record.key_id
            ),
            known => anyhow!(
                "the server did not accept this device's signature. The device was {known} when last checked; \
                 it may since have been suspended or revoked, or the project key revoked or expired. Ask an \
                 administrator about device {} (keyId {})",
                record.device_id,
                record.key_id
            ),
        },
        _ => anyhow!(error),
    }
}

async fn status(paths: &Paths, out: &mut impl Write) -> anyhow::Result<()> {
    let (mut record, key) = paths.enrolled()?;
    let client = client(&record, key)?;
    match client.verify().await {
        Ok(verified) => {
            record.status = DeviceStatus::Active;
            record.checked_at = Some(Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true));
            record.save(&paths.record)?;
            writeln!(
                out,
                "active: {} verified a signed request from device {} (keyId {}).",
                record.server, verified.device_id, verified.key_id
            )?;
            Ok(())
        }
        Err(error) => Err(explain(error, &record)),
    }
}

async fn call(paths: &Paths, args: CallArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let (record, key) = paths.enrolled()?;
    let method = Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| anyhow!("{:?} is not an HTTP method", args.method))?;
    let body = match (&args.data, &args.data_file) {
        (Some(json), _) => {
            serde_json::from_str::<serde_json::Value>(json).context("--data is not valid JSON")?;
            json.clone().into_bytes()
        }
        (None, Some(path)) => read_body(path)?,
        (None, None) => Vec::new(),
    };
    let client = client(&record, key)?;
    let mut request = client.request(method, &args.path);
    if !body.is_empty() {
        request = request.header("content-type", "application/json");
    }
    if args.stream {
        request = request.header("accept", "text/event-stream");
    }
    for header in &args.headers {
        let (name, value) =
            header.split_once(':').with_context(|| format!("header {header:?} is not \"Name: value\""))?;
        request = request.header(name.trim(), value.trim());
    }
    let response = request.body(body).send().await.map_err(|e| explain(e, &record))?;
    let mut response = match check(response).await {
        Ok(response) => response,
        Err(Error::Status { status: 404, body }) if !args.path.starts_with("/api/v1/") => {
            bail!(
                "the server answered 404: {body}\nSign and send the full route, e.g. /api/v1/proxy{}",
                args.path
            )
        }
        Err(error) => return Err(explain(error, &record)),
    };
    let server = record.server.as_str();
    let read_error = |e: reqwest::Error| anyhow!("the response from {server} was cut off: {e}");
    if args.stream {
        while let Some(chunk) = response.chunk().await.map_err(read_error)? {
            out.write_all(&chunk)?;
            out.flush()?;
        }
    } else {
        let bytes = response.bytes().await.map_err(read_error)?;
        out.write_all(&bytes)?;
        if !bytes.ends_with(b"\n") {
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    Ok(())
}

fn read_body(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path == Path::new("-") {
        let mut body = Vec::new();
        std::io::stdin().read_to_end(&mut body).context("cannot read the body from standard input")?;
        return Ok(body);
    }
    std::fs::read(path).with_context(|| format!("cannot read the body from {}", path.display()))
}

fn whoami(paths: &Paths, out: &mut impl Write) -> anyhow::Result<()> {
    let (record, _) = paths.enrolled()?;
    let seen = record
        .checked_at
        .as_deref()
        .map_or_else(|| format!("at enrollment, {}", record.enrolled_at), |at| format!("last checked {at}"));
    writeln!(out, "device    {}", record.device_id)?;
    writeln!(out, "keyId     {}", record.key_id)?;
    writeln!(out, "label     {}", record.label)?;
    writeln!(out, "server    {}", record.server)?;
    writeln!(out, "status    {} ({seen})", record.status)?;
    writeln!(out, "project   {}", record.masked_project_key())?;
    writeln!(out, "key file  {}", paths.key.display())?;
    Ok(())
}

fn forget(paths: &Paths, out: &mut impl Write) -> anyhow::Result<()> {
    let record = EnrollmentRecord::load(&paths.record).ok().flatten();
    let had_key = paths.store().delete()?;
    let had_record = EnrollmentRecord::delete(&paths.record)?;
    if !had_key && !had_record {
        bail!("nothing to forget: no device key at {}", paths.key.display());
    }
    match record {
        Some(record) => writeln!(
            out,
            "Forgot device {} (keyId {}): deleted its key and enrollment record. The server still lists the \
             device; ask an administrator to revoke it if it should not be used again.",
            record.device_id, record.key_id
        )?,
        None => writeln!(out, "Deleted the device key at {}.", paths.key.display())?,
    }
    Ok(())
}
