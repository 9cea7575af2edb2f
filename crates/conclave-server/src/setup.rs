//! First-start setup: the data directory, generated API credentials and the
//! TLS certificate.

use std::io::Write;
use std::path::{Path, PathBuf};

use conclave_token::{ApiKey, ApiSecret};
use serde::{Deserialize, Serialize};

use crate::config::Config;

/// Errors of the setup steps.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot use {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
    #[error("cannot make a certificate: {0}")]
    Certificate(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SetupError + '_ {
    move |source| SetupError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct StoredKeys {
    api_key: String,
    api_secret: String,
}

/// The API key and secret: from the configuration, else from the data
/// directory, else newly generated there. The flag says whether they were
/// generated now.
pub fn api_credentials(config: &Config) -> Result<(ApiKey, ApiSecret, bool), SetupError> {
    if !config.auth.api_key.is_empty() {
        return Ok((
            ApiKey::new(&config.auth.api_key),
            ApiSecret::new(&config.auth.api_secret),
            false,
        ));
    }
    let dir = &config.server.data_dir;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join("keys.toml");
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let k: StoredKeys = toml::from_str(&text).map_err(|e| SetupError::Damaged {
            path: path.clone(),
            reason: e.message().to_owned(),
        })?;
        if k.api_key.is_empty() || k.api_secret.len() < 32 {
            return Err(SetupError::Damaged {
                path,
                reason: "key or secret too short".into(),
            });
        }
        return Ok((ApiKey::new(k.api_key), ApiSecret::new(k.api_secret), false));
    }
    let k = StoredKeys {
        api_key: format!("API{}", conclave_types::random_base62(12)),
        // 48 base62 characters: about 285 bits.
        api_secret: conclave_types::random_base62(48),
    };
    let text = toml::to_string(&k).map_err(|e| SetupError::Damaged {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    write_private(&path, text.as_bytes())?;
    Ok((ApiKey::new(k.api_key), ApiSecret::new(k.api_secret), true))
}

/// Certificate and key files for HTTPS, or `None` for plain HTTP (loopback
/// only). Without configured files a self-signed certificate is made once.
pub fn tls_files(config: &Config) -> Result<Option<(PathBuf, PathBuf)>, SetupError> {
    if !config.http.tls_cert.is_empty() {
        return Ok(Some((
            PathBuf::from(&config.http.tls_cert),
            PathBuf::from(&config.http.tls_key),
        )));
    }
    if config.http_is_loopback() {
        return Ok(None);
    }
    let dir = config.server.data_dir.join("tls");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() {
        return Ok(Some((cert, key)));
    }
    let mut names = vec!["localhost".to_owned()];
    for ip in config
        .announced()
        .iter()
        .map(|a| a.ip())
        .chain([config.http.listen.ip()])
    {
        if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
            names.push(ip.to_string());
        }
    }
    let made =
        rcgen::generate_simple_self_signed(names).map_err(|e| SetupError::Certificate(e.to_string()))?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, made.cert.pem()).map_err(io(&cert))?;
    Ok(Some((cert, key)))
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), SetupError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(contents).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_in(dir: &Path) -> Config {
        let mut c = Config::default();
        c.server.data_dir = dir.to_owned();
        c
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "conclave-setup-{name}-{}",
            conclave_types::random_base62(8)
        ));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn credentials_are_generated_once_and_private() {
        let dir = temp_dir("keys");
        let c = config_in(&dir);
        let (k1, s1, new1) = api_credentials(&c).expect("first");
        let (k2, s2, new2) = api_credentials(&c).expect("second");
        assert!(new1 && !new2);
        assert_eq!(k1.as_str(), k2.as_str());
        assert_eq!(s1.expose(), s2.expose());
        assert!(s1.expose().len() >= 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("keys.toml"))
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "secret file readable by others");
        }
        std::fs::write(dir.join("keys.toml"), "garbage = [").expect("damage");
        assert!(matches!(api_credentials(&c), Err(SetupError::Damaged { .. })));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn plain_http_only_on_loopback() {
        let dir = temp_dir("tls");
        let mut c = config_in(&dir);
        assert!(tls_files(&c).expect("loopback").is_none());
        c.http.listen = "0.0.0.0:8443".parse().expect("addr");
        let (cert, key) = tls_files(&c).expect("self-signed").expect("tls required");
        assert!(
            std::fs::read_to_string(cert)
                .expect("cert")
                .contains("BEGIN CERTIFICATE")
        );
        assert!(std::fs::read_to_string(key).expect("key").contains("PRIVATE KEY"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
