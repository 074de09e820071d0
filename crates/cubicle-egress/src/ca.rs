//! The per-install certificate authority that signs the leaf certificates the
//! proxy presents when it intercepts TLS for a credential domain. `ca.pem` is
//! public (the sandbox installs it in each cubicle's trust store); `ca-key.pem`
//! is 0600 and never leaves the host. The CA's name is derived from its key so
//! that reloading it needs no X.509 parser.

use std::fmt;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration as TimeDuration, OffsetDateTime};

use crate::domain::Host;
use crate::error::CaError;
use crate::secrets::{check_private, write_private};

/// File name of the public CA certificate.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA's private key (mode 0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";

/// How long a CA stays valid.
const CA_LIFETIME: TimeDuration = TimeDuration::days(3650);
/// How long a leaf stays valid; far longer than any session that caches it.
const LEAF_LIFETIME: TimeDuration = TimeDuration::days(30);

/// A CA that issues leaf certificates for intercepted domains.
pub struct CertificateAuthority {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    /// One leaf key for every leaf this CA issues in this process: generating
    /// a key per domain would cost time and buy nothing, since the CA key is
    /// what a client trusts.
    leaf_key: KeyPair,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A fresh CA held in memory only (tests, or hosts with nowhere to write).
    pub fn generate() -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let params = ca_params(&key);
        let cert = params.self_signed(&key)?;
        Self::from_parts(cert.pem(), cert.der().clone(), params, key)
    }

    /// Loads `ca.pem` and `ca-key.pem` from `dir`, creating both if neither
    /// exists. A key file that others can read is refused.
    pub fn load_or_create(dir: &Path) -> Result<Self, CaError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CaError::Io { path, source }
        };
        if !cert_path.exists() && !key_path.exists() {
            let ca = Self::generate()?;
            std::fs::create_dir_all(dir).map_err(io(dir))?;
            write_private(&key_path, ca.issuer.key().serialize_pem().as_bytes())
                .map_err(io(&key_path))?;
            std::fs::write(&cert_path, ca.cert_pem.as_bytes()).map_err(io(&cert_path))?;
            return Ok(ca);
        }
        let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
        #[cfg(unix)]
        if check_private(&key_path).is_err() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path)
                .map_err(io(&key_path))?
                .permissions()
                .mode();
            return Err(CaError::KeyPermissions {
                path: key_path,
                mode: mode & 0o777,
            });
        }
        let key = KeyPair::from_pem(&key_pem)?;
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| CaError::Mismatch(cert_path.clone()))?;
        let params = ca_params(&key);
        // The certificate must carry this key and the name derived from it,
        // or leaves signed now would not chain to the installed ca.pem.
        let cn = ca_common_name(&key);
        if !contains(&cert_der, key.subject_public_key_info().as_slice())
            || !contains(&cert_der, cn.as_bytes())
        {
            return Err(CaError::Mismatch(cert_path));
        }
        Self::from_parts(cert_pem, cert_der, params, key)
    }

    fn from_parts(
        cert_pem: String,
        cert_der: CertificateDer<'static>,
        params: CertificateParams,
        key: KeyPair,
    ) -> Result<Self, CaError> {
        Ok(Self {
            cert_pem,
            cert_der,
            issuer: Issuer::new(params, key),
            leaf_key: KeyPair::generate()?,
        })
    }

    /// The CA certificate in PEM, to add to a cubicle's trust store.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A leaf certificate chain and key for one host.
    pub(crate) fn issue(
        &self,
        host: &Host,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CaError> {
        let mut params = CertificateParams::default();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - TimeDuration::hours(1);
        params.not_after = now + LEAF_LIFETIME;
        let mut dn = DistinguishedName::new();
        match host {
            Host::Name(name) => {
                dn.push(DnType::CommonName, name.as_str());
                params.subject_alt_names = vec![SanType::DnsName(name.as_str().try_into()?)];
            }
            Host::Ip(ip) => {
                dn.push(DnType::CommonName, ip.to_string());
                params.subject_alt_names = vec![SanType::IpAddress(*ip)];
            }
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(&self.leaf_key, &self.issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        Ok((vec![leaf.der().clone(), self.cert_der.clone()], key))
    }
}

fn ca_common_name(key: &KeyPair) -> String {
    let id = CertificateParams::default().key_identifier(key);
    let hex: String = id.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("Cubicle egress CA {hex}")
}

fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_common_name(key));
    dn.push(DnType::OrganizationName, "Cubicle (this computer only)");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - TimeDuration::days(1);
    params.not_after = now + CA_LIFETIME;
    params
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use pretty_assertions::assert_eq;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    use std::sync::Arc;

    fn verify(
        ca_pem: &str,
        chain: &[CertificateDer<'static>],
        name: &str,
    ) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
            .unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        verifier
            .verify_server_cert(
                &chain[0],
                &chain[1..],
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn leaves_chain_to_the_ca() {
        let ca = CertificateAuthority::generate().unwrap();
        let (chain, _) = ca.issue(&Host::parse("api.example.test").unwrap()).unwrap();
        verify(ca.cert_pem(), &chain, "api.example.test").unwrap();
        assert!(verify(ca.cert_pem(), &chain, "other.example.test").is_err());
        let other = CertificateAuthority::generate().unwrap();
        assert!(verify(other.cert_pem(), &chain, "api.example.test").is_err());
    }

    #[test]
    fn reloaded_ca_signs_leaves_that_chain_to_the_saved_pem() {
        let dir = tempfile::tempdir().unwrap();
        let first = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let saved = std::fs::read_to_string(dir.path().join(CA_CERT_FILE)).unwrap();
        assert_eq!(saved, first.cert_pem());
        let second = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert_eq!(second.cert_pem(), first.cert_pem());
        let (chain, _) = second
            .issue(&Host::parse("api.example.test").unwrap())
            .unwrap();
        verify(&saved, &chain, "api.example.test").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.path().join(CA_KEY_FILE);
            assert_eq!(
                std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
                0o600
            );
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                CertificateAuthority::load_or_create(dir.path()),
                Err(CaError::KeyPermissions { mode: 0o644, .. })
            ));
        }
    }

    #[test]
    fn a_certificate_from_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        CertificateAuthority::load_or_create(dir.path()).unwrap();
        let other = CertificateAuthority::generate().unwrap();
        std::fs::write(dir.path().join(CA_CERT_FILE), other.cert_pem()).unwrap();
        assert!(matches!(
            CertificateAuthority::load_or_create(dir.path()),
            Err(CaError::Mismatch(_))
        ));
    }
}
