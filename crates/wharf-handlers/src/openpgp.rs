//! `openpgp`: encrypt to partners' public keys, decrypt with this server's key, sign, or
//! verify a signed message, with rPGP (the `pgp` crate), streamed through the handler's
//! descriptor in bounded memory.
//!
//! The output is a new file (beside the source, or at a template's path) made through a
//! hidden temporary name and linked into place only once whole, so nothing partial appears
//! under a final name; it is marked as made by this job, so a retried job recognises its
//! own output. A message that cannot be decrypted or verified (damaged, not for this key,
//! signed by nobody trusted) sends the source to quarantine, with the reason in the events.
//! Decrypted output is bounded (`max_ratio` times the message, plus 1 MiB), so a
//! compressed message cannot fill the disk.
//!
//! Partners' keys are used as their certificates say ([`keys`]): a message is encrypted to
//! each subkey whose newest binding lets it encrypt now (neither revoked nor expired), or,
//! when there is none, to the primary key if its own self-signature lets it; a signature
//! counts when made by a signer's primary key or by a subkey bound for signing, neither
//! revoked nor expired when the signature was made.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;

use pgp::composed::{Deserializable, Message, MessageBuilder};
pub use pgp::composed::{SignedPublicKey, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::{KeyDetails, Password};
use wharf_core::EventKind;

use crate::ActionError;
use crate::actions::{Job, Left, Quarantine, Step, blocking};
use crate::files::{self, Dest};
use crate::template::Template;

mod keys;
pub use keys::unusable_for_encryption;

/// What an `openpgp` handler does.
pub enum Operation {
    /// Encrypt to every recipient (each can decrypt), and sign with `sign_with` if given.
    Encrypt {
        recipients: Vec<SignedPublicKey>,
        sign_with: Option<(SignedSecretKey, String)>,
    },
    /// Decrypt with the key; with `signers`, the message must also carry a valid signature
    /// by one of them.
    Decrypt {
        key: SignedSecretKey,
        passphrase: String,
        signers: Vec<SignedPublicKey>,
    },
    /// Sign (an OpenPGP signed message holding the file).
    Sign {
        key: SignedSecretKey,
        passphrase: String,
    },
    /// Verify a signed message by one of `signers`, and take the file out of it.
    Verify { signers: Vec<SignedPublicKey> },
}

impl Operation {
    fn name(&self) -> &'static str {
        match self {
            Operation::Encrypt { .. } => "encrypt",
            Operation::Decrypt { .. } => "decrypt",
            Operation::Sign { .. } => "sign",
            Operation::Verify { .. } => "verify",
        }
    }
}

/// `openpgp`.
pub struct OpenPgpAction {
    /// The operation and its keys.
    pub operation: Arc<Operation>,
    /// Where the output goes (default: beside the source, named after it; a template
    /// ending in `/` is a folder where it keeps that name).
    pub output: Option<Template>,
    /// `output` names a folder (it ended in `/`).
    pub output_is_folder: bool,
    /// ASCII armor for what is written (encrypt, sign).
    pub armor: bool,
    /// Remove the source once the output is in place.
    pub remove_source: bool,
    /// How many times a message may expand when opened.
    pub max_ratio: u64,
    /// The quarantine folder.
    pub quarantine: PathBuf,
}

/// The name of the output beside `name`.
fn default_name(operation: &Operation, name: &str, armor: bool) -> Result<String, ActionError> {
    match operation {
        Operation::Encrypt { .. } | Operation::Sign { .. } => {
            Ok(format!("{name}{}", if armor { ".asc" } else { ".pgp" }))
        }
        Operation::Decrypt { .. } | Operation::Verify { .. } => [".pgp", ".gpg", ".asc"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|n| !n.is_empty()))
            .map(str::to_owned)
            .ok_or_else(|| {
                ActionError::permanent(format!(
                    "{name} does not end in .pgp, .gpg or .asc: give the handler an `output`"
                ))
            }),
    }
}

/// Why an OpenPGP operation failed on the file's content (not worth a retry).
struct Refused(String);

/// A writer that stops past a bound.
struct Bounded<'f> {
    inner: &'f mut File,
    left: u64,
}

impl Write for Bounded<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(std::io::Error::other(
                "the message opens to more than max_ratio times its size",
            ));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn fingerprint(key: &SignedPublicKey) -> String {
    format!("{:X}", key.fingerprint())
}

/// Which of `signers` verifies `message` (read whole first): by its primary key, or by a
/// subkey its certificate binds for signing; neither revoked, nor expired when the
/// signature was made (see [`keys`]).
fn signer(message: &Message<'_>, signers: &[SignedPublicKey]) -> Option<String> {
    // A signature without its creation time is not a valid one.
    let made = |sig: &pgp::packet::Signature| sig.created();
    for cert in signers {
        let by_primary = message
            .verify(&cert.primary_key)
            .ok()
            .and_then(made)
            .is_some_and(|at| keys::primary_may_sign(cert, at));
        let by_subkey = || {
            cert.public_subkeys.iter().any(|sub| {
                message
                    .verify(&sub.key)
                    .ok()
                    .and_then(made)
                    .is_some_and(|at| keys::subkey_may_sign(cert, sub, at))
            })
        };
        if by_primary || by_subkey() {
            return Some(fingerprint(cert));
        }
    }
    None
}

/// Adds every key of `recipient` that may encrypt now to `builder`'s recipients.
fn encrypt_to<R: std::io::Read>(
    builder: &mut MessageBuilder<'_, R, pgp::composed::EncryptionSeipdV1>,
    rng: &mut rand08::rngs::ThreadRng,
    recipient: &SignedPublicKey,
) -> Result<(), ActionError> {
    let targets = keys::encryption_keys(recipient, keys::now());
    if targets.is_empty() {
        // It had one when the configuration was loaded: it expired or was revoked since.
        return Err(ActionError::permanent(format!(
            "cannot encrypt to {}: {}",
            fingerprint(recipient),
            keys::unusable_for_encryption(recipient).unwrap_or_default()
        )));
    }
    for target in targets {
        let done = match target {
            keys::EncryptTo::Subkey(key) => builder.encrypt_to_key(&mut *rng, key).map(|_| ()),
            keys::EncryptTo::Primary(key) => builder.encrypt_to_key(&mut *rng, key).map(|_| ()),
        };
        done.map_err(|e| {
            ActionError::permanent(format!(
                "cannot encrypt to {}: {}",
                fingerprint(recipient),
                brief(&e)
            ))
        })?;
    }
    Ok(())
}

/// Runs `operation` on `source`, writing to `out`; answers the signer that verified, if any.
fn run(
    operation: &Operation,
    source: File,
    name: &str,
    armor: bool,
    out: &mut File,
    bound: u64,
) -> Result<Result<Option<String>, Refused>, ActionError> {
    let mut rng = rand08::thread_rng();
    let refused = |what: &str, e: &dyn std::fmt::Display| Refused(format!("{what}: {}", brief(e)));
    match operation {
        Operation::Encrypt {
            recipients,
            sign_with,
        } => {
            let mut builder = MessageBuilder::from_reader(name.to_owned(), BufReader::new(source))
                .seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
            for recipient in recipients {
                encrypt_to(&mut builder, &mut rng, recipient)?;
            }
            if let Some((key, passphrase)) = sign_with {
                builder.sign(
                    &key.primary_key,
                    Password::from(passphrase.as_str()),
                    HashAlgorithm::Sha256,
                );
            }
            write_out(builder, armor, out, "encrypt")
        }
        Operation::Sign { key, passphrase } => {
            let mut builder = MessageBuilder::from_reader(name.to_owned(), BufReader::new(source));
            builder.sign(
                &key.primary_key,
                Password::from(passphrase.as_str()),
                HashAlgorithm::Sha256,
            );
            write_out(builder, armor, out, "sign")
        }
        Operation::Decrypt {
            key,
            passphrase,
            signers,
        } => {
            let message = match Message::from_reader(BufReader::new(source)) {
                Ok((m, _)) => m,
                Err(e) => return Ok(Err(refused("not an OpenPGP message", &e))),
            };
            let mut message = match message.decrypt(&Password::from(passphrase.as_str()), key) {
                Ok(m) => m,
                Err(e) => return Ok(Err(refused("cannot decrypt it with this key", &e))),
            };
            if message.is_compressed() {
                message = match message.decompress() {
                    Ok(m) => m,
                    Err(e) => return Ok(Err(refused("cannot decompress it", &e))),
                };
            }
            let mut bounded = Bounded {
                inner: out,
                left: bound,
            };
            if let Err(e) = std::io::copy(&mut message, &mut bounded) {
                return Ok(Err(refused("the message is damaged or too large", &e)));
            }
            if signers.is_empty() {
                return Ok(Ok(None));
            }
            match signer(&message, signers) {
                Some(who) => Ok(Ok(Some(who))),
                None => Ok(Err(Refused(
                    "no trusted signer signed it (or the signature does not verify)".into(),
                ))),
            }
        }
        Operation::Verify { signers } => {
            let mut message = match Message::from_reader(BufReader::new(source)) {
                Ok((m, _)) => m,
                Err(e) => return Ok(Err(refused("not an OpenPGP message", &e))),
            };
            if message.is_compressed() {
                message = match message.decompress() {
                    Ok(m) => m,
                    Err(e) => return Ok(Err(refused("cannot decompress it", &e))),
                };
            }
            if !message.is_signed() {
                return Ok(Err(Refused("the message is not signed".into())));
            }
            let mut bounded = Bounded {
                inner: out,
                left: bound,
            };
            if let Err(e) = std::io::copy(&mut message, &mut bounded) {
                return Ok(Err(refused("the message is damaged or too large", &e)));
            }
            match signer(&message, signers) {
                Some(who) => Ok(Ok(Some(who))),
                None => Ok(Err(Refused(
                    "no trusted signer signed it (or the signature does not verify)".into(),
                ))),
            }
        }
    }
}

/// Writes a message built for encryption or signing, armored or not.
fn write_out<R: std::io::Read, E: pgp::composed::Encryption>(
    builder: MessageBuilder<'_, R, E>,
    armor: bool,
    out: &mut File,
    what: &str,
) -> Result<Result<Option<String>, Refused>, ActionError> {
    let mut rng = rand08::thread_rng();
    let written = if armor {
        builder.to_armored_writer(&mut rng, Default::default(), &mut *out)
    } else {
        builder.to_writer(&mut rng, &mut *out)
    };
    written.map_err(|e| ActionError::retry(format!("cannot {what}: {}", brief(&e))))?;
    Ok(Ok(None))
}

enum Verdict {
    Made {
        left: Left,
        signer: Option<String>,
        again: bool,
    },
    Refused {
        reason: String,
        left: Left,
    },
    WasQuarantined(Left),
}

/// Runs one attempt of an `openpgp` handler.
pub(crate) async fn openpgp(job: &Job<'_>, action: &OpenPgpAction) -> Result<Step, ActionError> {
    let subject = job.subject()?;
    let vars = job.vars(Some(&subject));
    let output = match &action.output {
        Some(t) => {
            let mut to = t
                .expand_path(&vars)
                .map_err(|e| ActionError::permanent(format!("output: {e}")))?;
            // A folder (the template ends in `/`): the output keeps its default name there.
            if action.output_is_folder {
                to.push(default_name(
                    &action.operation,
                    &subject.name,
                    action.armor,
                )?);
            }
            Some((to, job.bases(&subject, t)))
        }
        None => None,
    };
    let record = job.record.clone();
    let q = Quarantine::new(job, &action.quarantine, "");
    let operation = action.operation.clone();
    let (armor, remove, ratio) = (action.armor, action.remove_source, action.max_ratio);
    let marker = job.uuid.clone();
    let (q, verdict) = blocking(move || {
        let dest_for = |held: Option<&crate::subject::Held>| -> Result<Dest, ActionError> {
            match &output {
                Some((to, bases)) => files::destination(to, bases),
                None => {
                    let name = default_name(&operation, &subject.name, armor)?;
                    let file = subject.file.with_file_name(&name);
                    match held {
                        Some(held) => Dest::in_folder_of(held, name, file, subject.root.clone()),
                        None => {
                            let dir = crate::subject::open_folder(
                                &subject.root,
                                &subject.rel.parent(),
                                &subject.path,
                            )?
                            .ok_or_else(|| subject.gone())?;
                            Ok(Dest {
                                dir,
                                name,
                                file,
                                root: subject.root.clone(),
                            })
                        }
                    }
                }
            }
        };
        let Some(held) = subject.open()? else {
            // An earlier attempt may have finished (and removed the source) before the job
            // was marked: say again what it did.
            if let Ok(dest) = dest_for(None)
                && files::made_by(&dest, &marker)
            {
                let left = Left::at(&dest, dest.id());
                return Ok((
                    q,
                    Verdict::Made {
                        left,
                        signer: None,
                        again: true,
                    },
                ));
            }
            if let Some(left) = q.done_before(&subject)? {
                return Ok((q, Verdict::WasQuarantined(left)));
            }
            return Err(subject.gone());
        };
        held.check(&record, &subject.path, true)?;
        let dest = dest_for(Some(&held))?;
        if files::made_by(&dest, &marker) {
            if remove {
                files::remove_file(&held, &subject.path)?;
            }
            let left = Left::at(&dest, dest.id());
            return Ok((
                q,
                Verdict::Made {
                    left,
                    signer: None,
                    again: true,
                },
            ));
        }
        let size = rustix::fs::fstat(&held.file).map_or(0, |st| st.st_size.max(0) as u64);
        let bound = size.saturating_mul(ratio).saturating_add(1 << 20);
        let source = held
            .file
            .try_clone()
            .map_err(|e| ActionError::retry(format!("cannot read {}: {e}", subject.path)))?;
        let outcome = files::write_new(&dest, &marker, |out| {
            let mut reader = source;
            std::io::Seek::rewind(&mut reader)
                .map_err(|e| ActionError::retry(format!("cannot read the file: {e}")))?;
            // Refused content leaves nothing linked into place: the temporary file goes.
            run(&operation, reader, &subject.name, armor, out, bound)?.map_err(|refused| {
                ActionError {
                    message: refused.0,
                    permanent: true,
                    refused: false,
                }
            })
        });
        let signer = match outcome {
            Ok(signer) => signer,
            Err(e) if e.permanent && !dest_exists(&dest) => {
                // The content could not be opened, verified or made: fail closed.
                held.unchanged(&subject.path)?;
                let reason = e.message;
                let q = Quarantine {
                    reason: format!("OpenPGP {}: {reason}", operation.name()),
                    ..q
                };
                let left = q.held(&subject, &held, &[])?;
                return Ok((q, Verdict::Refused { reason, left }));
            }
            Err(e) => return Err(e),
        };
        held.unchanged(&subject.path)?;
        if remove {
            files::remove_file(&held, &subject.path)?;
        }
        let left = Left::at(&dest, dest.id());
        Ok((
            q,
            Verdict::Made {
                left,
                signer,
                again: false,
            },
        ))
    })
    .await?;
    let kind = match action.operation.as_ref() {
        Operation::Encrypt { .. } => EventKind::OpenPgpEncrypted,
        Operation::Decrypt { .. } => EventKind::OpenPgpDecrypted,
        Operation::Sign { .. } => EventKind::OpenPgpSigned,
        Operation::Verify { .. } => EventKind::OpenPgpVerified,
    };
    Ok(Step::Done(match verdict {
        Verdict::Made {
            left,
            signer,
            again,
        } => {
            let mut event = job
                .event_at(kind, &left)
                .attr("output", left.file.to_string_lossy())
                .attr("source_removed", remove.to_string());
            if let Some(signer) = signer {
                event = event.attr("signer", signer);
            }
            if again {
                event = event.message("made by an earlier attempt");
            }
            vec![event]
        }
        Verdict::Refused { reason, left } => vec![
            job.event(EventKind::OpenPgpFailed)
                .attr("operation", action.operation.name())
                .failed(reason)
                .attr("quarantine", left.file.to_string_lossy()),
            q.event(job, &left),
        ],
        Verdict::WasQuarantined(left) => vec![q.event(job, &left)],
    }))
}

fn dest_exists(dest: &Dest) -> bool {
    matches!(dest.open(), Ok(Some(_)))
}

/// An error of the OpenPGP library, short: some of its errors print the bytes they failed
/// on, which are the file's content (or a key) and belong in no event or log.
fn brief(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let cut = ["{ input", "input:", "["]
        .iter()
        .filter_map(|m| text.find(m))
        .min()
        .unwrap_or(text.len());
    let mut short: String = text[..cut]
        .chars()
        .filter(|c| !c.is_control())
        .take(160)
        .collect();
    short = short.trim_end_matches([' ', '(', ':']).to_owned();
    if short.is_empty() {
        "unreadable".to_owned()
    } else {
        short
    }
}

/// Reads OpenPGP keys (armored or binary), checking their self-signatures.
pub fn read_public_key(bytes: &[u8]) -> Result<SignedPublicKey, String> {
    let (key, _) = SignedPublicKey::from_reader_single(bytes).map_err(|e| brief(&e))?;
    key.verify_bindings().map_err(|e| brief(&e))?;
    Ok(key)
}

/// Reads a secret key (armored or binary), checking its self-signatures.
pub fn read_secret_key(bytes: &[u8]) -> Result<SignedSecretKey, String> {
    let (key, _) = SignedSecretKey::from_reader_single(bytes).map_err(|e| brief(&e))?;
    key.verify_bindings().map_err(|e| brief(&e))?;
    Ok(key)
}
