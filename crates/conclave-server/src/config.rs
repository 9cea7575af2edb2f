//! Configuration: defaults, then a TOML file, then `CONCLAVE_<SECTION>_<KEY>`
//! environment variables, then command-line flags.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The whole configuration. Every field has a documented default.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSection,
    pub http: HttpSection,
    pub media: MediaSection,
    pub auth: AuthSection,
    pub rooms: RoomsSection,
    pub log: LogSection,
    pub database: DatabaseSection,
    pub smtp: SmtpSection,
    pub accounts: AccountsSection,
    pub meetings: MeetingsSection,
    /// OpenID Connect providers (`[[oidc]]` tables; file only).
    pub oidc: Vec<OidcSection>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Where generated secrets, certificates and data live.
    pub data_dir: PathBuf,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("conclave-data"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Address of the HTTP(S) listener: web app, signalling, API.
    pub listen: SocketAddr,
    /// PEM certificate chain. Empty: plain HTTP on loopback, otherwise a
    /// self-signed certificate made at first start.
    pub tls_cert: String,
    /// PEM private key for `tls_cert`.
    pub tls_key: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7880)),
            tls_cert: String::new(),
            tls_key: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaSection {
    /// The UDP port of the first media engine; engine `i` uses
    /// `udp_port + i`. 0: each engine takes a free port.
    pub udp_port: u16,
    /// Media engines, each a task with its own socket, every room on one of
    /// them. 0: one per core.
    pub workers: u16,
    /// Local address the media socket binds to. Unset: 127.0.0.1 when every
    /// announced address is loopback, else 0.0.0.0. Replies leave from the
    /// address the kernel picks for the destination, so on a host with
    /// several addresses bind to the announced one.
    pub bind: Option<IpAddr>,
    /// Addresses announced to clients as ICE candidates (the public address
    /// when behind NAT). Empty: the HTTP listen address when it is specific,
    /// else 127.0.0.1.
    pub announce: Vec<IpAddr>,
}

impl Default for MediaSection {
    fn default() -> Self {
        Self {
            udp_port: 7882,
            workers: 0,
            bind: None,
            announce: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// API key for access tokens. Empty: generated at first start and kept
    /// in the data directory.
    pub api_key: String,
    /// API secret for `api_key` (at least 32 characters).
    pub api_secret: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoomsSection {
    /// Let anyone who reaches the web app join any room by name through
    /// `/api/join`. Unset: on when HTTP listens on loopback only.
    pub open_join: Option<bool>,
    /// Seconds an unused room lives.
    pub empty_timeout: u32,
    /// Seconds a room lives after the last participant left.
    pub departure_timeout: u32,
    /// Participants per room, 0 for no limit.
    pub max_participants: u32,
}

impl Default for RoomsSection {
    fn default() -> Self {
        Self {
            open_join: None,
            empty_timeout: 300,
            departure_timeout: 20,
            max_participants: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A `tracing` filter, e.g. `info` or `info,conclave_signal=debug`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSection {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`. Empty: SQLite
    /// in `DATA_DIR/conclave.db`.
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpSection {
    /// Mail server. Empty: mails are written to `DATA_DIR/mail/`.
    pub host: String,
    pub port: u16,
    /// `starttls` (required STARTTLS), `tls` (implicit TLS) or `none`
    /// (loopback relays only).
    pub security: String,
    pub username: String,
    pub password: String,
    /// Sender address, e.g. `Conclave <noreply@example.org>`.
    pub from: String,
}

impl Default for SmtpSection {
    fn default() -> Self {
        Self {
            host: String::new(),
            port: 587,
            security: "starttls".into(),
            username: String::new(),
            password: String::new(),
            from: "Conclave <noreply@localhost>".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsSection {
    /// Accounts and sign-in (`/api/account`, the account pages).
    pub enabled: bool,
    /// The address users reach the server at (links in mails, passkeys,
    /// OpenID redirects). Empty: `http://localhost:PORT` on loopback, else
    /// `https://ADDRESS:PORT`.
    pub public_url: String,
    /// Whether anyone may register; otherwise administrators invite.
    pub self_registration: bool,
    /// Require a second factor of every user (administrators always need one).
    pub require_second_factor: bool,
    pub min_password_length: u32,
    /// A file of refused passwords, one a line, besides the built-in list.
    pub refused_passwords_file: String,
    pub session_idle_minutes: u32,
    pub session_absolute_hours: u32,
    /// Argon2id memory in KiB (at least 19456), passes (at least 2), lanes.
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client (for
    /// sign-in throttling by address).
    pub trusted_proxies: Vec<IpAddr>,
}

impl Default for AccountsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            public_url: String::new(),
            self_registration: true,
            require_second_factor: false,
            min_password_length: 12,
            refused_passwords_file: String::new(),
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            argon2_memory_kib: 19 * 1024,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeetingsSection {
    /// Whether hosts may let in people without an account (guests).
    pub allow_guests: bool,
    /// Largest file shared in a meeting, in bytes.
    pub max_file_bytes: u64,
}

impl Default for MeetingsSection {
    fn default() -> Self {
        Self {
            allow_guests: false,
            max_file_bytes: 10 * 1024 * 1024,
        }
    }
}

/// One OpenID Connect provider.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OidcSection {
    /// Short name in URLs: `a-z`, `0-9`, `-`.
    pub id: String,
    /// Shown on the sign-in button.
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes besides `openid`. Empty: `email` and `profile`.
    pub scopes: Vec<String>,
    /// Claim with the user's groups or roles; empty: no role mapping.
    pub role_claim: String,
    /// Values of `role_claim` that make an administrator.
    pub admin_values: Vec<String>,
    /// Claims kept as the user's attributes.
    pub attribute_claims: Vec<String>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Most media engines one process runs.
const MAX_WORKERS: u16 = 256;

const SECTIONS: [&str; 10] = [
    "server", "http", "media", "auth", "rooms", "log", "database", "smtp", "accounts", "meetings",
];

impl Config {
    /// Loads the configuration from an optional file and the environment.
    pub fn load(
        file: Option<&Path>,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut doc = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("CONCLAVE_") else {
                continue;
            };
            let lower = rest.to_ascii_lowercase();
            let Some(section) = SECTIONS.iter().find(|s| lower.starts_with(&format!("{s}_"))) else {
                continue;
            };
            let key = &lower[section.len() + 1..];
            let table = doc
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(table) = table.as_table_mut() else {
                return Err(ConfigError::Invalid(format!("[{section}] must be a table")));
            };
            table.insert(key.to_owned(), env_value(section, key, &value));
        }
        let config: Config = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.http.tls_cert.is_empty() != self.http.tls_key.is_empty() {
            return Err(ConfigError::Invalid(
                "http.tls_cert and http.tls_key go together".into(),
            ));
        }
        if !self.auth.api_key.is_empty() && self.auth.api_secret.len() < 32 {
            return Err(ConfigError::Invalid(
                "auth.api_secret must have at least 32 characters".into(),
            ));
        }
        if self.auth.api_key.is_empty() != self.auth.api_secret.is_empty() {
            return Err(ConfigError::Invalid(
                "auth.api_key and auth.api_secret go together".into(),
            ));
        }
        if !["starttls", "tls", "none"].contains(&self.smtp.security.as_str()) {
            return Err(ConfigError::Invalid(
                "smtp.security must be starttls, tls or none".into(),
            ));
        }
        if self.accounts.min_password_length < 8 {
            return Err(ConfigError::Invalid(
                "accounts.min_password_length must be at least 8".into(),
            ));
        }
        if self.accounts.session_idle_minutes == 0 || self.accounts.session_absolute_hours == 0 {
            return Err(ConfigError::Invalid("session timeouts must be positive".into()));
        }
        if self.accounts.argon2_memory_kib < 19 * 1024 || self.accounts.argon2_iterations < 2 {
            return Err(ConfigError::Invalid(
                "accounts.argon2_memory_kib must be at least 19456 and argon2_iterations at least 2".into(),
            ));
        }
        if self.media.workers > MAX_WORKERS {
            return Err(ConfigError::Invalid(format!(
                "media.workers must be at most {MAX_WORKERS}"
            )));
        }
        if self.media.udp_port != 0 && usize::from(self.media.udp_port) + self.media_workers() - 1 > 65535 {
            return Err(ConfigError::Invalid(
                "media.udp_port + media.workers - 1 must be a port number".into(),
            ));
        }
        let mut ids = std::collections::HashSet::new();
        for p in &self.oidc {
            if p.id.is_empty() || p.issuer.is_empty() || p.client_id.is_empty() {
                return Err(ConfigError::Invalid(
                    "every [[oidc]] needs id, issuer and client_id".into(),
                ));
            }
            if !ids.insert(p.id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "[[oidc]] id {:?} appears twice",
                    p.id
                )));
            }
        }
        Ok(())
    }

    /// How many media engines run: `media.workers`, or one per core.
    pub fn media_workers(&self) -> usize {
        match self.media.workers {
            0 => std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(usize::from(MAX_WORKERS)),
            n => usize::from(n),
        }
    }

    /// Whether HTTP listens on loopback only (plain HTTP allowed there).
    pub fn http_is_loopback(&self) -> bool {
        self.http.listen.ip().is_loopback()
    }

    /// The address the media socket binds to.
    pub fn media_bind(&self) -> SocketAddr {
        let ip = self.media.bind.unwrap_or_else(|| {
            if self.announced().iter().all(|a| a.ip().is_loopback()) {
                IpAddr::from([127, 0, 0, 1])
            } else {
                IpAddr::from([0, 0, 0, 0])
            }
        });
        SocketAddr::new(ip, self.media.udp_port)
    }

    /// The public address of the server for links, passkeys and OpenID.
    pub fn public_url(&self) -> String {
        if !self.accounts.public_url.is_empty() {
            return self.accounts.public_url.clone();
        }
        let port = self.http.listen.port();
        if self.http_is_loopback() {
            format!("http://localhost:{port}/")
        } else if self.http.listen.ip().is_unspecified() {
            format!("https://localhost:{port}/")
        } else {
            let ip = self.http.listen.ip();
            match ip {
                IpAddr::V6(v6) => format!("https://[{v6}]:{port}/"),
                IpAddr::V4(v4) => format!("https://{v4}:{port}/"),
            }
        }
    }

    /// Whether `/api/join` is open.
    pub fn open_join(&self) -> bool {
        self.rooms.open_join.unwrap_or_else(|| self.http_is_loopback())
    }

    /// The media addresses announced to clients.
    pub fn announced(&self) -> Vec<SocketAddr> {
        let ips = if !self.media.announce.is_empty() {
            self.media.announce.clone()
        } else if !self.http.listen.ip().is_unspecified() {
            vec![self.http.listen.ip()]
        } else {
            vec![IpAddr::from([127, 0, 0, 1])]
        };
        ips.into_iter()
            .map(|ip| SocketAddr::new(ip, self.media.udp_port))
            .collect()
    }
}

/// Turns an environment string into the TOML value the key expects.
fn env_value(section: &str, key: &str, raw: &str) -> toml::Value {
    if (section == "media" && key == "announce") || (section == "accounts" && key == "trusted_proxies") {
        return toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| toml::Value::String(s.to_owned()))
                .collect(),
        );
    }
    if let Ok(b) = raw.parse::<bool>() {
        return toml::Value::Boolean(b);
    }
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    toml::Value::String(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn defaults() {
        let c = Config::load(None, env(&[])).expect("defaults load");
        assert_eq!(c.http.listen, "127.0.0.1:7880".parse().expect("addr"));
        assert_eq!(c.media.udp_port, 7882);
        assert!(c.open_join());
        assert_eq!(c.announced(), vec!["127.0.0.1:7882".parse().expect("addr")]);
        assert_eq!(c.media_bind(), "127.0.0.1:7882".parse().expect("addr"));
    }

    #[test]
    fn environment_overrides() {
        let c = Config::load(
            None,
            env(&[
                ("CONCLAVE_HTTP_LISTEN", "0.0.0.0:8443"),
                ("CONCLAVE_MEDIA_UDP_PORT", "40000"),
                ("CONCLAVE_MEDIA_ANNOUNCE", "192.0.2.10, 198.51.100.7"),
                ("CONCLAVE_SERVER_DATA_DIR", "/var/lib/conclave"),
                ("CONCLAVE_AUTH_API_KEY", "APIkey"),
                ("CONCLAVE_AUTH_API_SECRET", "0123456789abcdef0123456789abcdef"),
                ("CONCLAVE_ROOMS_OPEN_JOIN", "true"),
                ("UNRELATED", "x"),
            ]),
        )
        .expect("env config");
        assert_eq!(c.http.listen.port(), 8443);
        assert!(!c.http_is_loopback());
        assert_eq!(c.media.udp_port, 40000);
        assert_eq!(c.announced().len(), 2);
        assert_eq!(c.media_bind(), "0.0.0.0:40000".parse().expect("addr"));
        assert_eq!(c.server.data_dir, PathBuf::from("/var/lib/conclave"));
        assert_eq!(c.auth.api_key, "APIkey");
        assert!(c.open_join());
    }

    #[test]
    fn account_settings() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert!(c.accounts.enabled);
        assert_eq!(c.public_url(), "http://localhost:7880/");
        let c = Config::load(
            None,
            env(&[
                ("CONCLAVE_SMTP_HOST", "mail.example.org"),
                ("CONCLAVE_SMTP_SECURITY", "tls"),
                ("CONCLAVE_ACCOUNTS_SELF_REGISTRATION", "false"),
                ("CONCLAVE_DATABASE_URL", "postgres://conclave@db/conclave"),
                ("CONCLAVE_ACCOUNTS_TRUSTED_PROXIES", "10.0.0.1, ::1"),
            ]),
        )
        .expect("env");
        assert_eq!(c.accounts.trusted_proxies.len(), 2);
        assert_eq!(c.smtp.security, "tls");
        assert!(!c.accounts.self_registration);
        assert!(c.database.url.starts_with("postgres://"));
        for bad in [
            ("CONCLAVE_SMTP_SECURITY", "ssl"),
            ("CONCLAVE_ACCOUNTS_ARGON2_MEMORY_KIB", "4096"),
            ("CONCLAVE_ACCOUNTS_MIN_PASSWORD_LENGTH", "4"),
        ] {
            assert!(Config::load(None, env(&[bad])).is_err(), "{bad:?}");
        }
        let dir = std::env::temp_dir().join(format!("conclave-cfg-{}", conclave_types::random_base62(8)));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[[oidc]]\nid = \"corp\"\nname = \"Corp\"\nissuer = \"https://id.example.org/\"\nclient_id = \"c\"\n",
        )
        .expect("write");
        let c = Config::load(Some(&file), env(&[])).expect("oidc");
        assert_eq!(c.oidc.len(), 1);
        std::fs::write(&file, "[[oidc]]\nid = \"corp\"\n").expect("write");
        assert!(Config::load(Some(&file), env(&[])).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn media_workers_default_to_the_cores_and_their_ports_must_fit() {
        let c = Config::load(None, env(&[])).expect("defaults");
        assert_eq!(c.media.workers, 0);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(c.media_workers(), cores.min(256));
        let c = Config::load(None, env(&[("CONCLAVE_MEDIA_WORKERS", "3")])).expect("three");
        assert_eq!(c.media_workers(), 3);
        let e = Config::load(None, env(&[("CONCLAVE_MEDIA_WORKERS", "257")])).expect_err("too many");
        assert!(e.to_string().contains("media.workers"), "{e}");
        let e = Config::load(
            None,
            env(&[
                ("CONCLAVE_MEDIA_UDP_PORT", "65535"),
                ("CONCLAVE_MEDIA_WORKERS", "2"),
            ]),
        )
        .expect_err("the second engine has no port");
        assert!(e.to_string().contains("media.udp_port"), "{e}");
        let c = Config::load(
            None,
            env(&[
                ("CONCLAVE_MEDIA_UDP_PORT", "0"),
                ("CONCLAVE_MEDIA_WORKERS", "256"),
            ]),
        )
        .expect("free ports need no range");
        assert_eq!(c.media_workers(), 256);
    }

    #[test]
    fn bad_values_are_explained() {
        let e =
            Config::load(None, env(&[("CONCLAVE_MEDIA_UDP_PORT", "99999")])).expect_err("port out of range");
        assert!(e.to_string().contains("invalid configuration"));
        let e = Config::load(None, env(&[("CONCLAVE_HTTP_NOPE", "1")])).expect_err("unknown key");
        assert!(e.to_string().contains("nope"));
        let e = Config::load(
            None,
            env(&[
                ("CONCLAVE_AUTH_API_KEY", "k"),
                ("CONCLAVE_AUTH_API_SECRET", "short"),
            ]),
        )
        .expect_err("short secret");
        assert!(e.to_string().contains("32"));
    }
}
