//! `dbsync secret`: the key file that encrypts the passwords stored in the
//! metadata database, and encrypted values to store there. No config file is
//! read. Passwords come from standard input (never from the command line,
//! where `ps` and shell history would show them) and are never printed.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use metastore::secrets::{is_encrypted, SecretKey};

/// The most bytes read from standard input: a password or an encrypted one.
const MAX_INPUT: u64 = 64 * 1024;

#[derive(Subcommand)]
pub enum SecretAction {
    /// Create a new random secret key file (mode 0600); never overwrites one.
    Keygen {
        /// Where to write the key, e.g. /etc/dbsync/secret.key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Encrypt a password read from standard input; prints the `enc:v1:…`
    /// value to store as "password" in a connection config.
    Encrypt {
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Check that an `enc:v1:…` value read from standard input decrypts with
    /// the key file; prints OK or why not, never the password.
    DecryptCheck {
        #[arg(long)]
        key_file: PathBuf,
    },
}

pub fn run(action: SecretAction) -> ExitCode {
    let result = match action {
        SecretAction::Keygen { out } => keygen(&out),
        SecretAction::Encrypt { key_file } => encrypt(&key_file),
        SecretAction::DecryptCheck { key_file } => decrypt_check(&key_file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dbsync: {message}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(out: &Path) -> Result<(), String> {
    SecretKey::generate()
        .write_new(out)
        .map_err(|e| e.to_string())?;
    eprintln!(
        "wrote a new secret key to {p} (mode 0600).\n\
         - let only the service user read it: chown <service user> {p} (dbsync for the package)\n\
         - every dbsync node of the fleet needs this same file: copy it, do not generate one per node\n\
         - back it up: passwords encrypted with it cannot be recovered without it",
        p = out.display()
    );
    Ok(())
}

fn encrypt(key_file: &Path) -> Result<(), String> {
    let key = SecretKey::load(key_file).map_err(|e| e.to_string())?;
    let password = read_password()?;
    let sealed = key.encrypt(&password);
    let mut out = io::stdout().lock();
    writeln!(out, "{sealed}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to standard output: {e}"))
}

fn decrypt_check(key_file: &Path) -> Result<(), String> {
    let key = SecretKey::load(key_file).map_err(|e| e.to_string())?;
    let stdin = io::stdin();
    if stdin.is_terminal() {
        eprint!("encrypted value (enc:v1:…): ");
    }
    let input = read_limited(stdin.lock(), "an encrypted value")?;
    let value = input.trim();
    if value.is_empty() {
        return Err("no value on standard input: pipe in the enc:v1:… string to check".into());
    }
    if !is_encrypted(value) {
        return Err(
            "standard input does not hold an encrypted value (it should start with \
                    enc:v1:); a plain-text password must be encrypted with `dbsync secret encrypt`"
                .into(),
        );
    }
    key.decrypt(value).map_err(|e| e.to_string())?;
    println!(
        "OK: the value decrypts with {} and is intact",
        key_file.display()
    );
    Ok(())
}

/// The password: from a terminal one line typed without echo; otherwise all
/// of standard input less one trailing newline.
fn read_password() -> Result<zeroize::Zeroizing<String>, String> {
    let stdin = io::stdin();
    let text = if stdin.is_terminal() {
        read_from_terminal(&stdin)?
    } else {
        read_limited(stdin.lock(), "a password")?
    };
    let mut password = text;
    if password.ends_with('\n') {
        password.pop();
        if password.ends_with('\r') {
            password.pop();
        }
    }
    if password.is_empty() {
        return Err("no password on standard input: pipe it in, e.g. \
                    `printf '%s' \"$PW\" | dbsync secret encrypt --key-file …`"
            .into());
    }
    if password.contains('\n') {
        return Err(
            "standard input holds several lines: give exactly one password (a trailing newline is fine)"
                .into(),
        );
    }
    Ok(password)
}

fn read_limited(input: impl Read, what: &str) -> Result<zeroize::Zeroizing<String>, String> {
    let mut text = zeroize::Zeroizing::new(String::new());
    input
        .take(MAX_INPUT + 1)
        .read_to_string(&mut text)
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => format!("standard input is not UTF-8 text ({what})"),
            _ => format!("cannot read standard input: {e}"),
        })?;
    if text.len() as u64 > MAX_INPUT {
        return Err(format!(
            "standard input is larger than {MAX_INPUT} bytes: that is not {what}"
        ));
    }
    Ok(text)
}

/// Prompts on stderr and reads one line with the terminal's echo turned off.
fn read_from_terminal(stdin: &io::Stdin) -> Result<zeroize::Zeroizing<String>, String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    eprint!("password to encrypt (not echoed): ");
    let saved = tcgetattr(stdin).map_err(|e| format!("cannot read the terminal settings: {e}"))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(stdin, OptionalActions::Flush, &quiet)
        .map_err(|e| format!("cannot turn off the terminal's echo: {e}"))?;
    let mut line = zeroize::Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    let restored = tcsetattr(stdin, OptionalActions::Flush, &saved);
    eprintln!();
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    restored.map_err(|e| format!("cannot restore the terminal's echo: {e}"))?;
    Ok(line)
}
