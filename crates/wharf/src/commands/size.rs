//! File-size bounds as administrators write them (`--max-file-size 512K`, `max_file_size =
//! 1073741824` in `wharf apply` files) and as `show`, `list` and `export` print them.
//!
//! Every bound is checked here to lie between 1 byte and what the store can hold, so nothing
//! larger reaches a record; this module never decides what a bound means for a session.

use std::fmt;

use anyhow::{Result, bail};
use serde::Deserializer;

/// The largest bound there is: the store keeps sizes as signed 64-bit integers.
pub const MAX_BOUND: u64 = i64::MAX as u64;

/// Binary suffixes, largest first, for printing.
const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];

/// Parses a size in bytes, or with a suffix `K`, `M`, `G` or `T` (KiB … TiB, either case,
/// with or without `iB`): `1048576`, `512K`, `1G`, `2TiB`.
pub fn parse_size(text: &str) -> Result<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits);
    let shift = match suffix.trim_start().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        "T" | "TIB" => 40,
        _ => bail!("size {text:?}: use bytes, or a number followed by K, M, G or T (KiB … TiB)"),
    };
    let Ok(number) = number.parse::<u64>() else {
        bail!("size {text:?}: use bytes, or a number followed by K, M, G or T (KiB … TiB)");
    };
    let size = number
        .checked_mul(1 << shift)
        .filter(|&s| s <= MAX_BOUND)
        .ok_or_else(|| anyhow::anyhow!("size {text:?} is larger than {MAX_BOUND} bytes"))?;
    if size == 0 {
        bail!("size {text:?}: a file of at least 1 byte must be allowed");
    }
    Ok(size)
}

/// Parses a bound given on the command line: a size, or `none` (no bound of its own).
pub fn parse_bound(text: &str) -> Result<Option<u64>> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    parse_size(text)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--max-file-size: {e}"))
}

/// A size for people: `512 KiB` when it is a whole number of a binary unit, else bytes.
pub fn human(size: u64) -> String {
    for (unit, shift) in UNITS {
        if size >= 1 << shift && size.is_multiple_of(1 << shift) {
            return format!("{} {unit}", size >> shift);
        }
    }
    format!("{size} bytes")
}

/// A bound for people: the size, or `none`.
pub fn describe(bound: Option<u64>) -> String {
    bound.map_or_else(|| "none".to_owned(), human)
}

/// Reads `max_file_size` in an apply file: bytes as an integer (as `wharf export` writes
/// it) or a string with a suffix (`"512K"`); the TOML error then carries the line.
pub fn deserialize_bound<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Bound;
    impl serde::de::Visitor<'_> for Bound {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("max_file_size in bytes (1073741824), or a string such as \"1G\"")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(
                    "max_file_size must be at least 1 byte, not negative",
                )),
            }
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            match v {
                0 => Err(E::custom(
                    "max_file_size must be at least 1 byte; leave it out for no bound",
                )),
                v if v > MAX_BOUND => Err(E::custom(format!(
                    "max_file_size must be at most {MAX_BOUND} bytes"
                ))),
                v => Ok(v),
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            parse_size(v).map_err(|e| E::custom(format!("max_file_size: {e}")))
        }
    }
    d.deserialize_any(Bound).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn sizes_with_and_without_suffixes() {
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1M").unwrap(), 1 << 20);
        assert_eq!(parse_size("1 MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("64G").unwrap(), 64 << 30);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        assert_eq!(parse_size("7B").unwrap(), 7);
        assert_eq!(parse_size(&MAX_BOUND.to_string()).unwrap(), MAX_BOUND);
        for bad in [
            "",
            "0",
            "0K",
            "K",
            "-1",
            "1.5G",
            "1P",
            "1 G B",
            "G1",
            "+5",
            "9223372036854775808",
            "8388608T",
            "99999999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_bound("none").unwrap(), None);
        assert_eq!(parse_bound("NONE").unwrap(), None);
        assert_eq!(parse_bound("1G").unwrap(), Some(1 << 30));
        assert!(parse_bound("unlimited").is_err());
    }

    #[test]
    fn printed_in_the_largest_whole_unit() {
        assert_eq!(human(512 << 10), "512 KiB");
        assert_eq!(human(1 << 30), "1 GiB");
        assert_eq!(human(3 << 40), "3 TiB");
        assert_eq!(human(1536), "1536 bytes");
        assert_eq!(human(1000), "1000 bytes");
        assert_eq!(describe(None), "none");
    }

    #[test]
    fn apply_files_take_integers_and_suffixed_strings() {
        #[derive(Deserialize)]
        struct Entry {
            #[serde(default, deserialize_with = "deserialize_bound")]
            max_file_size: Option<u64>,
        }
        let read = |text: &str| toml::from_str::<Entry>(text).map(|e| e.max_file_size);
        assert_eq!(read("").unwrap(), None);
        assert_eq!(read("max_file_size = 1073741824").unwrap(), Some(1 << 30));
        assert_eq!(read("max_file_size = \"512K\"").unwrap(), Some(512 << 10));
        for bad in [
            "max_file_size = 0",
            "max_file_size = -5",
            "max_file_size = \"lots\"",
            "max_file_size = 1.5",
        ] {
            let e = read(bad).unwrap_err();
            assert!(e.message().contains("max_file_size"), "{bad}: {e}");
            assert!(e.span().is_some(), "{bad}");
        }
    }
}
