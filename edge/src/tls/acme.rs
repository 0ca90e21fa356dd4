//! One ACME order with instant-acme: the account (kept, sealed, in the shared store), the
//! challenges, the certificate.
//!
//! Region wildcards (`*.eu.example.net`) can only be validated by DNS-01, which goes through a
//! [`DnsProvider`]. Custom domains use HTTP-01: the key authorization is put in the shared
//! store, so whichever edge the CA's request lands on answers it (`visitor/acme_challenge`).

use super::dns::DnsProvider;
use super::seal::Sealer;
use super::store::{self, CertStore, StoredCert};
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long an HTTP-01 answer stays in the store: longer than any order takes.
const HTTP01_TTL: Duration = Duration::from_secs(600);

/// How an order proves control of its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    Dns01,
    Http01,
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Seal(#[from] super::seal::SealError),
    #[error(transparent)]
    Dns(#[from] super::dns::DnsError),
    #[error("ACME order for {names:?} failed: {reason}")]
    Order { names: Vec<String>, reason: String },
}

/// An ACME client for one directory.
pub struct AcmeClient {
    pub directory: String,
    contact: Vec<String>,
    ca_file: Option<PathBuf>,
    dns: Option<Arc<dyn DnsProvider>>,
    store: Arc<dyn CertStore>,
    sealer: Arc<Sealer>,
    account: tokio::sync::Mutex<Option<Account>>,
}

impl AcmeClient {
    pub fn new(
        directory: String,
        contact: Vec<String>,
        ca_file: Option<PathBuf>,
        dns: Option<Arc<dyn DnsProvider>>,
        store: Arc<dyn CertStore>,
        sealer: Arc<Sealer>,
    ) -> AcmeClient {
        AcmeClient {
            directory,
            contact,
            ca_file,
            dns,
            store,
            sealer,
            account: tokio::sync::Mutex::new(None),
        }
    }

    pub fn has_dns(&self) -> bool {
        self.dns.is_some()
    }

    /// The account: from the store if one exists for this directory, else a new one (stored).
    async fn account(&self) -> Result<Account, AcmeError> {
        let mut cached = self.account.lock().await;
        if let Some(account) = cached.as_ref() {
            return Ok(account.clone());
        }
        let key = store::account_key(&self.directory);
        let builder = match &self.ca_file {
            Some(path) => Account::builder_with_root(path)?,
            None => Account::builder()?,
        };
        let account = match self.store.get(&key).await? {
            Some(sealed) => {
                let plain = self.sealer.open(&key, &sealed)?;
                let credentials: AccountCredentials =
                    serde_json::from_slice(&plain).map_err(|e| AcmeError::Order {
                        names: Vec::new(),
                        reason: format!("stored ACME account is unreadable: {e}"),
                    })?;
                builder.from_credentials(credentials).await?
            }
            None => {
                let contact: Vec<&str> = self.contact.iter().map(String::as_str).collect();
                let new = NewAccount {
                    contact: &contact,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let (account, credentials) =
                    builder.create(&new, self.directory.clone(), None).await?;
                let plain = serde_json::to_vec(&credentials).map_err(|e| AcmeError::Order {
                    names: Vec::new(),
                    reason: format!("cannot serialise the ACME account: {e}"),
                })?;
                self.store
                    .put(&key, &self.sealer.seal(&key, &plain)?, None)
                    .await?;
                tracing::info!(directory = %self.directory, "ACME account created");
                account
            }
        };
        *cached = Some(account.clone());
        Ok(account)
    }

    /// Orders a certificate for `names`, proving control with `kind`.
    pub async fn order(
        &self,
        names: &[String],
        kind: ChallengeKind,
    ) -> Result<StoredCert, AcmeError> {
        let fail = |reason: String| AcmeError::Order {
            names: names.to_vec(),
            reason,
        };
        let account = self.account().await?;
        // A wildcard is ordered as `*.parent` (RFC 8555 §7.1.3); its authorization is for
        // `parent`, flagged wildcard, and only DNS-01 can prove it.
        let identifiers: Vec<Identifier> =
            names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
        tracing::info!(?names, ?kind, url = %order.url(), "ACME order placed");
        let mut published: Vec<(String, String)> = Vec::new();
        let result = async {
            let mut authorizations = order.authorizations();
            while let Some(authz) = authorizations.next().await {
                let mut authz = authz?;
                match authz.status {
                    AuthorizationStatus::Pending => {}
                    AuthorizationStatus::Valid => continue,
                    other => return Err(fail(format!("authorization is {other:?}"))),
                }
                let wanted = match kind {
                    ChallengeKind::Dns01 => ChallengeType::Dns01,
                    ChallengeKind::Http01 => ChallengeType::Http01,
                };
                let mut challenge = authz
                    .challenge(wanted.clone())
                    .ok_or_else(|| fail(format!("the CA offers no {wanted:?} challenge")))?;
                let key_authorization = challenge.key_authorization();
                match kind {
                    ChallengeKind::Dns01 => {
                        let Identifier::Dns(domain) = challenge.identifier().identifier else {
                            return Err(fail("a DNS-01 challenge for a non-DNS name".into()));
                        };
                        let fqdn = format!("_acme-challenge.{domain}.");
                        let dns = self
                            .dns
                            .as_ref()
                            .ok_or_else(|| fail("DNS-01 needs --acme-dns-provider".into()))?;
                        let value = key_authorization.dns_value();
                        dns.set_txt(&fqdn, &value).await?;
                        published.push((fqdn, value));
                    }
                    ChallengeKind::Http01 => {
                        let key = store::http01_key(&challenge.token);
                        self.store
                            .put(
                                &key,
                                key_authorization.as_str().as_bytes(),
                                Some(HTTP01_TTL),
                            )
                            .await?;
                    }
                }
                challenge.set_ready().await?;
            }
            let retries = RetryPolicy::new()
                .initial_delay(Duration::from_millis(250))
                .timeout(Duration::from_secs(90));
            let status = order.poll_ready(&retries).await?;
            if status != OrderStatus::Ready {
                return Err(fail(format!("order is {status:?}, not ready")));
            }
            let key_pem = order.finalize().await?;
            let chain_pem = order.poll_certificate(&retries).await?;
            Ok(StoredCert { chain_pem, key_pem })
        }
        .await;
        if let Some(dns) = &self.dns {
            for (fqdn, value) in &published {
                if let Err(e) = dns.clear_txt(fqdn, value).await {
                    tracing::warn!(%fqdn, error = %e, "could not remove a DNS-01 record");
                }
            }
        }
        result
    }
}
