//! How the S3 origin signs in: boto3's credential chain, in boto3's order, over reqsign's
//! providers, with the two things reqsign lacks: a bounded instance-metadata probe (a laptop or
//! CI box without IMDS answers in at most [`IMDS_PROBE_TIMEOUT`], once per process) and one
//! error naming every source tried when none has credentials.
//!
//! Order: explicit keys (keywords, flags, or `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
//! `AWS_SESSION_TOKEN`, read by [`crate::S3Config::from_env`]); web identity
//! (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`); the profile's SSO session; the shared
//! credentials and config files (`AWS_PROFILE`, `AWS_SHARED_CREDENTIALS_FILE`,
//! `AWS_CONFIG_FILE`); the profile's `credential_process`; ECS container credentials
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`/`_RELATIVE_URI`); EC2 instance metadata (IMDSv2).
//! Temporary credentials are refreshed by reqsign's signer when less than two minutes are left.

use crate::config::S3Config;
pub use crate::config::abbreviate_key_id;
use reqsign_aws_v4::{
    AssumeRoleWithWebIdentityCredentialProvider, Credential, ECSCredentialProvider,
    IMDSv2CredentialProvider, ProcessCredentialProvider, ProfileCredentialProvider,
    SSOCredentialProvider, StaticCredentialProvider,
};
use reqsign_core::{Context, ProvideCredential, ProvideCredentialDyn};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Longest wait for the instance-metadata endpoint to accept a connection; a machine
/// without one (a laptop, CI) pays it once per process and endpoint.
pub const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest wait for one whole credential fetch from instance metadata once it answered.
const IMDS_FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The default instance-metadata endpoint.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://169.254.169.254";

/// Which credentials signed the latest request: for error messages, never the secret.
#[derive(Debug, Default)]
pub struct SigningRecord {
    last: Mutex<Option<(String, &'static str)>>,
    /// Why the latest attempt found no credentials: OpenDAL's provider chain turns a
    /// provider's error into "no credential", so the message travels this way.
    miss: Mutex<Option<String>>,
}

impl SigningRecord {
    /// `access key AKIA…WXYZ from <source>`, or `None` before any request was signed.
    pub fn describe(&self) -> Option<String> {
        let last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        last.as_ref()
            .map(|(id, source)| format!("access key {} from {source}", abbreviate_key_id(id)))
    }

    /// The message of the latest search that found no credentials, taken.
    pub fn take_miss(&self) -> Option<String> {
        self.miss.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn set(&self, key_id: &str, source: &'static str) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((key_id.to_owned(), source));
    }
}

type Provider = Box<dyn ProvideCredentialDyn<Credential = Credential>>;

/// The chain, each source with the name its error message uses.
pub(crate) struct Chain {
    sources: Vec<(&'static str, Provider)>,
    record: Arc<SigningRecord>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.sources.iter().map(|(n, _)| *n).collect();
        f.debug_struct("Chain").field("sources", &names).finish()
    }
}

impl Chain {
    /// boto3's chain for these settings (explicit keys alone when they are given).
    pub(crate) fn new(s3: &S3Config, record: Arc<SigningRecord>) -> Chain {
        let mut sources: Vec<(&'static str, Provider)> = Vec::new();
        if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
            let provider = match &s3.session_token {
                Some(token) => StaticCredentialProvider::new(id, secret).with_session_token(token),
                None => StaticCredentialProvider::new(id, secret),
            };
            sources.push((
                "explicit keys (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)",
                Box::new(provider),
            ));
            return Chain { sources, record };
        }
        sources.push((
            "web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN)",
            Box::new(AssumeRoleWithWebIdentityCredentialProvider::new()),
        ));
        let (mut sso, mut profile, mut process) = (
            SSOCredentialProvider::default(),
            ProfileCredentialProvider::default(),
            ProcessCredentialProvider::default(),
        );
        if let Some(name) = &s3.profile {
            sso = sso.with_profile(name.clone());
            profile = profile.with_profile(name.clone());
            process = process.with_profile(name.clone());
        }
        sources.push(("SSO session of the profile", Box::new(sso)));
        sources.push((
            "profile in the shared credentials/config files (AWS_PROFILE)",
            Box::new(profile),
        ));
        sources.push(("credential_process of the profile", Box::new(process)));
        sources.push((
            "ECS container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI/RELATIVE_URI)",
            Box::new(ECSCredentialProvider::new()),
        ));
        if s3.imds {
            let endpoint = s3
                .imds_endpoint
                .clone()
                .unwrap_or_else(|| DEFAULT_IMDS_ENDPOINT.to_owned());
            sources.push((
                "EC2 instance metadata (IMDSv2)",
                Box::new(BoundedImds {
                    inner: IMDSv2CredentialProvider::new().with_endpoint(endpoint.clone()),
                    endpoint,
                }),
            ));
        }
        Chain { sources, record }
    }
}

impl ProvideCredential for Chain {
    type Credential = Credential;

    async fn provide_credential(&self, ctx: &Context) -> reqsign_core::Result<Option<Credential>> {
        let mut tried = Vec::with_capacity(self.sources.len());
        for (name, provider) in &self.sources {
            match provider.provide_credential_dyn(ctx).await {
                Ok(Some(credential)) => {
                    tracing::debug!("S3 credentials from {name}");
                    self.record.set(&credential.access_key_id, name);
                    *self.record.miss.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Ok(Some(credential));
                }
                Ok(None) => tried.push(format!("{name}: not configured")),
                Err(e) => {
                    tracing::debug!("S3 credentials from {name} failed: {e}");
                    tried.push(format!("{name}: {}", one_line(&e.to_string())));
                }
            }
        }
        let message = format!(
            "no S3 credentials found; tried, in order: {}. Set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary keys), or AWS_PROFILE \
             for a profile in ~/.aws, or run on a machine with an instance/task role; for a \
             public bucket set FRAMECACHE_S3_ANONYMOUS=1 (keyword anonymous=True, flag \
             --anonymous)",
            tried.join("; ")
        );
        *self.record.miss.lock().unwrap_or_else(|e| e.into_inner()) = Some(message.clone());
        Err(reqsign_core::Error::credential_invalid(message))
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// reqsign's IMDSv2 provider behind a connection probe bounded by [`IMDS_PROBE_TIMEOUT`]
/// whose verdict is kept for the process: reqsign itself waits as long as the HTTP client
/// lets it, and 169.254.169.254 usually drops packets off EC2.
#[derive(Debug)]
struct BoundedImds {
    inner: IMDSv2CredentialProvider,
    endpoint: String,
}

impl ProvideCredential for BoundedImds {
    type Credential = Credential;

    async fn provide_credential(&self, ctx: &Context) -> reqsign_core::Result<Option<Credential>> {
        if !imds_reachable(&self.endpoint).await {
            return Err(reqsign_core::Error::unexpected(format!(
                "no answer from {} within {} ms (not on EC2, or AWS_EC2_METADATA_DISABLED=true \
                 to skip it)",
                self.endpoint,
                IMDS_PROBE_TIMEOUT.as_millis()
            )));
        }
        match tokio::time::timeout(IMDS_FETCH_TIMEOUT, self.inner.provide_credential(ctx)).await {
            Ok(result) => result,
            Err(_) => Err(reqsign_core::Error::unexpected(format!(
                "{} accepted a connection but sent no credentials within {} s",
                self.endpoint,
                IMDS_FETCH_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// Whether the endpoint accepts a TCP connection within [`IMDS_PROBE_TIMEOUT`]; asked once
/// per process and endpoint, later callers wait for and reuse the first answer.
async fn imds_reachable(endpoint: &str) -> bool {
    static PROBES: OnceLock<Mutex<HashMap<String, Arc<tokio::sync::OnceCell<bool>>>>> =
        OnceLock::new();
    let cell = PROBES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(endpoint.to_owned())
        .or_default()
        .clone();
    *cell
        .get_or_init(|| async {
            let Some(addr) = host_port(endpoint) else {
                return false;
            };
            let reached = matches!(
                tokio::time::timeout(IMDS_PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr))
                    .await,
                Ok(Ok(_))
            );
            if !reached {
                tracing::debug!("no instance metadata at {endpoint}: skipped for this process");
            }
            reached
        })
        .await
}

/// `host:port` of an `http://host[:port][/path]` URL.
fn host_port(endpoint: &str) -> Option<String> {
    let rest = endpoint
        .strip_prefix("http://")
        .map(|r| (r, 80))
        .or_else(|| endpoint.strip_prefix("https://").map(|r| (r, 443)));
    let (rest, default_port) = rest?;
    let authority = rest.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    let has_port = match authority.rfind(']') {
        Some(close) => authority[close..].contains(':'),
        None => authority.contains(':'),
    };
    Some(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{default_port}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_give_host_and_port() {
        assert_eq!(
            host_port("http://169.254.169.254").as_deref(),
            Some("169.254.169.254:80")
        );
        assert_eq!(
            host_port("http://127.0.0.1:8080/x").as_deref(),
            Some("127.0.0.1:8080")
        );
        assert_eq!(
            host_port("http://[fd00:ec2::254]").as_deref(),
            Some("[fd00:ec2::254]:80")
        );
        assert_eq!(host_port("http://[::1]:81").as_deref(), Some("[::1]:81"));
        assert_eq!(host_port("ftp://x"), None);
    }
}
