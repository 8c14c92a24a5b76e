//! The S3 origin's settings: bucket, endpoint, region, keys, addressing, instance metadata,
//! private CA. Plain data; `env.rs` reads them from the environment.

use std::path::PathBuf;

/// Default bucket, as in the Python module.
pub const DEFAULT_BUCKET: &str = "mpr";
/// Default S3 region.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How requests name the bucket: in the path (`https://host/bucket/key`) or in the host
/// name (`https://bucket.host/key`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Addressing {
    /// Virtual-hosted on AWS (no endpoint, or an `amazonaws.com` one), path-style for any
    /// other endpoint (MinIO, Garage and most S3-compatible servers want that).
    #[default]
    Auto,
    /// `https://host/bucket/key`.
    Path,
    /// `https://bucket.host/key`.
    VirtualHosted,
}

impl std::str::FromStr for Addressing {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Addressing::Auto),
            "path" => Ok(Addressing::Path),
            "virtual" | "virtual-hosted" | "virtual_hosted" | "host" => {
                Ok(Addressing::VirtualHosted)
            }
            _ => Err("must be auto, path or virtual".into()),
        }
    }
}

/// Connection settings for an S3-compatible origin. [`S3Config::from_env`] is the one
/// place that reads them from the environment; the command line and the Python package
/// layer their flags and keywords over it.
#[derive(Clone)]
pub struct S3Config {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL; `None` means AWS.
    pub endpoint: Option<String>,
    /// Region (S3 servers check it as part of the signature).
    pub region: String,
    /// Access key id (with `secret_access_key`, the first source of the credential chain).
    pub access_key_id: Option<String>,
    /// Secret access key; never printed.
    pub secret_access_key: Option<String>,
    /// Session token of temporary keys (Lambda, SSO, assumed roles); never printed.
    pub session_token: Option<String>,
    /// Profile of the shared AWS files (`AWS_PROFILE`); `None` is `default`.
    pub profile: Option<String>,
    /// Send requests unsigned, for public buckets: no credential source is consulted.
    pub anonymous: bool,
    /// Path-style or virtual-hosted requests.
    pub addressing: Addressing,
    /// Whether EC2 instance metadata is the chain's last source (`AWS_EC2_METADATA_DISABLED`
    /// turns it off).
    pub imds: bool,
    /// Instance-metadata endpoint (`AWS_EC2_METADATA_SERVICE_ENDPOINT`); `None` is
    /// `http://169.254.169.254`.
    pub imds_endpoint: Option<String>,
    /// PEM file of extra root certificates for an HTTPS endpoint with a private CA
    /// (`AWS_CA_BUNDLE`, else `SSL_CERT_FILE`).
    pub ca_bundle: Option<PathBuf>,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: DEFAULT_BUCKET.to_owned(),
            endpoint: None,
            region: DEFAULT_REGION.to_owned(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            profile: None,
            anonymous: false,
            addressing: Addressing::Auto,
            imds: true,
            imds_endpoint: None,
            ca_bundle: None,
        }
    }
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field(
                "access_key_id",
                &self.access_key_id.as_deref().map(abbreviate_key_id),
            )
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("profile", &self.profile)
            .field("anonymous", &self.anonymous)
            .field("addressing", &self.addressing)
            .field("imds", &self.imds)
            .field("imds_endpoint", &self.imds_endpoint)
            .field("ca_bundle", &self.ca_bundle)
            .finish()
    }
}

impl S3Config {
    /// Whether requests put the bucket in the host name.
    pub fn virtual_hosted(&self) -> bool {
        match self.addressing {
            Addressing::Path => false,
            Addressing::VirtualHosted => true,
            Addressing::Auto => self.endpoint.as_deref().is_none_or(is_aws_endpoint),
        }
    }
}

/// An endpoint of AWS S3 itself (`*.amazonaws.com`, `*.amazonaws.com.cn`).
fn is_aws_endpoint(endpoint: &str) -> bool {
    let host = endpoint
        .split("://")
        .nth(1)
        .unwrap_or(endpoint)
        .split(['/', ':'])
        .next()
        .unwrap_or("");
    host.ends_with(".amazonaws.com") || host.ends_with(".amazonaws.com.cn")
}

/// An access key id shortened to its first and last four characters (`AKIA…WXYZ`): enough to
/// tell keys apart in an error, never the whole id (the command line redacts whole ids).
pub fn abbreviate_key_id(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 8 {
        return "…".repeat(usize::from(!chars.is_empty()));
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_abbreviated() {
        assert_eq!(abbreviate_key_id("AKIAIOSFODNN7EXAMPLE"), "AKIA…MPLE");
        assert_eq!(abbreviate_key_id("short"), "…");
        assert_eq!(abbreviate_key_id(""), "");
    }
}
