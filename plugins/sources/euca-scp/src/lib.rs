//! euca-scp: STEP 0 "from the node controller". Asks the cloud controller which
//! node runs the instance (`euca_conf --list-nodes`), then copies the instance's
//! root disk from that node with scp. ssh runs as the user, with the user's keys.

use rehost_sdk::source::{
    config, fail, host, info, Error, Result, Source, SourceReport, SshTarget,
};
use serde::Deserialize;

rehost_sdk::manifest!("../rehost.toml");

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The cloud controller, where euca_conf runs.
    pub controller: String,
    /// The instance id (i-XXXXXXXX).
    pub instance: String,
    /// The Eucalyptus user owning the instance (the `{user}` of `path`).
    pub user: String,
    /// The ssh login on the controller and the node (default: ssh's own choice).
    pub ssh_user: Option<String>,
    /// The ssh port on the controller and the node.
    pub port: Option<u16>,
    /// The root disk on the node; `{user}` and `{instance}` are filled in.
    pub path: String,
    /// The command listing the nodes.
    pub euca_conf: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            controller: String::new(),
            instance: String::new(),
            user: String::new(),
            ssh_user: None,
            port: None,
            path: "/usr/local/eucalyptus/{user}/{instance}/root".into(),
            euca_conf: "euca_conf".into(),
        }
    }
}

pub struct EucaScp;

impl Source for EucaScp {
    fn fetch(text: &str) -> Result<SourceReport> {
        let cfg: Config = config(text)?;
        for (name, value) in [("controller", &cfg.controller), ("instance", &cfg.instance)] {
            if value.is_empty() {
                return Err(Error::Invalid(format!("euca-scp needs `{name}`")));
            }
        }
        if cfg.path.contains("{user}") && cfg.user.is_empty() {
            return Err(Error::Invalid(
                "euca-scp needs `user`, the Eucalyptus user owning the instance (or a `path` \
                 without {user})"
                    .into(),
            ));
        }
        let listing = list_nodes(&cfg)?;
        let node = node_of(&listing, &cfg.instance)?;
        let remote = cfg
            .path
            .replace("{user}", &cfg.user)
            .replace("{instance}", &cfg.instance);
        info(&format!(
            "{} runs on node {node}; copying {remote}",
            cfg.instance
        ));
        let copied = host::scp_into_work(&target(&cfg, &node), &remote)?;
        Ok(SourceReport {
            origin: format!("Eucalyptus instance {} on node {node}", cfg.instance),
            metadata: vec![
                ("euca.instance-id".into(), cfg.instance.clone()),
                ("euca.node".into(), node),
                ("source.path".into(), remote),
                ("source.sha256".into(), copied.sha256),
            ],
        })
    }
}

fn target(cfg: &Config, host: &str) -> SshTarget {
    SshTarget {
        host: host.into(),
        port: cfg.port,
        user: cfg.ssh_user.clone(),
    }
}

fn list_nodes(cfg: &Config) -> Result<String> {
    let argv = [cfg.euca_conf.clone(), "--list-nodes".into()];
    let out = host::ssh_run(&target(cfg, &cfg.controller), &argv)?;
    if !out.success() {
        return Err(fail(format!(
            "`{} --list-nodes` on {} exited with status {}: {}",
            cfg.euca_conf,
            cfg.controller,
            out.status,
            out.stderr_text().trim()
        )));
    }
    Ok(out.stdout_text())
}

/// The node holding `instance` in `euca_conf --list-nodes` output: the address on
/// the line that lists the instance ("   10.0.1.11  cluster01  i-3E8C4A1B ...").
pub fn node_of(listing: &str, instance: &str) -> Result<String> {
    let line = listing
        .lines()
        .find(|l| l.split_whitespace().any(|w| w == instance))
        .ok_or_else(|| {
            Error::NotFound(format!(
                "no node controller lists instance {instance}; is it running? \
                 (euca_conf --list-nodes printed: {})",
                listing.trim()
            ))
        })?;
    line.split_whitespace()
        .find(|w| is_ipv4(w))
        .map(String::from)
        .ok_or_else(|| {
            fail(format!(
                "no node address on the line listing {instance}: {line}"
            ))
        })
}

fn is_ipv4(word: &str) -> bool {
    let parts: Vec<&str> = word.split('.').collect();
    parts.len() == 4 && parts.iter().all(|p| p.parse::<u8>().is_ok())
}

rehost_sdk::export_source!(EucaScp);

#[cfg(test)]
mod tests {
    use super::*;

    const LISTING: &str = "registered nodes:\n   \
        10.0.1.11  cluster01  i-3E8C4A1B  i-5F2D3C44\n   \
        10.0.1.12  cluster01  i-4A2B7F19\n   \
        10.0.1.13  cluster01\n";

    #[test]
    fn finds_the_node() {
        assert_eq!(node_of(LISTING, "i-4A2B7F19").unwrap(), "10.0.1.12");
        assert_eq!(node_of(LISTING, "i-5F2D3C44").unwrap(), "10.0.1.11");
        assert!(matches!(
            node_of(LISTING, "i-4A2B7F1"),
            Err(Error::NotFound(_))
        ));
    }
}
