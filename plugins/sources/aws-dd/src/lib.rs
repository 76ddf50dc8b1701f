//! aws-dd: STEP 0 "from within the VM" (`dd if=/dev/sda1 of=/mounted_vol/copy.img`).
//! Run inside the instance with the work image on an attached volume: the host
//! copies the root device (refusing a work image on that very device, or on a
//! volume without room), and the instance's identity is read from the metadata
//! service (IMDSv2: a session token by PUT, then GETs carrying it).

use rehost_sdk::source::{config, fail, host, info, HttpRequest, Result, Source, SourceReport};
use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

/// Seconds the metadata session token lives (the AWS maximum is 21600).
const TOKEN_TTL: &str = "300";
/// The metadata service answers at once or not at all.
const IMDS_TIMEOUT_SECS: u32 = 5;

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The device to copy; default: the device mounted at / (from /proc/mounts).
    pub device: Option<String>,
    /// Read instance id, AMI and region from the metadata service.
    pub metadata: bool,
    /// The metadata service's base URL.
    pub imds: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            device: None,
            metadata: true,
            imds: "http://169.254.169.254".into(),
        }
    }
}

/// The metadata paths recorded, with the keys they are recorded under.
const METADATA: &[(&str, &str)] = &[
    ("aws.instance-id", "meta-data/instance-id"),
    ("aws.ami-id", "meta-data/ami-id"),
    ("aws.region", "meta-data/placement/region"),
];

pub struct AwsDd;

impl Source for AwsDd {
    fn fetch(text: &str) -> Result<SourceReport> {
        let cfg: Config = config(text)?;
        // Metadata first: a wrong endpoint fails in seconds, not after the copy.
        let mut metadata = if cfg.metadata {
            instance_metadata(cfg.imds.trim_end_matches('/'))?
        } else {
            Vec::new()
        };
        let device = match cfg.device {
            Some(d) => d,
            None => host::mounted_device("/")?,
        };
        info(&format!("copying the root device {device}"));
        let copied = host::copy_into_work(&device)?;
        metadata.push(("source.device".into(), device.clone()));
        metadata.push(("source.sha256".into(), copied.sha256));
        let origin = match metadata.iter().find(|(k, _)| k == "aws.instance-id") {
            Some((_, id)) => format!("AWS instance {id} ({device})"),
            None => format!("root device {device}"),
        };
        Ok(SourceReport { origin, metadata })
    }
}

fn instance_metadata(base: &str) -> Result<Vec<(String, String)>> {
    let token = request(
        HttpRequest::new("PUT", format!("{base}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL),
    )?;
    METADATA
        .iter()
        .map(|(key, path)| {
            let value = request(
                HttpRequest::new("GET", format!("{base}/latest/{path}"))
                    .header("X-aws-ec2-metadata-token", token.trim()),
            )?;
            Ok((key.to_string(), value.trim().to_string()))
        })
        .collect()
}

fn request(mut req: HttpRequest) -> Result<String> {
    req.timeout_secs = IMDS_TIMEOUT_SECS;
    let (method, url) = (req.method.clone(), req.url.clone());
    let resp = host::http(&req)?;
    if !resp.is_success() {
        return Err(fail(format!(
            "instance metadata: {method} {url} answered HTTP {} (run inside the instance, or \
             set metadata = false)",
            resp.status
        )));
    }
    Ok(resp.text())
}

rehost_sdk::export_source!(AwsDd);
