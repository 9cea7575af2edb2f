//! Outgoing mail: SMTP with implicit TLS or STARTTLS through lettre, or,
//! with no SMTP server configured, `.eml` files in a folder.

use std::path::PathBuf;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::AccountsError;

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// No encryption: only for a relay on loopback.
    None,
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: String,
    pub password: String,
}

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub body: String,
}

/// Delivers mail.
#[derive(Clone)]
pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// Writes each message to a file in this folder.
    Folder { dir: PathBuf, from: Mailbox },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Smtp { .. } => f.write_str("Mailer::Smtp"),
            Mailer::Folder { dir, .. } => write!(f, "Mailer::Folder({})", dir.display()),
        }
    }
}

impl Mailer {
    /// An SMTP mailer. `None` security is refused unless the host is loopback.
    pub fn smtp(settings: &SmtpSettings, from: &str) -> Result<Self, AccountsError> {
        let from: Mailbox = from
            .parse()
            .map_err(|_| AccountsError::Invalid("the sender address (smtp.from) is not valid"))?;
        let port = settings.port;
        let builder = match settings.security {
            SmtpSecurity::Tls | SmtpSecurity::StartTls => {
                let params = TlsParameters::new(settings.host.clone())
                    .map_err(|e| AccountsError::Mail(format!("TLS setup: {e}")))?;
                let tls = if settings.security == SmtpSecurity::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                };
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone()).tls(tls)
            }
            SmtpSecurity::None => {
                let loopback = settings.host == "localhost"
                    || settings
                        .host
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback());
                if !loopback {
                    return Err(AccountsError::Invalid(
                        "unencrypted SMTP is allowed only to a relay on loopback; use smtp.security = \"starttls\" or \"tls\"",
                    ));
                }
                AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
            }
        };
        let mut builder = builder
            .port(port)
            .timeout(Some(std::time::Duration::from_secs(20)));
        if !settings.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                settings.username.clone(),
                settings.password.clone(),
            ));
        }
        Ok(Mailer::Smtp {
            transport: builder.build(),
            from,
        })
    }

    /// A mailer that writes messages into `dir` (created, private to the owner).
    pub fn folder(dir: PathBuf, from: &str) -> Result<Self, AccountsError> {
        let from: Mailbox = from
            .parse()
            .map_err(|_| AccountsError::Invalid("the sender address (smtp.from) is not valid"))?;
        std::fs::create_dir_all(&dir).map_err(|e| AccountsError::Mail(format!("{}: {e}", dir.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        Ok(Mailer::Folder { dir, from })
    }

    /// Sends one message.
    pub async fn send(&self, mail: &Mail) -> Result<(), AccountsError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|_| AccountsError::Invalid("the e-mail address is not valid"))?;
        let from = match self {
            Mailer::Smtp { from, .. } | Mailer::Folder { from, .. } => from.clone(),
        };
        // Plain ASCII goes as 7bit so that links stay readable in the raw
        // message; anything else gets lettre's choice of encoding.
        let body = Body::new_with_encoding(mail.body.clone(), ContentTransferEncoding::SevenBit)
            .unwrap_or_else(Body::new);
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(mail.subject.clone())
            .message_id(None)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| AccountsError::Mail(format!("building the message: {e}")))?;
        match self {
            Mailer::Smtp { transport, .. } => {
                transport
                    .send(message)
                    .await
                    .map_err(|e| AccountsError::Mail(scrub(&e.to_string())))?;
            }
            Mailer::Folder { dir, .. } => {
                let name = format!(
                    "{}-{}.eml",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis()),
                    conclave_types::random_base62(8)
                );
                let path = dir.join(name);
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_private(&path, &bytes))
                    .await
                    .map_err(|e| AccountsError::Mail(e.to_string()))??;
            }
        }
        Ok(())
    }
}

/// An error text without e-mail addresses (it goes to the log).
fn scrub(text: &str) -> String {
    text.split(' ')
        .map(|w| if w.contains('@') { "<address>" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), AccountsError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| AccountsError::Mail(format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| AccountsError::Mail(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn folder_mailer_writes_private_files() {
        let dir = std::env::temp_dir().join(format!("conclave-mail-{}", conclave_types::random_base62(8)));
        let m = Mailer::folder(dir.clone(), "Conclave <noreply@example.org>").expect("mailer");
        m.send(&Mail {
            to: "ada@example.org".into(),
            subject: "Hello".into(),
            body: "Line one\nhttps://example.org/account/confirm#token=abc".into(),
        })
        .await
        .expect("send");
        let files: Vec<_> = std::fs::read_dir(&dir).expect("dir").flatten().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].path()).expect("read");
        assert!(text.contains("To: ada@example.org"));
        assert!(text.contains("Subject: Hello"));
        assert!(text.contains("https://example.org/account/confirm#token=abc"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = files[0].metadata().expect("stat").permissions().mode();
            assert_eq!(mode & 0o077, 0);
        }
        let _ = std::fs::remove_dir_all(dir);
        assert!(
            m.send(&Mail {
                to: "not an address".into(),
                subject: "x".into(),
                body: "x".into()
            })
            .await
            .is_err()
        );
    }

    /// aiosmtpd on a free loopback port, storing mail in a Maildir.
    struct Smtp {
        child: std::process::Child,
        port: u16,
        dir: PathBuf,
    }

    impl Drop for Smtp {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn smtp_server() -> Smtp {
        let installed = std::process::Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "Python's aiosmtpd is missing: python3 -m pip install aiosmtpd==1.4.6 (cargo xtask test installs it)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = std::env::temp_dir().join(format!("conclave-smtp-{}", conclave_types::random_base62(8)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let child = std::process::Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(dir.join("maildir"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Smtp { child, port, dir }
    }

    #[tokio::test]
    async fn smtp_delivers_and_starttls_is_required_when_asked() {
        let server = smtp_server();
        let mail = Mail {
            to: "ada@example.org".into(),
            subject: "Confirm".into(),
            body: "http://localhost:7880/account/confirm#token=abc".into(),
        };
        let settings = SmtpSettings {
            host: "127.0.0.1".into(),
            port: server.port,
            security: SmtpSecurity::None,
            username: String::new(),
            password: String::new(),
        };
        Mailer::smtp(&settings, "noreply@conclave.invalid")
            .expect("mailer")
            .send(&mail)
            .await
            .expect("delivered");
        let inbox = server.dir.join("maildir/new");
        let files: Vec<_> = std::fs::read_dir(&inbox).expect("maildir").flatten().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].path()).expect("read");
        assert!(text.contains("#token=abc"));
        // This server offers no STARTTLS: a mailer that requires it refuses to send in clear.
        let starttls = SmtpSettings {
            security: SmtpSecurity::StartTls,
            ..settings.clone()
        };
        let e = Mailer::smtp(&starttls, "noreply@conclave.invalid")
            .expect("mailer")
            .send(&mail)
            .await
            .expect_err("no clear-text fallback");
        assert!(!e.to_string().contains("ada@"), "{e}");
        let tls = SmtpSettings {
            security: SmtpSecurity::Tls,
            ..settings
        };
        assert!(
            Mailer::smtp(&tls, "noreply@conclave.invalid")
                .expect("mailer")
                .send(&mail)
                .await
                .is_err()
        );
        assert_eq!(std::fs::read_dir(&inbox).expect("maildir").count(), 1);
    }

    #[test]
    fn errors_lose_their_addresses() {
        assert_eq!(
            scrub("permanent error (550): <ada@example.org> no such user"),
            "permanent error (550): <address> no such user"
        );
    }

    #[test]
    fn plaintext_smtp_only_on_loopback() {
        let s = SmtpSettings {
            host: "mail.example.org".into(),
            port: 25,
            security: SmtpSecurity::None,
            username: String::new(),
            password: String::new(),
        };
        assert!(Mailer::smtp(&s, "noreply@example.org").is_err());
        let local = SmtpSettings {
            host: "127.0.0.1".into(),
            ..s.clone()
        };
        assert!(Mailer::smtp(&local, "noreply@example.org").is_ok());
        let tls = SmtpSettings {
            security: SmtpSecurity::StartTls,
            port: 587,
            ..s
        };
        assert!(Mailer::smtp(&tls, "noreply@example.org").is_ok());
    }
}
