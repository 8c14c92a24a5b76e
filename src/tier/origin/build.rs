//! Building the origin a configuration describes: the OpenDAL operator of the fs or S3
//! backend (the S3 one signing through boto3's credential chain, with an HTTP client of its
//! own that trusts `AWS_CA_BUNDLE`'s roots), a timeout per attempt inside bounded, jittered
//! retries, wrapped as a [`BlobTier`].

use super::blob::BlobTier;
use crate::config::{Backend, CacheConfig, S3Config};
use crate::credentials::{Chain, SigningRecord};
use crate::error::{Error, Result};
use crate::localfs;
use crate::metrics::{Metrics, TierCounters};
use opendal::Operator;
use opendal::layers::{RetryLayer, TimeoutLayer};
use std::sync::Arc;

/// Builds the origin operator with its layers: a timeout per attempt inside bounded,
/// jittered retries (OpenDAL's defaults wait seconds between attempts, too slow for a cache).
pub fn build_operator(config: &CacheConfig, metrics: &Arc<Metrics>) -> Result<(Operator, String)> {
    build_operator_recording(config, metrics, Arc::default(), Ok)
}

/// The origin as a [`BlobTier`], whose access-denied errors name the credentials used.
///
/// # Errors
/// [`Error::Config`] or [`Error::Io`] when the origin cannot be set up.
pub fn build_origin(config: &CacheConfig, metrics: &Arc<Metrics>) -> Result<BlobTier> {
    origin_with(config, metrics, Ok)
}

/// [`build_origin`] with a fraction (0.0 to 1.0) of reads failing with a transient error
/// before they reach the origin, inside the timeout and retry layers: fault injection that
/// exercises retries. For tests only (feature `test-hooks`).
///
/// # Errors
/// As [`build_origin`]; [`Error::Invalid`] for a fraction outside 0 to 1.
#[cfg(feature = "test-hooks")]
pub fn build_origin_with_read_faults(
    config: &CacheConfig,
    metrics: &Arc<Metrics>,
    read_faults: f64,
) -> Result<BlobTier> {
    if !(0.0..=1.0).contains(&read_faults) {
        return Err(Error::Invalid {
            what: "injected read fault ratio",
            value: read_faults.to_string(),
            rule: "must be between 0 and 1".into(),
        });
    }
    origin_with(config, metrics, |op| {
        // Innermost, so every injected fault goes through the timeout and retry layers.
        Ok(op.layer(opendal::layers::ChaosLayer::new(read_faults)))
    })
}

/// The origin, with `innermost` applied to the service's operator before the timeout and
/// retry layers.
fn origin_with(
    config: &CacheConfig,
    metrics: &Arc<Metrics>,
    innermost: impl FnOnce(Operator) -> Result<Operator>,
) -> Result<BlobTier> {
    let record = Arc::new(SigningRecord::default());
    let (op, description) = build_operator_recording(config, metrics, record.clone(), innermost)?;
    let tier = BlobTier::new(op, description, metrics.clone()).with_sharing(config.sharing);
    Ok(match &config.origin.backend {
        Backend::S3(s3) if !s3.anonymous => tier.with_signing_record(record),
        _ => tier,
    })
}

fn build_operator_recording(
    config: &CacheConfig,
    metrics: &Arc<Metrics>,
    record: Arc<SigningRecord>,
    innermost: impl FnOnce(Operator) -> Result<Operator>,
) -> Result<(Operator, String)> {
    let origin = &config.origin;
    let (op, description) = match &origin.backend {
        Backend::Fs { root } => {
            localfs::prepare_fs_root(root, config.sharing)?;
            // OpenDAL's temp files go here: created with the sharing's mode beforehand.
            localfs::create_dir_all(&root.join(".framecache-tmp"), config.sharing)
                .map_err(|e| Error::io("create", root, e))?;
            let root_str = root
                .to_str()
                .ok_or_else(|| Error::Config(format!("fs root {} is not UTF-8", root.display())))?;
            let builder = opendal::services::Fs::default()
                .root(root_str)
                .atomic_write_dir(&format!("{root_str}/.framecache-tmp"));
            (Operator::new(builder), format!("fs:{}", root.display()))
        }
        Backend::S3(s3) => {
            if s3.bucket.is_empty() {
                return Err(Error::Config("S3 bucket name is empty".into()));
            }
            match (&s3.access_key_id, &s3.secret_access_key) {
                (Some(_), None) => {
                    return Err(Error::Config(
                        "an S3 access key id is set but no secret access key \
                         (AWS_SECRET_ACCESS_KEY or secret_access_key)"
                            .into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(Error::Config(
                        "an S3 secret access key is set but no access key id \
                         (AWS_ACCESS_KEY_ID or access_key_id)"
                            .into(),
                    ));
                }
                _ => {}
            }
            // Every setting comes from `s3` (read once, by `S3Config::from_env`):
            // `disable_config_load` stops OpenDAL reading endpoint variables of its own.
            let mut builder = opendal::services::S3::default()
                .bucket(&s3.bucket)
                .region(&s3.region)
                .disable_config_load();
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.endpoint(endpoint);
            }
            if s3.virtual_hosted() {
                builder = builder.enable_virtual_host_style();
            }
            builder = if s3.anonymous {
                builder.skip_signature()
            } else {
                builder.credential_provider_chain(
                    reqsign_core::ProvideCredentialChain::new().push(Chain::new(s3, record)),
                )
            };
            let endpoint = s3.endpoint.as_deref().unwrap_or("aws");
            (
                Operator::new(builder),
                format!("s3://{} ({endpoint})", s3.bucket),
            )
        }
        #[cfg(feature = "test-hooks")]
        Backend::Memory => (
            Operator::new(opendal::services::Memory::default()),
            "memory".to_owned(),
        ),
    };
    let mut op =
        op.map_err(|e| Error::Config(format!("cannot build origin {description}: {e}")))?;
    if let Backend::S3(s3) = &origin.backend {
        op = op.with_context(
            opendal::OperationContext::new().with_http_transport(http_transport(s3)?),
        );
    }
    let retry_metrics = metrics.clone();
    let op = innermost(op)?
        .layer(
            TimeoutLayer::new()
                .with_timeout(origin.timeout)
                .with_io_timeout(origin.io_timeout),
        )
        .layer(
            RetryLayer::new()
                .with_max_times(origin.retries)
                .with_min_delay(origin.retry_min_delay)
                .with_max_delay(origin.retry_max_delay)
                .with_jitter()
                .with_notify(move |_event: opendal::layers::RetryEvent<'_>| {
                    TierCounters::bump(&retry_metrics.origin.retries);
                }),
        );
    Ok((op, description))
}

/// A new HTTP client for one S3 origin, trusting the certificates of `ca_bundle` besides
/// the system's. Its own, not OpenDAL's process-wide default: a forked child must not use
/// connections pooled by its parent's runtime, whose threads it does not have.
///
/// An `http://` endpoint never makes a TLS connection, so its client trusts no root at all
/// and reads none: loading the system's certificates (every file of `SSL_CERT_DIR`, and
/// the bundle) is most of the start of a short command such as `framecache export`.
fn http_transport(s3: &S3Config) -> Result<opendal::HttpTransporter> {
    let mut builder = reqwest::Client::builder();
    let plain = s3.endpoint.as_deref().is_some_and(|url| {
        url.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    });
    if plain {
        builder = builder.tls_certs_only(Vec::new());
    } else if let Some(bundle) = &s3.ca_bundle {
        let pem = std::fs::read(bundle).map_err(|e| Error::io("read CA bundle", bundle, e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .ok()
            .filter(|certs| !certs.is_empty())
            .ok_or_else(|| {
                Error::Config(format!(
                    "CA bundle {} (AWS_CA_BUNDLE/SSL_CERT_FILE) holds no PEM certificate",
                    bundle.display()
                ))
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder
        .build()
        .map_err(|e| Error::Config(format!("cannot build the S3 HTTP client: {e}")))?;
    Ok(opendal::HttpTransporter::new(
        opendal_http_transport_reqwest::ReqwestTransport::new(client),
    ))
}
