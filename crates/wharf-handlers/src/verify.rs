//! `verify-signature`: one open file is verified and moved, never a name.
//!
//! The file and its signature are opened from one folder descriptor, following no link.
//! The file is hashed through its descriptor (the signers' digest and SHA-256 in one pass),
//! its SHA-256 must be the one its event recorded, and only that inode, unchanged, may
//! arrive at `move_to` (see [`crate::files::move_file`]): a file renamed over it, or written
//! into, after the check is left where it is and the refusal says so.

use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use aws_lc_rs::digest;
use time::OffsetDateTime;
use wharf_core::{Event, EventKind};
use wharf_types::{hex, rfc3339};

use crate::ActionError;
use crate::actions::{Job, Left, Quarantine, Step, blocking};
use crate::files;
use crate::signature::MAX_SIGNATURE_FILE;
use crate::spec::SignatureAction;
use crate::subject::{Held, open_in};

/// What one attempt came to.
enum Verdict {
    /// The signature is not there yet.
    Wait,
    /// Verified with `key`; the file is at `left` (moved there, or where it was).
    Valid {
        key: String,
        sha256: String,
        left: Left,
        moved: bool,
    },
    /// Not verified for `reason`; the file went to quarantine.
    Invalid { reason: String, left: Left },
    /// An earlier attempt moved the file on.
    WasValid(Left),
    /// An earlier attempt quarantined it.
    WasQuarantined(Left),
}

fn companion_name(name: &str, suffix: &str) -> String {
    format!("{name}{suffix}")
}

/// Reads a signature through its descriptor, if it is small enough to be one.
fn read_signature(sig: &Held) -> Result<Option<Vec<u8>>, ActionError> {
    let mut buffer = vec![0u8; usize::try_from(MAX_SIGNATURE_FILE).unwrap_or(65536) + 1];
    let mut len = 0;
    while len < buffer.len() {
        let n = sig
            .file
            .read_at(&mut buffer[len..], len as u64)
            .map_err(|e| ActionError::retry(format!("cannot read {}: {e}", sig.name)))?;
        if n == 0 {
            break;
        }
        len += n;
    }
    if len as u64 > MAX_SIGNATURE_FILE {
        return Ok(None);
    }
    buffer.truncate(len);
    Ok(Some(buffer))
}

pub(crate) async fn verify_signature(
    job: &Job<'_>,
    check: &SignatureAction,
) -> Result<Step, ActionError> {
    let subject = job.subject()?;
    let vars = job.vars(Some(&subject));
    let move_to = match &check.move_to {
        Some(t) => Some((
            t.expand_path(&vars)
                .map_err(|e| ActionError::permanent(format!("move_to: {e}")))?,
            job.bases(&subject, t),
        )),
        None => None,
    };
    let time = rfc3339::parse(&job.record.time).unwrap_or_else(|_| OffsetDateTime::now_utc());
    let deadline = time + check.wait;
    let now = OffsetDateTime::now_utc();
    let may_wait = now < deadline;
    let q = Quarantine::new(job, &check.quarantine, "");
    let (record, verifier, suffix, wait) = (
        job.record.clone(),
        check.verifier.clone(),
        check.suffix.clone(),
        check.wait,
    );
    let (q, verdict) = blocking(move || {
        let quarantine = |q: &Quarantine, reason: String, held: &Held, with: &[Held]| {
            let q = Quarantine {
                reason: reason.clone(),
                ..q.clone()
            };
            q.held(&subject, held, with)
                .map(|left| Verdict::Invalid { reason, left })
        };
        let Some(held) = subject.open()? else {
            // An earlier attempt may have finished before the job was marked: say again
            // what it did.
            if let Some((to, bases)) = &move_to {
                let dest = files::destination(to, bases)?;
                if dest.holds(&record) {
                    return Ok((q, Verdict::WasValid(Left::at(&dest, None))));
                }
            }
            if let Some(left) = q.done_before(&subject)? {
                return Ok((q, Verdict::WasQuarantined(left)));
            }
            return Err(subject.gone());
        };
        held.check(&record, &subject.path, false)?;
        let sig_name = companion_name(&subject.name, &suffix);
        let signature = match open_in(&held.dir, &sig_name, &sig_name) {
            Ok(Some(sig)) => match read_signature(&sig)? {
                Some(bytes) => Ok((sig, bytes)),
                None => Err((
                    format!(
                        "{sig_name} is not a regular file of at most {MAX_SIGNATURE_FILE} bytes"
                    ),
                    vec![sig],
                )),
            },
            Ok(None) if may_wait => return Ok((q, Verdict::Wait)),
            Ok(None) => Err((
                format!("no signature {sig_name} within {} s", wait.as_secs()),
                Vec::new(),
            )),
            // A link or a folder in the signature's place is no signature; it stays.
            Err(e) if e.permanent => Err((
                format!("{sig_name} is not a regular file of at most {MAX_SIGNATURE_FILE} bytes"),
                Vec::new(),
            )),
            Err(e) => return Err(e),
        };
        let (sig, bytes) = match signature {
            Ok(found) => found,
            Err((reason, with)) => {
                let verdict = quarantine(&q, reason, &held, &with)?;
                return Ok((q, verdict));
            }
        };
        let algorithm = verifier.algorithm();
        let others: &[&'static digest::Algorithm] = if algorithm == &digest::SHA256 {
            &[]
        } else {
            &[algorithm]
        };
        let (sha, other) = crate::subject::digests(&held.file, others).map_err(|e| {
            if e.kind() == std::io::ErrorKind::Other {
                ActionError::refused(format!("{}: {e}; left alone", subject.path))
            } else {
                ActionError::retry(format!("cannot read {}: {e}", subject.path))
            }
        })?;
        let sha256 = hex(sha.as_ref());
        held.know_sha256(sha256.clone());
        // The content checked must be the upload the event names.
        held.check(&record, &subject.path, true)?;
        let signed = other.first().unwrap_or(&sha);
        let Some(key) = verifier.verify_digest(signed, &bytes) else {
            let reason = "the signature does not verify with any configured key".to_owned();
            let verdict = quarantine(&q, reason, &held, &[sig])?;
            return Ok((q, verdict));
        };
        let Some((to, bases)) = &move_to else {
            let left = Left {
                file: subject.file.clone(),
                root: subject.root.clone(),
                id: Some(held.id),
            };
            return Ok((
                q,
                Verdict::Valid {
                    key,
                    sha256,
                    left,
                    moved: false,
                },
            ));
        };
        let dest = files::destination(to, bases)?;
        files::move_file(&held, &dest, false, &subject.path)?;
        let mut sig_file = dest.file.clone().into_os_string();
        sig_file.push(&suffix);
        let sig_dest =
            dest.sibling(companion_name(&dest.name, &suffix), PathBuf::from(sig_file))?;
        files::move_file(&sig, &sig_dest, true, &sig_name)?;
        let left = Left::at(&dest, dest.id());
        Ok((
            q,
            Verdict::Valid {
                key,
                sha256,
                left,
                moved: true,
            },
        ))
    })
    .await?;
    Ok(match verdict {
        Verdict::Wait => {
            let next = (now + std::time::Duration::from_secs(1)).min(deadline);
            Step::WaitUntil(i64::try_from(next.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX))
        }
        Verdict::Valid {
            key,
            sha256,
            left,
            moved,
        } => {
            let mut valid = job
                .event_at(EventKind::SignatureValid, &left)
                .attr("key", key);
            valid.sha256 = Some(sha256);
            if moved {
                valid = valid.attr("destination", left.file.to_string_lossy());
            }
            Step::Done(vec![valid])
        }
        Verdict::WasValid(left) => Step::Done(vec![
            job.event_at(EventKind::SignatureValid, &left)
                .attr("destination", left.file.to_string_lossy()),
        ]),
        Verdict::WasQuarantined(left) => Step::Done(vec![
            job.event_at(EventKind::FileQuarantined, &left)
                .attr("quarantine", left.file.to_string_lossy()),
        ]),
        Verdict::Invalid { reason, left } => {
            let q = Quarantine {
                reason: reason.clone(),
                ..q
            };
            let moved = q.event(job, &left);
            let invalid: Event = job
                .event(EventKind::SignatureInvalid)
                .failed(reason)
                .attr("quarantine", left.file.to_string_lossy());
            Step::Done(vec![invalid, moved])
        }
    })
}
