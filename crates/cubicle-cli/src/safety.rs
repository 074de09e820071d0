//! The enterprise half of a session, assembled: the layered policy (and the
//! checks it makes before anything starts), the audit log, and the session's
//! egress proxy with its events recorded.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use cubicle_audit::{AuditLog, AuditOptions, RecordKind};
use cubicle_egress::{DomainRule, EgressConfig, EgressProxy};
use cubicle_policy::{CommandLineSettings, Policy, PolicyPaths, ProjectFolder};
use cubicle_sandbox::Grant;
use cubicle_sandbox::guest_client::{AsyncReadWrite, EgressConnector};

use crate::config::config_dir;

/// Policy inputs from the command line.
#[derive(Debug, Clone, Default)]
pub struct PolicyArgs {
    /// `--allow RULE`.
    pub allow: Vec<String>,
    /// `--ask RULE`.
    pub ask: Vec<String>,
    /// `--deny RULE`.
    pub deny: Vec<String>,
    /// `--allow-domain DOMAIN`.
    pub allow_domains: Vec<String>,
    /// `--set KEY=VALUE`.
    pub settings: Vec<String>,
    /// `--trust`: load `.cubicle/settings.toml` from granted folders.
    pub trust_grants: bool,
    /// The backend the person named explicitly, if any.
    pub explicit_backend: Option<String>,
}

/// Where the standard settings files are (managed under /etc, the person's
/// under the XDG config folder); `CUBICLE_MANAGED_DIR` moves the managed
/// ones, for tests and for administrators staging a policy.
pub fn policy_paths() -> PolicyPaths {
    let config_base = config_dir().and_then(|d| d.parent().map(PathBuf::from));
    let mut paths = PolicyPaths::standard(config_base.as_deref());
    if let Some(dir) = std::env::var_os("CUBICLE_MANAGED_DIR") {
        let dir = PathBuf::from(dir);
        paths.managed_file = dir.join("managed.toml");
        paths.managed_dir = dir.join("managed.d");
    }
    paths
}

/// Loads the policy: all of it or nothing.
pub fn load_policy(args: &PolicyArgs, grants: &[Grant]) -> Result<Policy> {
    let mut settings = args.settings.clone();
    if !args.allow_domains.is_empty() {
        let list = args
            .allow_domains
            .iter()
            .map(|d| format!("{d:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        settings.push(format!("network.allow=[{list}]"));
    }
    // Naming the host backend on the command line is the person's consent to
    // run without isolation; a managed lock can still forbid it.
    if args.explicit_backend.as_deref() == Some("host") {
        settings.push(r#"sandbox.allowed_backends=["jail", "vm", "remote", "host"]"#.to_owned());
    }
    let command_line = CommandLineSettings {
        settings,
        allow: args.allow.clone(),
        ask: args.ask.clone(),
        deny: args.deny.clone(),
    };
    let projects: Vec<ProjectFolder> = grants
        .iter()
        .map(|g| ProjectFolder {
            path: g.host_path.clone(),
            trusted: args.trust_grants,
        })
        .collect();
    let policy = Policy::load(&policy_paths(), &command_line, &projects)?;
    for n in policy.notices() {
        eprintln!("cubicle: note: {n}");
    }
    Ok(policy)
}

/// Refuses a backend or model the policy does not allow.
pub fn check_allowed(policy: &Policy, backend: &str, provider: &str, model: &str) -> Result<()> {
    if let Err(d) = policy.backend_allowed(backend) {
        bail!("{}", d.explain());
    }
    if let Err(d) = policy.provider_allowed(provider, model) {
        bail!("{}", d.explain());
    }
    Ok(())
}

/// Name of the secret that, when stored (`cubicle secret set audit-hmac`),
/// seals the audit log with HMAC-SHA256 instead of plain SHA-256, so that
/// someone who can write the log cannot recompute the chain.
pub const AUDIT_KEY_SECRET: &str = "audit-hmac";

/// The audit log's HMAC key, if the person stored one.
pub fn audit_key() -> Option<Vec<u8>> {
    use cubicle_egress::SecretStore as _;
    let dir = config_dir()?;
    let secret = cubicle_egress::FileSecrets::in_dir(&dir)
        .get(&cubicle_egress::SecretRef::Keyring(
            AUDIT_KEY_SECRET.to_owned(),
        ))
        .ok()?;
    Some(secret.expose().as_bytes().to_vec())
}

/// Opens the audit log in the data folder.
pub fn open_audit(data_root: &std::path::Path) -> Result<Arc<AuditLog>> {
    let dir = data_root.join("audit");
    let options = AuditOptions {
        key: audit_key(),
        ..AuditOptions::default()
    };
    let log = AuditLog::open(&dir, options)
        .with_context(|| format!("opening the audit log in {}", dir.display()))?;
    Ok(Arc::new(log))
}

/// Records which settings made the session's policy.
pub fn audit_policy(audit: &AuditLog, session: &str, policy: &Policy) -> Result<()> {
    let sources = policy
        .sources()
        .iter()
        .map(|s| cubicle_audit::PolicySource {
            layer: s.layer.to_string(),
            file: s.file.as_ref().map(|f| f.display().to_string()),
            sha256: s.sha256.clone(),
        })
        .collect();
    audit.append(
        Some(session),
        RecordKind::PolicyLoaded {
            sources,
            digest: policy.digest(),
        },
    )?;
    Ok(())
}

/// The session's egress proxy and what the cubicle needs to trust it.
pub struct Egress {
    /// The proxy.
    pub proxy: EgressProxy,
    /// The per-install CA certificate (PEM), when a credential rule makes
    /// the proxy terminate TLS for some domain.
    pub ca_pem: Option<String>,
}

/// Where commands find the CA bundle that includes the proxy's CA.
pub const CA_BUNDLE_IN_CUBICLE: &str = "/tmp/.cubicle/ca-bundle.pem";

/// The session's egress proxy, built from the policy's network rules and
/// credentials; every request it decides is appended to the audit log.
pub fn egress(policy: &Policy, session: &str, audit: Arc<AuditLog>) -> Result<Egress> {
    let rules = policy.network_rules();
    let to_egress = |r: &cubicle_policy::DomainRule| DomainRule {
        pattern: r.pattern.to_string(),
        origin: r.origin.to_string(),
    };
    let credentials = policy
        .credentials()
        .iter()
        .map(|c| {
            Ok(cubicle_egress::CredentialRule {
                domain: c.domain.to_string(),
                header: c.header.clone(),
                value_template: Some(c.value_template.clone()),
                secret: c
                    .secret_ref
                    .parse()
                    .map_err(|e| anyhow::anyhow!("credential for {}: {e}", c.domain))?,
                origin: c.origin.to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let ca = if credentials.is_empty() {
        None
    } else {
        let dir = config_dir()
            .context("cannot find the config folder for the proxy's CA: set HOME")?
            .join("ca");
        Some(Arc::new(
            cubicle_egress::CertificateAuthority::load_or_create(&dir)
                .with_context(|| format!("loading the proxy's CA in {}", dir.display()))?,
        ))
    };
    let ca_pem = ca.as_ref().map(|c| c.cert_pem().to_owned());
    let config = EgressConfig {
        allow: rules.allow.iter().map(to_egress).collect(),
        deny: rules.deny.iter().map(to_egress).collect(),
        credentials,
        ca,
        ..EgressConfig::default()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<cubicle_egress::EgressEvent>();
    // Secrets come from the host: its environment, or Cubicle's 0600
    // secrets file (headless Linux has no keyring service to ask).
    let file_secrets = match config_dir() {
        Some(dir) => cubicle_egress::FileSecrets::in_dir(&dir),
        None => cubicle_egress::FileSecrets::at("/nonexistent/cubicle-secrets"),
    };
    let proxy = EgressProxy::builder(session, config)
        .events(tx)
        .secrets(Arc::new(cubicle_egress::HostSecrets::new(
            cubicle_egress::EnvSecrets,
            file_secrets,
        )))
        .build()
        .context("configuring the egress proxy")?;
    let session = session.to_owned();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let kind = RecordKind::NetworkRequest {
                host: ev.host,
                port: ev.port,
                allowed: ev.allowed,
                rule: ev.rule,
                reason: ev.reason,
                bytes_up: ev.bytes_up,
                bytes_down: ev.bytes_down,
            };
            let log = audit.clone();
            let session = session.clone();
            let _ = tokio::task::spawn_blocking(move || log.append(Some(&session), kind)).await;
        }
    });
    Ok(Egress { proxy, ca_pem })
}

/// Environment that points TLS clients in the cubicle at the bundle.
pub fn ca_env() -> std::collections::BTreeMap<String, String> {
    [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
        "GIT_SSL_CAINFO",
    ]
    .iter()
    .map(|k| ((*k).to_owned(), CA_BUNDLE_IN_CUBICLE.to_owned()))
    .collect()
}

/// Writes the system's CA bundle plus the proxy's CA into the cubicle.
pub async fn install_ca(computer: &dyn cubicle_sandbox::Computer, ca_pem: &str) -> Result<()> {
    let mut bundle =
        std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    if !bundle.ends_with('\n') && !bundle.is_empty() {
        bundle.push('\n');
    }
    bundle.push_str(ca_pem);
    computer
        .write_file(CA_BUNDLE_IN_CUBICLE, bundle.into_bytes())
        .await
        .context("installing the proxy's CA in the cubicle")?;
    Ok(())
}

/// Hands each tunnel from the cubicle's proxy port to the egress proxy.
pub struct ProxyConnector(pub EgressProxy);

#[async_trait]
impl EgressConnector for ProxyConnector {
    async fn connect(&self) -> std::io::Result<Box<dyn AsyncReadWrite + Send + Unpin>> {
        Ok(Box::new(self.0.open_stream()))
    }
}
