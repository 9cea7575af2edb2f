//! The crypto of str0m connections: str0m's own (dimpl on aws-lc-rs), with
//! one DTLS configuration shared by every connection of the process.
//!
//! str0m's provider builds a new configuration for each connection, and
//! building one checks the whole crypto provider (a key exchange on every
//! group, a signature verified): some 40% of the server's CPU time while
//! many participants joined at once, and as much again in each client.
//! The configuration is the same for every connection, so it is built once
//! per MTU and shared. Give [`provider`] to `RtcConfig::set_crypto_provider`.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{CryptoError, CryptoProvider};

/// The crypto provider for every connection of this process: str0m's
/// default with [`SharedConfigDtls`] in place of its DTLS provider.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    static DTLS: SharedConfigDtls = SharedConfigDtls {
        configs: Mutex::new(Vec::new()),
    };
    PROVIDER
        .get_or_init(|| {
            Arc::new(CryptoProvider {
                dtls_provider: &DTLS,
                ..str0m::crypto::from_feature_flags()
            })
        })
        .clone()
}

/// Makes DTLS instances from one configuration per MTU.
#[derive(Debug)]
struct SharedConfigDtls {
    configs: Mutex<Vec<(Option<usize>, Arc<dimpl::Config>)>>,
}

impl SharedConfigDtls {
    /// The configuration for `mtu`, built on first use.
    fn config(&self, mtu: Option<usize>) -> Result<Arc<dimpl::Config>, CryptoError> {
        let mut configs = self.configs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = configs.iter().find(|(m, _)| *m == mtu) {
            return Ok(c.clone());
        }
        // ICE has checked that the peer answers at its address before DTLS
        // starts, which is what a server cookie would check.
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = Arc::new(
            builder
                .build()
                .map_err(|e| CryptoError::Other(format!("DTLS configuration refused: {e}")))?,
        );
        configs.push((mtu, config.clone()));
        Ok(config)
    }

    #[cfg(test)]
    fn built(&self) -> usize {
        self.configs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl DtlsProvider for SharedConfigDtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        let cert = dimpl::certificate::generate_self_signed_certificate().ok()?;
        Some(DtlsCert {
            certificate: cert.certificate,
            private_key: cert.private_key,
        })
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        dtls_version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let config = self.config(mtu)?;
        let cert = cert.clone();
        let dtls = match dtls_version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => return Err(CryptoError::Other(format!("unsupported DTLS version {other}"))),
        };
        Ok(Box::new(Instance(dtls)))
    }
}

/// One connection's DTLS, as str0m drives it.
struct Instance(dimpl::Dtls);

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DtlsInstance")
    }
}

impl DtlsInstance for Instance {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }

    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }

    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }

    fn send_application_data(&mut self, data: &[u8]) -> Result<usize, DtlsImplError> {
        self.0.send_application_data(data)
    }

    fn is_active(&self) -> bool {
        self.0.is_active()
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }

    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_share_one_configuration_per_mtu() {
        let dtls = SharedConfigDtls {
            configs: Mutex::new(Vec::new()),
        };
        let cert = dtls.generate_certificate().expect("a certificate");
        let now = Instant::now();
        for _ in 0..3 {
            dtls.new_dtls(&cert, now, DtlsVersion::Dtls12, Some(1150))
                .expect("an instance");
        }
        assert_eq!(dtls.built(), 1, "three connections, one configuration");
        dtls.new_dtls(&cert, now, DtlsVersion::Auto, Some(1200))
            .expect("an instance");
        assert_eq!(dtls.built(), 2, "another MTU, another configuration");
        let a = dtls.config(Some(1150)).expect("config");
        let b = dtls.config(Some(1150)).expect("config");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(a.mtu(), 1150);
    }
}
