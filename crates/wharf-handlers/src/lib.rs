//! Event handlers: what Wharf does after an event, on its own, durably.
//!
//! The [`Engine`] follows its node's own records in the store's audit trail. Each new record
//! is matched against the configured [`Handler`]s, and a match becomes a job in the store's
//! queue in the same transaction that moves the engine's cursor, so a crash or restart
//! between an upload and its handler loses nothing. Any node of a cluster runs any due job,
//! holding it for a lease it renews while the job runs; a dead node's jobs are taken over
//! when their lease runs out. Jobs run with a timeout per attempt, are retried with a
//! doubling wait, and end `done` or `failed`; every outcome is recorded as a 4xxxx event
//! before the job is marked, by the node still holding it, so delivery is at least once, and
//! every file action recognises its own finished work (see [`files`]), so its effect happens
//! once (what holds for programs and webhooks: see the engine's module).
//!
//! Every file action reaches its file through descriptors: the folder an event names is
//! opened beneath a root (the account's home, the quarantine, a destination's fixed folder)
//! with the core's [`wharf_core::vfs::jail`], following no link, and the file is checked to be
//! the one its event names (same inode, same SHA-256) before anything is done to it
//! (see [`subject`]).
//!
//! This crate must never serve a client, never follow a link, and never act on a file
//! through a path name resolved by `std::fs`: it does not resolve accounts or read
//! permission rules.

#![forbid(unsafe_code)]

mod actions;
pub mod antivirus;
pub mod content;
pub mod email;
mod engine;
mod exec;
pub mod files;
pub mod naming;
pub mod openpgp;
pub mod signature;
pub mod sinks;
pub mod spec;
pub mod subject;
pub mod template;
mod verify;
mod webhook;

pub use antivirus::{AntivirusAction, Clamd, WhenInfected, WhenUnreachable};
pub use content::{ContentAction, WhenUnscannable};
pub use email::{EmailAction, SmtpSecurity};
pub use engine::{Engine, RecordError, Recorder, Settings};
pub use naming::UniqueUploadNames;
pub use openpgp::{OpenPgpAction, Operation as PgpOperation};
pub use signature::{PssDigest, SaltLength, Verifier};
pub use spec::{
    Action, DispatchAction, DispatchRule, ExecAction, Filter, Handler, QuarantineAction,
    SignatureAction, Unmatched, WebhookAction,
};
pub use template::{Template, TemplateError};

/// Why an attempt failed, and whether trying again can help.
#[derive(Debug, Clone)]
pub struct ActionError {
    /// What went wrong.
    pub message: String,
    /// Retrying cannot mend it (the file is gone, a destination is taken).
    pub permanent: bool,
    /// The action left the file alone because acting would not be safe: a link on the
    /// way, or a file that is not the one its event names. Recorded as `handler.refused`.
    pub refused: bool,
}

impl ActionError {
    /// A failure worth another attempt.
    pub fn retry(message: impl Into<String>) -> ActionError {
        ActionError {
            message: message.into(),
            permanent: false,
            refused: false,
        }
    }

    /// A failure that another attempt would repeat.
    pub fn permanent(message: impl Into<String>) -> ActionError {
        ActionError {
            message: message.into(),
            permanent: true,
            refused: false,
        }
    }

    /// A file left alone on purpose (see [`ActionError::refused`]); never retried.
    pub fn refused(message: impl Into<String>) -> ActionError {
        ActionError {
            message: message.into(),
            permanent: true,
            refused: true,
        }
    }
}
