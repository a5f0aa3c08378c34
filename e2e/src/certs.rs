//! The cluster's PKI: one CA, the apiserver's serving certificate, an admin client certificate
//! (group system:masters, used by every component and by tests) and the service-account signing key.
//! Generated in-process with rcgen (ECDSA P-256), so the tool needs no openssl CLI.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::error::{Error, Result};

/// File names inside the PKI directory.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub service_account_key: PathBuf,
    pub service_account_public_key: PathBuf,
}

impl Pki {
    pub fn locate(dir: &Path) -> Self {
        Pki {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            service_account_key: dir.join("sa.key"),
            service_account_public_key: dir.join("sa.pub"),
        }
    }

    fn all(&self) -> [&PathBuf; 8] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.serving_cert,
            &self.serving_key,
            &self.admin_cert,
            &self.admin_key,
            &self.service_account_key,
            &self.service_account_public_key,
        ]
    }

    /// Generates the PKI unless a complete one is already there (a second `up` keeps it, so
    /// kubeconfigs handed out earlier stay valid).
    /// `node_ip`: the host's address, on which pods reach the apiserver (the `kubernetes` service).
    pub fn ensure(dir: &Path, node_ip: &str) -> Result<Self> {
        let pki = Pki::locate(dir);
        if pki.all().iter().all(|p| p.is_file()) {
            return Ok(pki);
        }
        std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;

        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "lmi-dev-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        write(&pki.ca_cert, &ca_cert.pem())?;
        write(&pki.ca_key, &ca_key.serialize_pem())?;
        let issuer = Issuer::new(ca_params, ca_key);

        // The names a client may use for the apiserver: loopback from the host, the host's address
        // (pods on the real node), and the in-cluster service names with the service's address.
        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            node_ip.to_string(),
            "10.96.0.1".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])?;
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;
        write(&pki.serving_cert, &serving_cert.pem())?;
        write(&pki.serving_key, &serving_key.serialize_pem())?;

        let admin_key = KeyPair::generate()?;
        let mut admin = CertificateParams::new(Vec::<String>::new())?;
        admin
            .distinguished_name
            .push(DnType::CommonName, "lmi-admin");
        admin
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let admin_cert = admin.signed_by(&admin_key, &issuer)?;
        write(&pki.admin_cert, &admin_cert.pem())?;
        write(&pki.admin_key, &admin_key.serialize_pem())?;

        // Signs service-account tokens (apiserver, controller-manager); the apiserver verifies them
        // with the public half, which it cannot read from a PKCS#8 EC private key file.
        let sa_key = KeyPair::generate()?;
        write(&pki.service_account_key, &sa_key.serialize_pem())?;
        write(&pki.service_account_public_key, &sa_key.public_key_pem())?;
        Ok(pki)
    }
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(Error::io("writing", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_complete_pki_once() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("lmi-pki-test-{}", std::process::id()));
        let pki = Pki::ensure(&dir, "192.0.2.2")?;
        let first =
            std::fs::read_to_string(&pki.ca_cert).map_err(Error::io("reading", &pki.ca_cert))?;
        assert!(first.contains("BEGIN CERTIFICATE"));
        let again = Pki::ensure(&dir, "192.0.2.2")?;
        let second = std::fs::read_to_string(&again.ca_cert)
            .map_err(Error::io("reading", &again.ca_cert))?;
        assert_eq!(first, second, "a second ensure keeps the CA");
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
