//! The key names a section's struct accepts, read from its derived `Deserialize`, and the
//! nearest of them to a misspelt key.
//!
//! Reading the names from serde keeps one list per section: the struct's fields. This module
//! never parses a file and never decides whether a key is allowed; its callers do.

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// The keys of struct `T`, as written in the file (after `rename`).
pub fn of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The probe only records the field list a derived impl hands to `deserialize_struct`,
    // then fails on purpose; the error carries nothing.
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

struct Probe<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Probe<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("fields read"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// The key of `candidates` nearest to `key`, when it is close enough to be a misspelling
/// (at most a third of its letters differ, and at least one is the same).
pub fn nearest<'a>(key: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (key.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (distance(key, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance (insertions, deletions, substitutions) between two short keys.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        name: String,
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        port: Option<u16>,
    }

    #[test]
    fn the_keys_are_the_fields_as_written() {
        assert_eq!(of::<Sample>(), ["name", "type", "port"]);
    }

    #[test]
    fn a_misspelling_finds_its_key_and_a_stranger_finds_none() {
        let keys = ["max_auth_tries", "max_connections", "kex"];
        assert_eq!(nearest("max_auth_triez", keys), Some("max_auth_tries"));
        assert_eq!(nearest("max_conections", keys), Some("max_connections"));
        assert_eq!(nearest("kx", keys), Some("kex"));
        assert_eq!(nearest("colour", keys), None);
    }
}
