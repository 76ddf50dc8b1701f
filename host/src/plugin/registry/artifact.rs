//! The OCI artifact layout of a plugin (the CNCF Wasm layout): a config blob of type
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer holding the
//! component, and the rehost manifest TOML copied into the OCI manifest's
//! annotations, so what a plugin asks for can be shown before the layer is fetched.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::client::OCI_MANIFEST;
use crate::plugin::manifest::Manifest;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The annotation holding the rehost manifest (TOML).
pub const MANIFEST_ANNOTATION: &str = "dev.rehost.manifest";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OciManifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The Wasm config blob (`layerDigests` as the CNCF layout has it), plus the manifest.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmConfig<'a> {
    architecture: &'a str,
    os: &'a str,
    layer_digests: [&'a str; 1],
    #[serde(rename = "dev.rehost.manifest")]
    manifest: &'a str,
}

/// The config blob for a component whose layer digest and manifest TOML are given.
pub fn config_blob(layer_digest: &str, manifest_toml: &str) -> Vec<u8> {
    let config = WasmConfig {
        architecture: "wasm",
        os: "wasip2",
        layer_digests: [layer_digest],
        manifest: manifest_toml,
    };
    // A struct of strings always serialises.
    serde_json::to_vec(&config).unwrap_or_default()
}

/// The OCI manifest tying the config and the component layer together.
pub fn oci_manifest(
    manifest: &Manifest,
    manifest_toml: &str,
    config: Descriptor,
    layer: Descriptor,
) -> OciManifest {
    let annotations = BTreeMap::from([
        (MANIFEST_ANNOTATION.to_string(), manifest_toml.to_string()),
        (
            "org.opencontainers.image.title".to_string(),
            manifest.name.clone(),
        ),
        (
            "org.opencontainers.image.version".to_string(),
            manifest.version.to_string(),
        ),
        (
            "org.opencontainers.image.description".to_string(),
            manifest.description.clone(),
        ),
    ]);
    OciManifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.into()),
        config,
        layers: vec![layer],
        annotations,
    }
}

/// Why an OCI manifest is not a rehost plugin.
pub fn check_layout(oci: &OciManifest) -> Result<&Descriptor, String> {
    if oci.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(format!(
            "its config is {:?}, not {CONFIG_MEDIA_TYPE:?}",
            oci.config.media_type
        ));
    }
    match oci.layers.as_slice() {
        [layer] if layer.media_type == LAYER_MEDIA_TYPE => Ok(layer),
        [layer] => Err(format!(
            "its layer is {:?}, not {LAYER_MEDIA_TYPE:?}",
            layer.media_type
        )),
        layers => Err(format!(
            "it has {} layers; a plugin has exactly one {LAYER_MEDIA_TYPE:?} layer",
            layers.len()
        )),
    }
}

/// Parses an OCI manifest and reads the rehost manifest from its annotations.
pub fn parse(bytes: &[u8], origin: &str) -> Result<(OciManifest, Manifest), String> {
    let oci: OciManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not an OCI manifest: {e}"))?;
    check_layout(&oci)?;
    let toml = oci
        .annotations
        .get(MANIFEST_ANNOTATION)
        .ok_or_else(|| format!("no {MANIFEST_ANNOTATION:?} annotation"))?;
    let manifest = Manifest::parse(toml, origin).map_err(|e| e.to_string())?;
    Ok((oci, manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOML: &str = r#"
name = "demo"
version = "1.2.3"
kind = "fixer"
description = "d"
api = "^0.1"
"#;

    fn descriptor(media_type: &str) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 1,
        }
    }

    #[test]
    fn round_trip_and_layout_checks() {
        let manifest = Manifest::parse(TOML, "t").unwrap();
        let oci = oci_manifest(
            &manifest,
            TOML,
            descriptor(CONFIG_MEDIA_TYPE),
            descriptor(LAYER_MEDIA_TYPE),
        );
        let bytes = serde_json::to_vec(&oci).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains(r#""schemaVersion":2"#), "{text}");
        assert!(text.contains(r#""mediaType":"application/wasm""#), "{text}");
        let (_, back) = parse(&bytes, "t").unwrap();
        assert_eq!(back, manifest);

        let mut docker = oci.clone();
        docker.config.media_type = "application/vnd.oci.image.config.v1+json".into();
        let err = parse(&serde_json::to_vec(&docker).unwrap(), "t").unwrap_err();
        assert!(err.contains("its config is"), "{err}");
        let mut two = oci;
        two.layers.push(descriptor(LAYER_MEDIA_TYPE));
        let err = check_layout(&two).unwrap_err();
        assert!(err.contains("2 layers"), "{err}");
    }

    #[test]
    fn config_names_the_layer() {
        let blob = config_blob("sha256:ab", TOML);
        let v: serde_json::Value = serde_json::from_slice(&blob).unwrap();
        assert_eq!(v["layerDigests"][0], "sha256:ab");
        assert_eq!(v["architecture"], "wasm");
        assert_eq!(v["dev.rehost.manifest"], TOML);
    }
}
