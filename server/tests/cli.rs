//! The `keyguard` binary as an operator meets it: clear refusal of bad configuration, and
//! `migrate` preparing a database.

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
