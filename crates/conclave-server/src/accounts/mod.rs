//! Accounts over HTTP: the `/api/account` routes, session cookies, CSRF
//! checks, and the setup of the accounts service from the configuration.
//!
//! Every state-changing request must come from this server's own pages:
//! its `Origin` must name the host it was sent to, and once a session
//! exists it must carry the session's CSRF token in `X-CSRF-Token`. The
//! session cookie is `__Host-conclave_session` (Secure, HttpOnly,
//! SameSite=Strict, path `/`); browsers keep Secure cookies on
//! `http://localhost` and `http://127.0.0.1`, which count as secure
//! contexts, and the server speaks plain HTTP nowhere else.

mod routes;

use std::path::Path;
use std::sync::Arc;

use conclave_accounts::mail::{Mailer, SmtpSecurity, SmtpSettings};
use conclave_accounts::oidc::ProviderSettings;
use conclave_accounts::{Accounts, Settings, Store, Url};

use crate::config::Config;

pub(crate) use routes::{cookie, request_client, router, same_origin};

/// The name of the session cookie.
pub(crate) const SESSION_COOKIE: &str = "__Host-conclave_session";
/// The cookie that binds an OpenID sign-in to the browser that started it.
pub(crate) const OIDC_COOKIE: &str = "__Host-conclave_oidc";

/// The key of audit pseudonyms and hashed addresses: 32 random bytes in
/// `DATA_DIR/accounts.key`, made at first start, readable by the owner only.
fn secret_key(data_dir: &Path) -> Result<[u8; 32], String> {
    let path = data_dir.join("accounts.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let bytes: Vec<u8> = (0..text.trim().len())
            .step_by(2)
            .filter_map(|i| {
                text.trim()
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        return bytes
            .try_into()
            .map_err(|_| format!("{} is damaged: expected 64 hex digits", path.display()));
    }
    std::fs::create_dir_all(data_dir).map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let key: [u8; 32] = rand::random();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options
        .open(&path)
        .and_then(|mut f| f.write_all(hex.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(key)
}

/// Builds the accounts service: database, mailer, rules and providers.
pub(crate) async fn service(config: &Config) -> Result<Arc<Accounts>, String> {
    let data_dir = &config.server.data_dir;
    let store = if config.database.url.is_empty() {
        Store::open_sqlite(&data_dir.join("conclave.db")).await
    } else {
        Store::open(&config.database.url).await
    }
    .map_err(|e| e.to_string())?;
    let public_url =
        Url::parse(&config.public_url()).map_err(|_| "accounts.public_url is not a URL".to_owned())?;
    let mut settings = Settings::new(public_url, secret_key(data_dir)?);
    let a = &config.accounts;
    settings.self_registration = a.self_registration;
    settings.require_second_factor = a.require_second_factor;
    settings.password.min_chars = a.min_password_length as usize;
    if !a.refused_passwords_file.is_empty() {
        let text = std::fs::read_to_string(&a.refused_passwords_file)
            .map_err(|e| format!("cannot read {}: {e}", a.refused_passwords_file))?;
        settings.password.add_list(&text);
    }
    settings.session_idle = i64::from(a.session_idle_minutes) * 60;
    settings.session_absolute = i64::from(a.session_absolute_hours) * 3600;
    settings.hash.memory_kib = a.argon2_memory_kib;
    settings.hash.iterations = a.argon2_iterations;
    settings.hash.parallelism = a.argon2_parallelism;
    settings.oidc = config
        .oidc
        .iter()
        .map(|o| ProviderSettings {
            id: o.id.clone(),
            name: if o.name.is_empty() {
                o.id.clone()
            } else {
                o.name.clone()
            },
            issuer: o.issuer.clone(),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            scopes: if o.scopes.is_empty() {
                vec!["email".into(), "profile".into()]
            } else {
                o.scopes.clone()
            },
            role_claim: o.role_claim.clone(),
            admin_values: o.admin_values.clone(),
            attribute_claims: o.attribute_claims.clone(),
        })
        .collect();
    let s = &config.smtp;
    let mailer = if s.host.is_empty() {
        let dir = data_dir.join("mail");
        let m = Mailer::folder(dir.clone(), &s.from).map_err(|e| e.to_string())?;
        tracing::warn!(folder = %dir.display(), "no SMTP server is configured: mails are written to this folder");
        println!(
            "  No SMTP server is configured: mails are written to {}",
            dir.display()
        );
        m
    } else {
        let security = match s.security.as_str() {
            "tls" => SmtpSecurity::Tls,
            "none" => SmtpSecurity::None,
            _ => SmtpSecurity::StartTls,
        };
        Mailer::smtp(
            &SmtpSettings {
                host: s.host.clone(),
                port: s.port,
                security,
                username: s.username.clone(),
                password: s.password.clone(),
            },
            &s.from,
        )
        .map_err(|e| e.to_string())?
    };
    let accounts = Accounts::new(store, settings, mailer).map_err(|e| e.to_string())?;
    Ok(Arc::new(accounts))
}

/// Removes expired sessions, links and throttle entries every ten minutes.
pub(crate) fn spawn_housekeeping(accounts: Arc<Accounts>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            tick.tick().await;
            if let Err(e) = accounts.housekeeping(crate::unix_now() as i64).await {
                tracing::warn!(error = %e, "account housekeeping failed");
            }
        }
    });
}

#[cfg(test)]
mod tests;
