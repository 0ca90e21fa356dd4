//! `warren dev --tls`: a local CA (kept in the dev data directory, so a browser or system that
//! trusts it once keeps trusting it) and a certificate for `localhost` signed by it, fresh at
//! every start. The edge signs one for each `NAME.localhost` with the same CA on first use
//! (a `*.localhost` wildcard is refused by rustls and browsers: it is one label below a
//! top-level name).

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// The files `warren dev --tls` serves and prints.
#[derive(Debug, Clone)]
pub struct DevTls {
    /// The CA to trust (`--ca-file`, or the system/browser store).
    pub ca: PathBuf,
    /// The CA's key: the dev edge signs a certificate per tunnel name with it.
    pub ca_key: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Creates the local CA under `data_dir/tls/` if missing, and a fresh server certificate.
pub fn prepare(data_dir: &Path) -> anyhow::Result<DevTls> {
    let dir = data_dir.join("tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ca = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key");
    let ca_key = if ca.exists() && ca_key_path.exists() {
        let pem = std::fs::read_to_string(&ca_key_path)
            .with_context(|| format!("cannot read {}", ca_key_path.display()))?;
        KeyPair::from_pem(&pem).with_context(|| {
            format!(
                "{} is not a key: delete {} to make a new local CA",
                ca_key_path.display(),
                dir.display()
            )
        })?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        std::fs::write(&ca, cert.pem())
            .with_context(|| format!("cannot write {}", ca.display()))?;
        key
    };
    // The same name and key make the same issuer: certificates signed now chain to the CA
    // certificate written the first time.
    let issuer = Issuer::new(ca_params()?, ca_key);
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["localhost".to_string()])?;
    let cert = params.signed_by(&key, &issuer)?;
    let (cert_path, key_path) = (dir.join("dev-cert.pem"), dir.join("dev-key.pem"));
    std::fs::write(&cert_path, cert.pem() + &std::fs::read_to_string(&ca)?)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    write_private(&key_path, &key.serialize_pem())?;
    Ok(DevTls {
        ca,
        ca_key: ca_key_path,
        cert: cert_path,
        key: key_path,
    })
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "Warren dev local CA");
    params.distinguished_name = name;
    Ok(params)
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_ca_is_kept_and_signs_every_new_certificate() {
        let dir = tempfile::tempdir().expect("dir");
        let first = prepare(dir.path()).expect("first");
        let ca = std::fs::read_to_string(&first.ca).expect("ca");
        let second = prepare(dir.path()).expect("second");
        assert_eq!(std::fs::read_to_string(&second.ca).expect("ca"), ca);
        let cert = std::fs::read_to_string(&second.cert).expect("cert");
        assert!(cert.matches("BEGIN CERTIFICATE").count() == 2);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&second.key)
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0);
        }
    }
}
