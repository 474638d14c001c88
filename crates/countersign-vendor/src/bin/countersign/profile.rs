//! Profiles: the settings of `put`, `get`, `cat`, `head` and `ls` saved under a name
//! in a TOML file, so a command is not eight flags. Flags (and their environment
//! variables) override the profile.
//!
//! ```toml
//! [default]
//! gatekeeper = "https://gk.acme.example"
//! gatekeeper_keys = ["gatekeeper.pub"]   # relative paths: next to this file
//! signing_keys = ["vendor-2026.key"]
//! audience = "gk.acme"
//! subject = "ops"
//! bucket = "patient-reports"
//! ```

use crate::Failure;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Environment variable naming the profile file (instead of the default path).
pub const PROFILES_ENV: &str = "COUNTERSIGN_PROFILES";
/// Environment variable naming the profile (instead of `default`).
pub const PROFILE_ENV: &str = "COUNTERSIGN_PROFILE";
/// The profile used when none is named (if the file has it).
pub const DEFAULT_PROFILE: &str = "default";

/// One profile. Every member is optional; unknown members are refused (a typo must
/// not silently drop a setting).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Gatekeeper base URL.
    pub gatekeeper: Option<String>,
    /// Gatekeeper public key files.
    #[serde(default)]
    pub gatekeeper_keys: Vec<PathBuf>,
    /// Secret key files.
    #[serde(default)]
    pub signing_keys: Vec<PathBuf>,
    /// Public key files of vendor keys whose uploads are trusted.
    #[serde(default)]
    pub vendor_keys: Vec<PathBuf>,
    /// Gatekeeper id requests are addressed to.
    pub audience: Option<String>,
    /// The vendor user id requests are made for.
    pub subject: Option<String>,
    /// Bucket.
    pub bucket: Option<String>,
    /// Request lifetime in seconds.
    pub lifetime: Option<u64>,
}

/// The default profile file: `$XDG_CONFIG_HOME/countersign/profiles.toml`, else
/// `$HOME/.config/countersign/profiles.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("countersign").join("profiles.toml"))
}

fn invalid(path: &Path, message: impl std::fmt::Display) -> Failure {
    Failure {
        exit: 3,
        code: "invalid_profile".to_owned(),
        message: format!("{}: {message}", path.display()),
    }
}

/// Loads the profile `name` from `file` (or [`default_path`]). A profile named
/// explicitly must exist; the `default` profile is used only if the file has one.
/// Relative key paths are resolved against the file's directory.
pub fn load(file: Option<&Path>, name: Option<&str>) -> Result<Profile, Failure> {
    let Some(path) = file.map(Path::to_path_buf).or_else(default_path) else {
        return match name {
            Some(n) => Err(Failure::usage(format!(
                "profile `{n}`: no profile file (set --profiles, ${PROFILES_ENV} or $HOME)"
            ))),
            None => Ok(Profile::default()),
        };
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // Without a profile named (or a file given) a missing default file is fine.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && name.is_none() && file.is_none() => {
            return Ok(Profile::default());
        }
        Err(e) => return Err(Failure::io(&path.display().to_string(), &e)),
    };
    let mut profiles: BTreeMap<String, Profile> =
        toml::from_str(&text).map_err(|e| invalid(&path, e.to_string().trim_end()))?;
    let wanted = name.unwrap_or(DEFAULT_PROFILE);
    let Some(mut profile) = profiles.remove(wanted) else {
        return match name {
            Some(_) => Err(invalid(
                &path,
                format!(
                    "has no profile `{wanted}` (it has: {})",
                    profiles.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )),
            None => Ok(Profile::default()),
        };
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    for list in [
        &mut profile.gatekeeper_keys,
        &mut profile.signing_keys,
        &mut profile.vendor_keys,
    ] {
        for p in list.iter_mut() {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
    }
    Ok(profile)
}
