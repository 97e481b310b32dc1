//! The `keyguard` binary as an operator meets it: clear refusal of bad configuration, and
//! `migrate` preparing a database, creating users, rebuilding the read models and rotating the
//! master key, and proving the event history intact with `audit verify`.

use std::process::Command;

fn keyguard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_keyguard"));
    command.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command
}

#[test]
fn bad_configuration_stops_with_one_sentence_naming_the_variable() {
    let output = keyguard()
        .arg("migrate")
        .env("KEYGUARD_DATABASE_URL", "mysql://root:hunter2@db/keyguard")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("KEYGUARD_DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password must not be echoed: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[test]
fn migrate_creates_the_default_sqlite_store_under_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested/data");
    let output = keyguard().arg("migrate").env("KEYGUARD_DATA_DIR", &data_dir).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(data_dir.join("keyguard.db").is_file());

    // Running it again is harmless.
    let again = keyguard().arg("migrate").env("KEYGUARD_DATA_DIR", &data_dir).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn an_unreachable_postgres_is_reported_not_hung_on() {
    // Port 9 on loopback: nothing listens there, so the connection is refused at once.
    let output = keyguard()
        .arg("migrate")
        .env("KEYGUARD_DATABASE_URL", "postgres://keyguard:secret@127.0.0.1:9/keyguard")
        .env("KEYGUARD_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot open the database"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");
}

/// Runs `keyguard` with `args`, writing `stdin` to its standard input.
fn run_with_stdin(mut command: Command, stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    use std::process::Stdio;
    let mut child =
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn user_create(data_dir: &std::path::Path, email: &str, role: &str, stdin: &str) -> std::process::Output {
    let mut command = keyguard();
    command
        .args(["user", "create", "--email", email, "--role", role, "--name", "Ada Admin"])
        .env("KEYGUARD_DATA_DIR", data_dir);
    run_with_stdin(command, stdin)
}

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn user_create_takes_the_password_on_stdin_and_survives_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");

    let output = user_create(&data_dir, "ada@example.com", "admin", &format!("{PASSWORD}\n"));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("ada@example.com"), "{stdout}");
    let id: uuid::Uuid = stdout
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("the new user's id: {stdout}"));
    for leak in [PASSWORD, "argon2"] {
        assert!(!stdout.contains(leak) && !stderr.contains(leak), "{leak} echoed: {stdout}{stderr}");
    }

    let output =
        keyguard().args(["projections", "rebuild"]).env("KEYGUARD_DATA_DIR", &data_dir).output().unwrap();
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("rebuilt up to event position 1"), "{stdout}");

    // The rebuilt read model still knows the user: the email is taken...
    let output = user_create(&data_dir, "ada@example.com", "operator", &format!("{PASSWORD}\n"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("ada@example.com already exists"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    // ...and reading it through the services shows the admin, with the CLI as its creator.
    let db = services::store::Database::connect(
        &services::store::DatabaseConfig::Sqlite { path: data_dir.join("keyguard.db") },
        1,
    )
    .await
    .unwrap();
    let user = services::read_models::users::get(&db, id).await.unwrap().expect("the user");
    assert_eq!(
        (user.email.as_str(), user.role.as_str(), user.name.as_str()),
        ("ada@example.com", "admin", "Ada Admin")
    );
    let page = services::read_models::audit::list(&db, &Default::default()).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        (page.items[0].actor_type.as_deref(), page.items[0].actor_id.as_deref()),
        (Some("system"), Some("cli"))
    );
    db.close().await;
}

#[test]
fn user_create_explains_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("boss", &format!("{PASSWORD}\n")[..], "role"),
        ("admin", "short\n", "password"),
        ("admin", "\n", "password is empty"),
        ("admin", "", "password is empty"),
    ];
    for (role, stdin, expected) in cases {
        let output = user_create(dir.path(), "eve@example.com", role, stdin);
        assert_eq!(output.status.code(), Some(1), "{role} {stdin:?}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{role} {stdin:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let output = user_create(dir.path(), "not-an-email", "admin", &format!("{PASSWORD}\n"));
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("email"), "{}", text(&output.stderr));
}

#[tokio::test]
async fn master_key_rotate_rewraps_every_data_key() {
    use secrecy::ExposeSecret as _;
    use services::secrets::{MasterKeySource, MasterKeys};

    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path();
    let old = MasterKeys::generate_encoded().unwrap();
    let new = MasterKeys::generate_encoded().unwrap();
    let database = services::store::DatabaseConfig::Sqlite { path: data_dir.join("keyguard.db") };
    let platform = |current: &secrecy::SecretString| {
        let source = MasterKeySource::Inline { current: current.clone(), previous: Vec::new() };
        let database = database.clone();
        async move {
            let db = services::store::Database::connect(&database, 1).await.unwrap();
            db.migrate().await.unwrap();
            services::platform::Platform::new(db, std::sync::Arc::new(MasterKeys::load(&source).unwrap()))
                .unwrap()
        }
    };

    // Two keys sealed under the old master key.
    let secret = "sk-rotate-0123456789abcdefghijklmnop";
    let seeding = platform(&old).await;
    let mut ids = Vec::new();
    for name in ["first", "second"] {
        let input = services::keys::NewKey {
            name: name.into(),
            provider: "openai".into(),
            environment: "production".into(),
            provider_key: secrecy::SecretString::from(secret),
            base_url: None,
            azure_deployment: None,
            azure_api_version: None,
            expires_at: None,
            description: None,
        };
        let caller = services::caller::Caller::system("test");
        ids.push(services::keys::create(&seeding, &caller, input).await.unwrap().key.id);
    }
    seeding.db.close().await;

    let rotate = |current: &secrecy::SecretString, previous: Option<&secrecy::SecretString>| {
        let mut command = keyguard();
        command
            .args(["master-key", "rotate"])
            .env("KEYGUARD_DATA_DIR", data_dir)
            .env("KEYGUARD_MASTER_KEY", current.expose_secret());
        if let Some(previous) = previous {
            command.env("KEYGUARD_PREVIOUS_MASTER_KEYS", previous.expose_secret());
        }
        command.output().unwrap()
    };

    let output = rotate(&new, Some(&old));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("2 data key(s) re-wrapped, 0 already current, 0 failed"), "{stdout}");
    assert!(!stdout.contains(new.expose_secret()) && !stdout.contains(old.expose_secret()), "{stdout}");

    // The new key alone now opens every secret.
    let after = platform(&new).await;
    for id in &ids {
        let sealed = services::read_models::api_keys::sealed_secret(&after.db, *id).await.unwrap().unwrap();
        assert_eq!(after.envelope.open(&sealed, &id.to_string()).await.unwrap().as_str(), secret);
    }
    after.db.close().await;

    // A second run finds nothing left to do, even without the old key.
    let output = rotate(&new, None);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("0 data key(s) re-wrapped, 2 already current, 0 failed"), "{stdout}");

    // A current key that cannot unwrap them (the previous one forgotten) fails loudly.
    let stranger = MasterKeys::generate_encoded().unwrap();
    let output = rotate(&stranger, None);
    assert_eq!(output.status.code(), Some(1));
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(stdout.contains("0 data key(s) re-wrapped, 0 already current, 2 failed"), "{stdout}");
    assert!(stdout.contains("KEYGUARD_PREVIOUS_MASTER_KEYS"), "the failures say what to do: {stdout}");
    assert!(stderr.contains("could not be re-wrapped"), "{stderr}");
}

#[tokio::test]
async fn audit_verify_exits_zero_only_while_the_history_holds() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let output = user_create(&data_dir, "ada@example.com", "admin", &format!("{PASSWORD}\n"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let audit = |args: &[&str]| {
        let mut command = keyguard();
        command.arg("audit").args(args).env("KEYGUARD_DATA_DIR", &data_dir);
        command.output().unwrap()
    };

    let output = audit(&["verify"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("1 event(s) in 1 chain(s) checked"), "{stdout}");
    assert!(stdout.contains("no checkpoint yet"), "{stdout}");

    let output = audit(&["checkpoint"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("checkpoint 1 signed: 1 event(s) in 1 chain(s)"), "{stdout}");

    let output = audit(&["public-key"]);
    assert_eq!(output.status.code(), Some(0));
    let pem = text(&output.stdout);
    assert!(
        pem.starts_with("-----BEGIN PUBLIC KEY-----\n")
            && pem.trim_end().ends_with("-----END PUBLIC KEY-----")
    );
    assert_eq!(text(&audit(&["public-key"]).stdout), pem, "the key derives from the master key: stable");

    // Someone with the database file rewrites the user's creation.
    let db = services::store::Database::connect(
        &services::store::DatabaseConfig::Sqlite { path: data_dir.join("keyguard.db") },
        1,
    )
    .await
    .unwrap();
    let services::store::Database::Sqlite(pool) = &db else { unreachable!("a SQLite file") };
    sqlx::query("UPDATE events SET payload = json_set(payload, '$.role', 'auditor')")
        .execute(pool)
        .await
        .unwrap();
    db.close().await;

    let output = audit(&["verify"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("FIRST PROBLEM: modified at user "), "{stdout}");
    assert!(stdout.contains("sequence 1 (position 1)"), "{stdout}");
    assert!(stderr.contains("does not verify"), "{stderr}");

    let output = audit(&["verify", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["firstProblem"]["kind"], "modified");
    assert_eq!(report["checkpoint"]["number"], 1);

    // A checkpoint is not signed over it.
    let output = audit(&["checkpoint"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("does not verify"), "{}", text(&output.stderr));
}
