//! `keyguard user create`: how the first admin comes to exist without a public sign-up.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::{Context as _, bail};
use secrecy::{ExposeSecret as _, SecretString};
use services::caller::Caller;
use services::users::{self, NewUser};

use super::open_platform;
use crate::cli::{CreateUserArgs, UserCommand};
use crate::config::Config;

pub async fn run(config: &Config, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Create(args) => create(config, args).await,
    }
}

async fn create(config: &Config, args: CreateUserArgs) -> anyhow::Result<()> {
    // Read before touching the store: a missing password should not leave a half-done run.
    let password = read_password(&args.email)?;
    let platform = open_platform(config).await?;
    let name = args.name.unwrap_or_else(|| args.email.split('@').next().unwrap_or_default().to_owned());
    let input = NewUser { email: args.email, name, role: args.role, password };
    let result = users::create(&platform, &Caller::system("cli"), input).await;
    platform.db.close().await;
    let user = result.context("cannot create the user")?;
    println!("created user {} <{}> as {}", user.id, user.email, user.role);
    Ok(())
}

/// One line from standard input, without its line ending; on a terminal, a prompt that does not
/// echo, asked twice so that a typo does not lock the admin out.
fn read_password(email: &str) -> anyhow::Result<SecretString> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        let first = SecretString::from(
            rpassword::prompt_password(format!("Password for {email}: "))
                .context("cannot read the password")?,
        );
        let again = SecretString::from(
            rpassword::prompt_password("The same password again: ").context("cannot read the password")?,
        );
        if first.expose_secret() != again.expose_secret() {
            bail!("the two passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line).context("cannot read the password from standard input")?;
        let end = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(end);
        SecretString::from(line)
    };
    if password.expose_secret().is_empty() {
        bail!("the password is empty: write it as one line on standard input");
    }
    Ok(password)
}
