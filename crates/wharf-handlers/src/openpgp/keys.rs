//! Which keys of a partner's certificate may be used, and for what, as the certificate's
//! own signatures say (RFC 9580: key flags, key expiration, revocations).
//!
//! A certificate often holds keys that must no longer be used: after a partner rotates
//! keys the old encryption subkey is still there, expired or revoked, and often first; an
//! RSA subkey made for signing could encrypt too; a subkey made for encryption could
//! sign. So a key's algorithm decides nothing here: each component counts by its newest
//! self-signature in force at the time in question (encryption: now; verification: when
//! the signature was made), and a revoked component never counts. Revocations by other
//! keys (designated revokers) are not read.

use std::time::SystemTime;

use pgp::composed::{SignedPublicKey, SignedPublicSubKey};
use pgp::packet::{PublicKey, PublicSubkey, Signature, SignatureType};
use pgp::types::{KeyDetails, Tag, Timestamp};

/// A key to encrypt to.
pub(crate) enum EncryptTo<'a> {
    Primary(&'a PublicKey),
    Subkey(&'a PublicSubkey),
}

/// Now, as OpenPGP counts time.
pub(crate) fn now() -> Timestamp {
    Timestamp::try_from(SystemTime::now()).unwrap_or(Timestamp::from_secs(u32::MAX))
}

/// The keys of `cert` to encrypt to at `at`: every subkey whose binding then allows
/// encryption; only when there is none, the primary key if its own self-signature allows
/// it. Nothing when the certificate is revoked or expired.
pub(crate) fn encryption_keys(cert: &SignedPublicKey, at: Timestamp) -> Vec<EncryptTo<'_>> {
    let Some(primary) = primary_binding(cert, at) else {
        return Vec::new();
    };
    let subkeys: Vec<EncryptTo<'_>> = cert
        .public_subkeys
        .iter()
        .filter(|sub| sub.key.algorithm().can_encrypt())
        .filter(|sub| subkey_binding(cert, sub, at).is_some_and(encrypts))
        .map(|sub| EncryptTo::Subkey(&sub.key))
        .collect();
    if !subkeys.is_empty() {
        return subkeys;
    }
    if encrypts(primary) && cert.primary_key.algorithm().can_encrypt() {
        return vec![EncryptTo::Primary(&cert.primary_key)];
    }
    Vec::new()
}

/// Why `cert` has no key to encrypt to now, if it has none.
pub fn unusable_for_encryption(cert: &SignedPublicKey) -> Option<String> {
    let at = now();
    if !encryption_keys(cert, at).is_empty() {
        return None;
    }
    Some(
        if revoked(cert) {
            "the key is revoked"
        } else if primary_binding(cert, at).is_none() {
            "the key has expired (or carries no valid self-signature)"
        } else {
            "no key of it may encrypt now: each subkey is revoked, expired or not for \
             encryption, and the primary key is not for encryption"
        }
        .to_owned(),
    )
}

/// Whether `cert` vouches for a signature its primary key made at `at`: the certificate
/// was neither revoked nor expired then.
pub(crate) fn primary_may_sign(cert: &SignedPublicKey, at: Timestamp) -> bool {
    primary_binding(cert, at).is_some()
}

/// Whether `cert` vouches for a signature its subkey `sub` made at `at`: the subkey's
/// binding then allows signing, and neither it nor the certificate is revoked or was
/// expired then.
pub(crate) fn subkey_may_sign(
    cert: &SignedPublicKey,
    sub: &SignedPublicSubKey,
    at: Timestamp,
) -> bool {
    primary_binding(cert, at).is_some()
        && subkey_binding(cert, sub, at).is_some_and(|binding| binding.key_flags().sign())
}

fn encrypts(binding: &Signature) -> bool {
    let flags = binding.key_flags();
    flags.encrypt_comms() || flags.encrypt_storage()
}

/// Made by `at` and not expired then (a signature's own expiration, not its key's).
fn in_force(sig: &Signature, at: Timestamp) -> bool {
    let Some(created) = sig.created() else {
        return false;
    };
    created <= at
        && sig
            .signature_expiration_time()
            .filter(|d| d.as_secs() > 0)
            .is_none_or(|d| ends_after(created, d.as_secs(), at))
}

/// `created + seconds` is later than `at`.
fn ends_after(created: Timestamp, seconds: u32, at: Timestamp) -> bool {
    u64::from(created.as_secs()) + u64::from(seconds) > u64::from(at.as_secs())
}

/// The newest of `sigs` in force at `at`.
fn newest<'a>(sigs: impl Iterator<Item = &'a Signature>, at: Timestamp) -> Option<&'a Signature> {
    sigs.filter(|sig| in_force(sig, at))
        .max_by_key(|sig| sig.created())
}

/// A key made at `created` has not expired at `at`, by the key expiration time of its
/// self-signature `sig` (none, or zero: never).
fn unexpired(created: Timestamp, sig: &Signature, at: Timestamp) -> bool {
    match sig.key_expiration_time() {
        Some(d) if d.as_secs() > 0 => ends_after(created, d.as_secs(), at),
        _ => true,
    }
}

/// A revocation of the whole certificate by its primary key.
fn revoked(cert: &SignedPublicKey) -> bool {
    cert.details.revocation_signatures.iter().any(|sig| {
        sig.typ() == Some(SignatureType::KeyRevocation) && sig.verify_key(&cert.primary_key).is_ok()
    })
}

const CERTIFICATIONS: [SignatureType; 4] = [
    SignatureType::CertGeneric,
    SignatureType::CertPersona,
    SignatureType::CertCasual,
    SignatureType::CertPositive,
];

/// The primary key's self-signatures: direct-key signatures and its certifications of
/// its user ids (but those of user ids it revoked).
fn self_signatures(cert: &SignedPublicKey) -> impl Iterator<Item = &Signature> {
    let primary = &cert.primary_key;
    let direct = cert.details.direct_signatures.iter().filter(move |sig| {
        sig.typ() == Some(SignatureType::Key) && sig.verify_key(primary).is_ok()
    });
    let certified = cert.details.users.iter().flat_map(move |user| {
        let own = move |sig: &&Signature| {
            sig.verify_certification(primary, Tag::UserId, &user.id)
                .is_ok()
        };
        let withdrawn = user
            .signatures
            .iter()
            .filter(|sig| sig.typ() == Some(SignatureType::CertRevocation))
            .any(|sig| own(&sig));
        user.signatures
            .iter()
            .filter(move |sig| !withdrawn && sig.typ().is_some_and(|t| CERTIFICATIONS.contains(&t)))
            .filter(own)
    });
    direct.chain(certified)
}

/// The primary key's newest self-signature in force at `at`, unless the certificate is
/// revoked, or expired at `at`.
fn primary_binding(cert: &SignedPublicKey, at: Timestamp) -> Option<&Signature> {
    if revoked(cert) {
        return None;
    }
    let binding = newest(self_signatures(cert), at)?;
    unexpired(cert.primary_key.created_at(), binding, at).then_some(binding)
}

/// `sub`'s newest binding in force at `at`, unless the subkey is revoked, or expired at
/// `at`.
fn subkey_binding<'a>(
    cert: &SignedPublicKey,
    sub: &'a SignedPublicSubKey,
    at: Timestamp,
) -> Option<&'a Signature> {
    let verified = |sig: &&Signature| {
        sig.verify_subkey_binding(&cert.primary_key, &sub.key)
            .is_ok()
    };
    let of_type = |typ: SignatureType| move |sig: &&Signature| sig.typ() == Some(typ);
    if sub
        .signatures
        .iter()
        .filter(of_type(SignatureType::SubkeyRevocation))
        .any(|sig| verified(&sig))
    {
        return None;
    }
    let bindings = sub
        .signatures
        .iter()
        .filter(of_type(SignatureType::SubkeyBinding))
        .filter(verified);
    let binding = newest(bindings, at)?;
    unexpired(sub.key.created_at(), binding, at).then_some(binding)
}

#[cfg(test)]
mod tests {
    use pgp::composed::{
        EncryptionCaps, KeyType, SecretKeyParamsBuilder, SignedSecretKey, SubkeyParamsBuilder,
    };
    use pgp::crypto::ecc_curve::ECCCurve;
    use pgp::crypto::hash::HashAlgorithm;
    use pgp::packet::{KeyFlags, SignatureConfig, Subpacket, SubpacketData};
    use pgp::types::{Duration, Password};

    use super::*;

    /// A GnuPG-style certificate made at `made`: an Ed25519 primary key for
    /// certifying and signing, and three Curve25519 subkeys for encryption.
    fn certificate(made: Timestamp) -> (SignedSecretKey, SignedPublicKey) {
        let subkey = || {
            SubkeyParamsBuilder::default()
                .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
                .can_encrypt(EncryptionCaps::All)
                .created_at(made)
                .build()
                .unwrap()
        };
        let secret = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .created_at(made)
            .primary_user_id("Partner <partner@example.net>".into())
            .subkeys(vec![subkey(), subkey(), subkey()])
            .build()
            .unwrap()
            .generate(rand08::thread_rng())
            .unwrap();
        let public = secret.to_public_key();
        let mut keys = (secret, public);
        // The generated self-signatures are dated now: dated `made` instead, newer ones
        // can be added.
        let encrypt = flags(|f| {
            f.set_encrypt_comms(true);
            f.set_encrypt_storage(true);
        });
        for index in 0..3 {
            let binding = on_subkey(
                &keys,
                index,
                SignatureType::SubkeyBinding,
                made,
                encrypt.clone(),
                None,
            );
            keys.1.public_subkeys[index].signatures = vec![binding];
        }
        let certify_and_sign = flags(|f| {
            f.set_certify(true);
            f.set_sign(true);
        });
        let certification = user_certification(&keys, made, certify_and_sign, None);
        keys.1.details.users[0].signatures = vec![certification];
        keys
    }

    /// A self-signature of the user id, made at `at`.
    fn user_certification(
        keys: &(SignedSecretKey, SignedPublicKey),
        at: Timestamp,
        flags: Option<KeyFlags>,
        expires_after: Option<u32>,
    ) -> Signature {
        let (secret, public) = keys;
        let mut config = SignatureConfig::v4(
            SignatureType::CertPositive,
            public.algorithm(),
            HashAlgorithm::Sha256,
        );
        config.hashed_subpackets = subpackets(public, at, flags, expires_after);
        config
            .sign_certification(
                &secret.primary_key,
                &public.primary_key,
                &Password::empty(),
                Tag::UserId,
                &public.details.users[0].id,
            )
            .unwrap()
    }

    fn subpackets(
        public: &SignedPublicKey,
        at: Timestamp,
        flags: Option<KeyFlags>,
        expires_after: Option<u32>,
    ) -> Vec<Subpacket> {
        let mut hashed = vec![
            SubpacketData::SignatureCreationTime(at),
            SubpacketData::IssuerFingerprint(public.fingerprint()),
        ];
        hashed.extend(flags.map(SubpacketData::KeyFlags));
        hashed.extend(
            expires_after.map(|s| SubpacketData::KeyExpirationTime(Duration::from_secs(s))),
        );
        hashed
            .into_iter()
            .map(|d| Subpacket::regular(d).unwrap())
            .collect()
    }

    fn ago(seconds: u32) -> Timestamp {
        Timestamp::from_secs(now().as_secs() - seconds)
    }

    /// A signature of type `typ` by the primary key on subkey `index`, made at `at`.
    fn on_subkey(
        keys: &(SignedSecretKey, SignedPublicKey),
        index: usize,
        typ: SignatureType,
        at: Timestamp,
        flags: Option<KeyFlags>,
        expires_after: Option<u32>,
    ) -> Signature {
        let (secret, public) = keys;
        let mut config = SignatureConfig::v4(typ, public.algorithm(), HashAlgorithm::Sha256);
        config.hashed_subpackets = subpackets(public, at, flags, expires_after);
        config
            .sign_subkey_binding(
                &secret.primary_key,
                &public.primary_key,
                &Password::empty(),
                &public.public_subkeys[index].key,
            )
            .unwrap()
    }

    fn flags(set: impl Fn(&mut KeyFlags)) -> Option<KeyFlags> {
        let mut flags = KeyFlags::default();
        set(&mut flags);
        Some(flags)
    }

    fn targets(cert: &SignedPublicKey, at: Timestamp) -> Vec<usize> {
        encryption_keys(cert, at)
            .iter()
            .map(|target| match target {
                EncryptTo::Primary(_) => usize::MAX,
                EncryptTo::Subkey(key) => cert
                    .public_subkeys
                    .iter()
                    .position(|sub| sub.key.fingerprint() == key.fingerprint())
                    .unwrap(),
            })
            .collect()
    }

    #[test]
    fn encryption_skips_revoked_expired_and_no_longer_encrypting_subkeys() {
        let keys = certificate(ago(1000));
        let mut cert = keys.1.clone();
        assert_eq!(targets(&cert, now()), [0, 1, 2]);
        // The first one revoked; the second's newest binding has it expire after 10 s of
        // its 1000; the third's newest binding makes it an authentication key.
        let revocation = on_subkey(
            &keys,
            0,
            SignatureType::SubkeyRevocation,
            ago(100),
            None,
            None,
        );
        cert.public_subkeys[0].signatures.push(revocation);
        let encrypt = flags(|f| {
            f.set_encrypt_comms(true);
            f.set_encrypt_storage(true);
        });
        let expiring = on_subkey(
            &keys,
            1,
            SignatureType::SubkeyBinding,
            ago(100),
            encrypt.clone(),
            Some(10),
        );
        cert.public_subkeys[1].signatures.push(expiring);
        let authenticate = flags(|f| f.set_authentication(true));
        let changed = on_subkey(
            &keys,
            2,
            SignatureType::SubkeyBinding,
            ago(100),
            authenticate,
            None,
        );
        cert.public_subkeys[2].signatures.push(changed);
        assert_eq!(targets(&cert, now()), Vec::<usize>::new());
        let why = unusable_for_encryption(&cert).unwrap();
        assert!(why.contains("no key of it may encrypt"), "{why}");
        // Before the newer bindings were made, the older ones were in force.
        assert_eq!(targets(&cert, ago(200)), [1, 2]);
        // A binding made later that allows encryption again counts from then on.
        let again = on_subkey(
            &keys,
            2,
            SignatureType::SubkeyBinding,
            ago(50),
            encrypt,
            None,
        );
        cert.public_subkeys[2].signatures.push(again);
        assert_eq!(targets(&cert, now()), [2]);
        assert!(unusable_for_encryption(&cert).is_none());
    }

    #[test]
    fn only_subkeys_bound_for_signing_sign_and_a_revocation_ends_it() {
        let keys = certificate(ago(1000));
        let mut cert = keys.1.clone();
        let sub = |cert: &SignedPublicKey| cert.public_subkeys[0].clone();
        // Made for encryption: its signatures do not count, though its algorithm could.
        assert!(!subkey_may_sign(&cert, &sub(&cert), now()));
        assert!(primary_may_sign(&cert, now()));
        let sign = flags(|f| f.set_sign(true));
        let binding = on_subkey(&keys, 0, SignatureType::SubkeyBinding, ago(100), sign, None);
        cert.public_subkeys[0].signatures.push(binding);
        assert!(subkey_may_sign(&cert, &sub(&cert), now()));
        assert!(
            !subkey_may_sign(&cert, &sub(&cert), ago(200)),
            "signed before it was bound for signing"
        );
        let revocation = on_subkey(
            &keys,
            0,
            SignatureType::SubkeyRevocation,
            ago(10),
            None,
            None,
        );
        cert.public_subkeys[0].signatures.push(revocation);
        assert!(!subkey_may_sign(&cert, &sub(&cert), now()));
        assert!(
            !subkey_may_sign(&cert, &sub(&cert), ago(50)),
            "revoked is revoked"
        );
    }

    #[test]
    fn an_expired_certificate_neither_encrypts_nor_signs() {
        let keys = certificate(ago(1000));
        let mut cert = keys.1.clone();
        // A newer self-signature of the user id: the key expires 500 s after it was made.
        let sign = flags(|f| f.set_sign(true));
        let expiring = user_certification(&keys, ago(900), sign, Some(500));
        cert.details.users[0].signatures.push(expiring);
        assert!(targets(&cert, now()).is_empty());
        assert!(unusable_for_encryption(&cert).unwrap().contains("expired"));
        assert!(!primary_may_sign(&cert, now()));
        assert!(
            primary_may_sign(&cert, ago(800)),
            "signed while it was valid"
        );
        assert_eq!(targets(&cert, ago(800)), [0, 1, 2]);
    }
}
