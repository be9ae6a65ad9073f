//! Detached RSASSA-PSS signatures (PKCS #1 v2.1, RFC 8017), verified with aws-lc-rs.
//!
//! The file is hashed as it is read (any size, constant memory) and the digest is verified
//! against each configured public key in turn. The signature file may hold the raw
//! signature or its base64 text (line breaks allowed), as `openssl pkeyutl` and
//! `openssl base64` write them. Keys are PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or
//! `RSA PUBLIC KEY` (PKCS #1) blocks of 2048 to 8192 bits. There is no "auto" salt length:
//! the configuration names the one the signers use (`digest`, the default, is what
//! `rsa_pss_saltlen:digest` produces).

use std::fs::File;
use std::os::unix::fs::FileExt;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rsa::PublicEncryptingKey;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPssSaltLength};
use base64::Engine as _;

/// Largest signature file read.
pub const MAX_SIGNATURE_FILE: u64 = 64 * 1024;

/// A key or setting that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SignatureError(pub String);

/// The digest the signers hash with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PssDigest {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl PssDigest {
    /// Parses `sha256`, `sha384` or `sha512`.
    pub fn parse(text: &str) -> Option<PssDigest> {
        match text.to_ascii_lowercase().replace('-', "").as_str() {
            "sha256" => Some(PssDigest::Sha256),
            "sha384" => Some(PssDigest::Sha384),
            "sha512" => Some(PssDigest::Sha512),
            _ => None,
        }
    }
}

/// The PSS salt length the signers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaltLength {
    /// As long as the digest (OpenSSL `rsa_pss_saltlen:digest`).
    Digest,
    /// The longest the key allows (OpenSSL `rsa_pss_saltlen:max`).
    Max,
    /// This many bytes.
    Bytes(u16),
}

struct NamedKey {
    name: String,
    key: ParsedPublicKey,
}

/// Public keys and the algorithm they verify with.
pub struct Verifier {
    keys: Vec<NamedKey>,
    digest: &'static digest::Algorithm,
}

fn parameters(digest: PssDigest, salt: SaltLength) -> &'static RsaParameters {
    let salt = match salt {
        SaltLength::Digest => {
            return match digest {
                PssDigest::Sha256 => &signature::RSA_PSS_2048_8192_SHA256,
                PssDigest::Sha384 => &signature::RSA_PSS_2048_8192_SHA384,
                PssDigest::Sha512 => &signature::RSA_PSS_2048_8192_SHA512,
            };
        }
        SaltLength::Max => RsaPssSaltLength::Max,
        SaltLength::Bytes(n) => RsaPssSaltLength::Custom(n),
    };
    let chosen = match digest {
        PssDigest::Sha256 => signature::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(salt),
        PssDigest::Sha384 => signature::RSA_PSS_2048_8192_SHA384.with_pss_salt_length(salt),
        PssDigest::Sha512 => signature::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(salt),
    };
    // aws-lc-rs verifies only with `'static` parameters; one small value per configured
    // handler, made once at start-up, is kept for the life of the process.
    Box::leak(Box::new(chosen))
}

/// Whether a parsed RSA key has 2048 to 8192 bits (the range aws-lc-rs accepts for a
/// public key it is given whole).
fn size_accepted(key: &ParsedPublicKey) -> bool {
    AsDer::<PublicKeyX509Der<'_>>::as_der(key)
        .is_ok_and(|spki| PublicEncryptingKey::from_der(spki.as_ref()).is_ok())
}

/// The DER bodies of the PEM public-key blocks in `pem`.
fn pem_public_keys(pem: &str) -> Result<Vec<Vec<u8>>, SignatureError> {
    let mut keys = Vec::new();
    let mut body: Option<String> = None;
    for line in pem.lines() {
        let line = line.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if !matches!(label, "PUBLIC KEY" | "RSA PUBLIC KEY") {
                return Err(SignatureError(format!(
                    "holds a {label:?} block; give the public key (`openssl pkey -pubout`)"
                )));
            }
            body = Some(String::new());
        } else if line.starts_with("-----END ") {
            let text = body.take().unwrap_or_default();
            let der = base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|e| SignatureError(format!("PEM body is not base64: {e}")))?;
            keys.push(der);
        } else if let Some(text) = body.as_mut() {
            text.push_str(line);
        }
    }
    if keys.is_empty() {
        return Err(SignatureError("no PEM public key in the file".into()));
    }
    Ok(keys)
}

impl Verifier {
    /// A verifier over the PEM files' keys, named after their files.
    pub fn new(
        files: &[(String, String)],
        digest: PssDigest,
        salt: SaltLength,
    ) -> Result<Verifier, SignatureError> {
        let algorithm = parameters(digest, salt);
        let mut keys = Vec::new();
        for (name, pem) in files {
            for (i, der) in pem_public_keys(pem)
                .map_err(|e| SignatureError(format!("{name}: {e}")))?
                .into_iter()
                .enumerate()
            {
                let key = signature::UnparsedPublicKey::new(algorithm, der)
                    .parse()
                    .map_err(|e| {
                        SignatureError(format!(
                            "{name}: not an RSA public key of 2048 to 8192 bits ({e})"
                        ))
                    })?;
                // Parsing accepts any size; a smaller key would only fail every file later,
                // reported as an invalid signature.
                if !size_accepted(&key) {
                    return Err(SignatureError(format!(
                        "{name}: the RSA key is smaller than 2048 or larger than 8192 bits"
                    )));
                }
                let name = if i == 0 {
                    name.clone()
                } else {
                    format!("{name}#{}", i + 1)
                };
                keys.push(NamedKey { name, key });
            }
        }
        Ok(Verifier {
            keys,
            digest: match digest {
                PssDigest::Sha256 => &digest::SHA256,
                PssDigest::Sha384 => &digest::SHA384,
                PssDigest::Sha512 => &digest::SHA512,
            },
        })
    }

    /// The digest the signers hash with.
    pub fn algorithm(&self) -> &'static digest::Algorithm {
        self.digest
    }

    /// Verifies the open `file` (read through its descriptor, from the start) against the
    /// signature text `signature`: the name of the key that verifies it, or `None`.
    /// Blocking: reads the whole file.
    pub fn verify_file(&self, file: &File, signature: &[u8]) -> std::io::Result<Option<String>> {
        let mut context = digest::Context::new(self.digest);
        let mut buffer = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        loop {
            let n = file.read_at(&mut buffer, offset)?;
            if n == 0 {
                break;
            }
            context.update(&buffer[..n]);
            offset += n as u64;
        }
        let digest = context.finish();
        Ok(self.verify_digest(&digest, signature))
    }

    /// The name of the key that verifies `signature` over `digest` (made with
    /// [`Verifier::algorithm`]), or `None`.
    pub fn verify_digest(&self, digest: &digest::Digest, signature: &[u8]) -> Option<String> {
        let mut candidates = vec![signature.to_vec()];
        let text: Vec<u8> = signature
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(&text) {
            candidates.push(decoded);
        }
        self.keys.iter().find_map(|named| {
            candidates
                .iter()
                .any(|sig| named.key.verify_digest_sig(digest, sig).is_ok())
                .then(|| named.name.clone())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::rsa::KeySize;
    use aws_lc_rs::signature::{KeyPair, RsaKeyPair};

    fn pem(der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn verifies_raw_and_base64_and_refuses_changes() {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let spki = pair.public_key().as_der().unwrap();
        let verifier = Verifier::new(
            &[("acme.pem".into(), pem(spki.as_ref()))],
            PssDigest::Sha256,
            SaltLength::Digest,
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.csv");
        std::fs::write(&file, b"a,b\n1,2\n").unwrap();
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &signature::RSA_PSS_SHA256,
            &SystemRandom::new(),
            b"a,b\n1,2\n",
            &mut sig,
        )
        .unwrap();
        let open = |p: &std::path::Path| File::open(p).unwrap();
        assert_eq!(
            verifier.verify_file(&open(&file), &sig).unwrap().as_deref(),
            Some("acme.pem")
        );
        let text = base64::engine::general_purpose::STANDARD.encode(&sig);
        let wrapped = format!("{}\n{}\n", &text[..64], &text[64..]);
        assert!(
            verifier
                .verify_file(&open(&file), wrapped.as_bytes())
                .unwrap()
                .is_some()
        );
        std::fs::write(&file, b"a,b\n1,3\n").unwrap();
        assert!(verifier.verify_file(&open(&file), &sig).unwrap().is_none());
        // Another salt length is another verifier: the signature does not pass it.
        let max = Verifier::new(
            &[("acme.pem".into(), pem(spki.as_ref()))],
            PssDigest::Sha256,
            SaltLength::Max,
        )
        .unwrap();
        std::fs::write(&file, b"a,b\n1,2\n").unwrap();
        assert!(max.verify_file(&open(&file), &sig).unwrap().is_none());
    }

    #[test]
    fn refuses_keys_too_small_at_load() {
        let small = "-----BEGIN PUBLIC KEY-----\nMIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDHTwMoPe2iRvSrgS5vMJG6cg4J\n/NHA8kc6Jgp3Y4s/HabgAaRgLyDspLUC6X0CvA4HqYQyiGchfsme3KwleQV9y43h\nwocsWo1Gg6txhi5dx65Z7ytCgywL8HAm6fQH4Rrds3vz+n347XOuf7nQHnvyfTgi\n7ZXGv+CXN/DvvpFEEwIDAQAB\n-----END PUBLIC KEY-----\n";
        let refused = Verifier::new(
            &[("old.pem".into(), small.into())],
            PssDigest::Sha256,
            SaltLength::Digest,
        )
        .err()
        .map(|e| e.0);
        assert_eq!(
            refused.as_deref(),
            Some("old.pem: the RSA key is smaller than 2048 or larger than 8192 bits")
        );
    }

    #[test]
    fn refuses_private_keys_and_empty_files() {
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(
            Verifier::new(
                &[("k".into(), private.into())],
                PssDigest::Sha256,
                SaltLength::Digest
            )
            .is_err()
        );
        assert!(
            Verifier::new(
                &[("k".into(), String::new())],
                PssDigest::Sha256,
                SaltLength::Digest
            )
            .is_err()
        );
    }
}
