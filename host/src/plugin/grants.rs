//! Effective rights: what the manifest asks ∩ what the user granted at install ∩
//! what the pipeline config allows. Every host call checks against these before it
//! touches anything; a refusal names the plugin, the operation and the missing grant.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::manifest::Capabilities;

/// Which list a request was checked against, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// The compiled rights of one plugin in one run.
#[derive(Debug, Clone)]
pub struct Grants {
    read: Patterns,
    write: Patterns,
    commands: Vec<String>,
    network: Vec<String>,
    devices: Vec<String>,
}

#[derive(Debug, Clone)]
struct Patterns {
    globs: Vec<String>,
    set: GlobSet,
}

impl Patterns {
    fn new(globs: Vec<String>) -> Result<Self, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        for g in &globs {
            // `*` must not cross '/', or "/etc/*" would grant "/etc/ssh/keys".
            builder.add(GlobBuilder::new(g).literal_separator(true).build()?);
        }
        Ok(Self {
            globs,
            set: builder.build()?,
        })
    }

    fn matches(&self, path: &str) -> bool {
        self.set.is_match(path)
    }
}

/// A refused request.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Denied(pub String);

impl Grants {
    /// Intersects the manifest's requests with the user's grants and the pipeline's
    /// allowances. `None` for a layer means that layer does not restrict.
    pub fn effective(
        requested: &Capabilities,
        granted: Option<&Capabilities>,
        allowed: Option<&Capabilities>,
    ) -> Result<Self, globset::Error> {
        let layers: Vec<&Capabilities> = [granted, allowed].into_iter().flatten().collect();
        let keep_globs = |pick: fn(&Capabilities) -> &Vec<String>| -> Vec<String> {
            pick(requested)
                .iter()
                .filter(|g| layers.iter().all(|l| covers(pick(l), g)))
                .cloned()
                .collect()
        };
        let keep_exact = |pick: fn(&Capabilities) -> &Vec<String>| -> Vec<String> {
            pick(requested)
                .iter()
                .filter(|c| {
                    layers
                        .iter()
                        .all(|l| pick(l).iter().any(|x| x == *c || x == "*"))
                })
                .cloned()
                .collect()
        };
        Ok(Self {
            read: Patterns::new(keep_globs(|c| &c.guest_read))?,
            write: Patterns::new(keep_globs(|c| &c.guest_write))?,
            commands: keep_exact(|c| &c.commands),
            network: keep_exact(|c| &c.network),
            devices: keep_exact(|c| &c.devices),
        })
    }

    /// Checks a guest path (already validated and normalised). Writing implies
    /// reading, so a write grant also allows reads of the same paths.
    pub fn check_path(
        &self,
        plugin: &str,
        op: &str,
        path: &str,
        access: Access,
    ) -> Result<(), Denied> {
        let ok = match access {
            Access::Read => self.read.matches(path) || self.write.matches(path),
            Access::Write => self.write.matches(path),
        };
        if ok {
            return Ok(());
        }
        let (what, globs) = match access {
            Access::Read => ("read", &self.read.globs),
            Access::Write => ("write", &self.write.globs),
        };
        Err(Denied(format!(
            "plugin {plugin}: {op} {path}: no {what} grant covers this path (granted {what}: {})",
            list(globs)
        )))
    }

    /// Checks argv[0] against the granted commands (exact guest path or bare name).
    pub fn check_command(&self, plugin: &str, argv0: &str) -> Result<(), Denied> {
        if self.commands.iter().any(|c| c == argv0) {
            return Ok(());
        }
        Err(Denied(format!(
            "plugin {plugin}: run {argv0}: command not granted (granted commands: {})",
            list(&self.commands)
        )))
    }

    /// Whether commands inside the guest get the network.
    pub fn guest_network(&self) -> bool {
        !self.network.is_empty()
    }

    /// Checks a network host (sources).
    pub fn check_host(&self, plugin: &str, host: &str) -> Result<(), Denied> {
        if self.network.iter().any(|h| h == host || h == "*") {
            return Ok(());
        }
        Err(Denied(format!(
            "plugin {plugin}: connect to {host}: host not granted (granted network: {})",
            list(&self.network)
        )))
    }

    /// Checks a host device or file (sources).
    pub fn check_device(&self, plugin: &str, path: &str) -> Result<(), Denied> {
        if self.devices.iter().any(|d| d == path) {
            return Ok(());
        }
        Err(Denied(format!(
            "plugin {plugin}: read device {path}: not granted (granted devices: {})",
            list(&self.devices)
        )))
    }
}

/// Whether a layer's globs allow a requested glob: the same pattern, a `**` prefix
/// of it, or a pattern matching it literally.
fn covers(layer: &[String], requested: &str) -> bool {
    layer.iter().any(|l| {
        l == requested
            || l == "/**"
            || l.strip_suffix("/**")
                .is_some_and(|dir| requested.starts_with(&format!("{dir}/")))
            || GlobBuilder::new(l)
                .literal_separator(true)
                .build()
                .is_ok_and(|g| g.compile_matcher().is_match(requested))
    })
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(read: &[&str], write: &[&str], commands: &[&str]) -> Capabilities {
        Capabilities {
            guest_read: read.iter().map(|s| s.to_string()).collect(),
            guest_write: write.iter().map(|s| s.to_string()).collect(),
            commands: commands.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn star_stays_in_one_directory() {
        let g = Grants::effective(&caps(&["/etc/*"], &[], &[]), None, None).unwrap();
        g.check_path("p", "read", "/etc/fstab", Access::Read)
            .unwrap();
        let err = g
            .check_path("p", "read", "/etc/ssh/key", Access::Read)
            .unwrap_err();
        assert!(
            err.0.contains("plugin p: read /etc/ssh/key: no read grant"),
            "{}",
            err.0
        );
    }

    #[test]
    fn effective_is_the_intersection() {
        let requested = caps(
            &["/etc/**"],
            &["/etc/fstab", "/etc/shadow"],
            &["/usr/bin/yum", "mkinitrd"],
        );
        let granted = caps(&["/**"], &["/etc/fstab"], &["mkinitrd"]);
        let allowed = caps(&["/etc/**"], &["/etc/**"], &["*"]);
        let g = Grants::effective(&requested, Some(&granted), Some(&allowed)).unwrap();
        g.check_path("p", "write", "/etc/fstab", Access::Write)
            .unwrap();
        assert!(g
            .check_path("p", "write", "/etc/shadow", Access::Write)
            .is_err());
        g.check_path("p", "read", "/etc/passwd", Access::Read)
            .unwrap();
        g.check_command("p", "mkinitrd").unwrap();
        let err = g.check_command("p", "/usr/bin/yum").unwrap_err();
        assert!(
            err.0
                .contains("command not granted (granted commands: mkinitrd)"),
            "{}",
            err.0
        );
    }

    #[test]
    fn nothing_requested_nothing_granted() {
        let g = Grants::effective(&Capabilities::default(), None, None).unwrap();
        assert!(g
            .check_path("p", "read", "/etc/fstab", Access::Read)
            .is_err());
        assert!(!g.guest_network());
        assert!(g.check_host("p", "example.org").is_err());
    }
}
