//! The files a configuration names: its own file, host keys, the TLS certificate and key,
//! handler keys, programs, secret files, CA files, the audit file, and whatever a later
//! section adds, found by walking every string value of the file rather than by a list of
//! keys that would fall behind the configuration.
//!
//! A value names a file when, read as a path (a `file:` prefix dropped) and
//! resolved against the configuration's folder, it is an existing regular file. Folders
//! (the data folder, home folders, quarantine) are not files and are left out; so is the
//! store, which a backup carries as a consistent snapshot instead.
//!
//! This module only reads: it must never open a file for writing.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context as _, Result};

/// One file to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// Where it is now.
    pub source: PathBuf,
    /// Where a restore puts it: relative to the configuration's folder, or absolute when the
    /// file lives outside that folder.
    pub place: Place,
}

/// Where a carried file goes back.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// Below the configuration's folder (restored below the new folder).
    Inside(PathBuf),
    /// Elsewhere on the machine (restored at the same absolute path).
    Outside(PathBuf),
}

/// The configuration file at `config` and every file it names (relative paths from
/// `base`), each once, but those in `left_out` (canonical paths).
pub fn files(config: &Path, base: &Path, left_out: &[PathBuf]) -> Result<Vec<Named>> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("cannot parse {}", config.display()))?;
    let canonical_base = std::fs::canonicalize(base)
        .with_context(|| format!("cannot resolve {}", base.display()))?;
    let mut strings = Vec::new();
    collect(&toml::Value::Table(table), &mut strings);
    let mut found = BTreeMap::new();
    let config = std::fs::canonicalize(config)
        .with_context(|| format!("cannot resolve {}", config.display()))?;
    found.insert(config.clone(), place_of(&canonical_base, &config));
    for value in strings {
        let Some(candidate) = as_path(&value) else {
            continue;
        };
        // `join` keeps an absolute candidate as it is.
        let resolved = base.join(candidate);
        let Ok(metadata) = std::fs::metadata(&resolved) else {
            continue;
        };
        if !metadata.is_file() {
            continue;
        }
        let canonical = std::fs::canonicalize(&resolved)
            .with_context(|| format!("cannot resolve {}", resolved.display()))?;
        if left_out.contains(&canonical) {
            continue;
        }
        let place = place_of(&canonical_base, &canonical);
        found.entry(canonical).or_insert(place);
    }
    Ok(found
        .into_iter()
        .map(|(source, place)| Named { source, place })
        .collect())
}

fn collect(value: &toml::Value, out: &mut Vec<String>) {
    match value {
        toml::Value::String(s) => out.push(s.clone()),
        toml::Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        toml::Value::Table(table) => table.values().for_each(|v| collect(v, out)),
        _ => {}
    }
}

/// The path a string value may name, if it can name one at all.
fn as_path(value: &str) -> Option<&str> {
    let value = value.strip_prefix("file:").unwrap_or(value);
    if value.is_empty()
        || value.len() > 4096
        || value.contains(['\n', '\0'])
        || value.contains("://")
        || value.starts_with("sqlite:")
        || value.starts_with("env:")
    {
        return None;
    }
    Some(value)
}

fn place_of(base: &Path, canonical: &Path) -> Place {
    match canonical.strip_prefix(base) {
        Ok(relative)
            if relative
                .components()
                .all(|c| matches!(c, Component::Normal(_))) =>
        {
            Place::Inside(relative.to_owned())
        }
        _ => Place::Outside(canonical.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_cannot_be_paths_are_skipped() {
        assert_eq!(as_path("file:secret.txt"), Some("secret.txt"));
        assert_eq!(as_path("keys/a.pem"), Some("keys/a.pem"));
        assert_eq!(as_path("env:WHARF_PASSWORD"), None);
        assert_eq!(as_path("sqlite:wharf-data/wharf.db"), None);
        assert_eq!(as_path("postgres://wharf@db:5432/wharf"), None);
        assert_eq!(as_path(""), None);
    }

    #[test]
    fn a_file_below_the_folder_goes_back_below_it() {
        let base = Path::new("/srv/wharf");
        assert_eq!(
            place_of(base, Path::new("/srv/wharf/wharf-data/keys/k")),
            Place::Inside("wharf-data/keys/k".into())
        );
        assert_eq!(
            place_of(base, Path::new("/opt/scripts/scan.sh")),
            Place::Outside("/opt/scripts/scan.sh".into())
        );
    }
}
