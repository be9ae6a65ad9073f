//! `[handler.openpgp]` in `wharf.toml`: the operation, its keys (read and their
//! self-signatures checked at load; a secret key's passphrase only by `serve`), where the
//! output goes and what becomes of the source. It never encrypts anything itself:
//! wharf-handlers does.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use wharf_handlers::openpgp::{read_public_key, read_secret_key, unusable_for_encryption};
use wharf_handlers::{OpenPgpAction, PgpOperation, Template};

use crate::config::Loaded;

/// A problem: where, which key, what.
type Problem = (Range<usize>, String, String);

/// `[handler.openpgp]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenPgpSection {
    operation: Spanned<String>,
    #[serde(default)]
    recipients: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    key: Option<Spanned<String>>,
    #[serde(default)]
    passphrase: Option<Spanned<String>>,
    #[serde(default)]
    signers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    sign: bool,
    #[serde(default)]
    output: Option<Spanned<String>>,
    #[serde(default)]
    armor: bool,
    #[serde(default)]
    source: Option<Spanned<String>>,
    #[serde(default)]
    max_ratio: Option<u64>,
    #[serde(default)]
    quarantine: Option<String>,
}

/// Key files larger than this are not keys.
const MAX_KEY_FILE: u64 = 1 << 20;

impl OpenPgpSection {
    /// The quarantine folder given, if any.
    pub fn quarantine(&self) -> &Option<String> {
        &self.quarantine
    }

    /// The action, or what is wrong with it.
    pub fn build(
        &self,
        loaded: &Loaded,
        key: &dyn Fn(&str) -> String,
        resolve_secrets: bool,
        quarantine: PathBuf,
    ) -> Result<OpenPgpAction, Problem> {
        let key = |k: &str| key(&format!("openpgp.{k}"));
        let read = |file: &str, span: Range<usize>, k: &str| -> Result<Vec<u8>, Problem> {
            let path = loaded.resolve(file);
            let size = std::fs::metadata(&path)
                .map_err(|e| {
                    (
                        span.clone(),
                        key(k),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .len();
            if size > MAX_KEY_FILE {
                return Err((
                    span,
                    key(k),
                    format!("{} is not a key file", path.display()),
                ));
            }
            std::fs::read(&path)
                .map_err(|e| (span, key(k), format!("cannot read {}: {e}", path.display())))
        };
        // Recipients' keys must hold a key to encrypt to now: a partner's certificate
        // whose encryption subkeys all expired or were revoked is refused here, by name,
        // not at the first file.
        let publics = |list: &Option<Spanned<Vec<String>>>, k: &str, encrypt: bool| {
            let Some(list) = list else {
                return Ok(Vec::new());
            };
            list.get_ref()
                .iter()
                .map(|file| {
                    let bytes = read(file, list.span(), k)?;
                    let public = read_public_key(&bytes).map_err(|e| {
                        (
                            list.span(),
                            key(k),
                            format!("{file}: not an OpenPGP public key: {e}"),
                        )
                    })?;
                    if encrypt && let Some(why) = unusable_for_encryption(&public) {
                        return Err((
                            list.span(),
                            key(k),
                            format!("{file}: cannot be encrypted to: {why}"),
                        ));
                    }
                    Ok(public)
                })
                .collect::<Result<Vec<_>, Problem>>()
        };
        let secret = |needed: bool| -> Result<
            Option<(wharf_handlers::openpgp::SignedSecretKey, String)>,
            Problem,
        > {
            let Some(file) = &self.key else {
                return if needed {
                    Err((
                        self.operation.span(),
                        key("key"),
                        "give the secret key file (armored or binary, as `gpg --export-secret-keys` writes it)"
                            .into(),
                    ))
                } else {
                    Ok(None)
                };
            };
            let bytes = read(file.get_ref(), file.span(), "key")?;
            let secret = read_secret_key(&bytes).map_err(|e| {
                (
                    file.span(),
                    key("key"),
                    format!("not an OpenPGP secret key: {e}"),
                )
            })?;
            let passphrase = match &self.passphrase {
                None => String::new(),
                Some(spec) => {
                    let text = spec.get_ref();
                    if !(text.starts_with("env:") || text.starts_with("file:")) {
                        return Err((
                            spec.span(),
                            key("passphrase"),
                            "give the passphrase as env:NAME or file:PATH, never literally".into(),
                        ));
                    }
                    if resolve_secrets {
                        crate::config::auth::secret(loaded, text)
                            .map_err(|e| (spec.span(), key("passphrase"), format!("{e:#}")))?
                    } else {
                        String::new()
                    }
                }
            };
            Ok(Some((secret, passphrase)))
        };
        let operation = match self.operation.get_ref().as_str() {
            "encrypt" => {
                let recipients = publics(&self.recipients, "recipients", true)?;
                if recipients.is_empty() {
                    return Err((
                        self.operation.span(),
                        key("recipients"),
                        "list the public key files to encrypt to".into(),
                    ));
                }
                PgpOperation::Encrypt {
                    recipients,
                    sign_with: if self.sign { secret(true)? } else { None },
                }
            }
            "decrypt" => {
                let (secret, passphrase) = secret(true)?.ok_or_else(|| {
                    (
                        self.operation.span(),
                        key("key"),
                        "give the secret key file".to_owned(),
                    )
                })?;
                PgpOperation::Decrypt {
                    key: secret,
                    passphrase,
                    signers: publics(&self.signers, "signers", false)?,
                }
            }
            "sign" => {
                let (secret, passphrase) = secret(true)?.ok_or_else(|| {
                    (
                        self.operation.span(),
                        key("key"),
                        "give the secret key file".to_owned(),
                    )
                })?;
                PgpOperation::Sign {
                    key: secret,
                    passphrase,
                }
            }
            "verify" => {
                let signers = publics(&self.signers, "signers", false)?;
                if signers.is_empty() {
                    return Err((
                        self.operation.span(),
                        key("signers"),
                        "list the public key files whose signatures are trusted".into(),
                    ));
                }
                PgpOperation::Verify { signers }
            }
            _ => {
                return Err((
                    self.operation.span(),
                    key("operation"),
                    "use \"encrypt\", \"decrypt\", \"sign\" or \"verify\"".into(),
                ));
            }
        };
        let remove_source = match self
            .source
            .as_ref()
            .map(|s| (s.span(), s.get_ref().as_str()))
        {
            None | Some((_, "keep")) => false,
            Some((_, "remove")) => true,
            Some((span, _)) => {
                return Err((
                    span,
                    key("source"),
                    "use \"keep\" (the default) or \"remove\"".into(),
                ));
            }
        };
        // A template ending in `/` names a folder: the output keeps its default name there.
        let output_is_folder = self
            .output
            .as_ref()
            .is_some_and(|t| t.get_ref().ends_with('/'));
        let output = self
            .output
            .as_ref()
            .map(|t| {
                let text = t.get_ref().trim_end_matches('/');
                Template::new(text).map_err(|e| (t.span(), key("output"), e.to_string()))
            })
            .transpose()?;
        let max_ratio = self.max_ratio.unwrap_or(100);
        if max_ratio == 0 {
            return Err((
                self.operation.span(),
                key("max_ratio"),
                "must be at least 1".into(),
            ));
        }
        Ok(OpenPgpAction {
            operation: Arc::new(operation),
            output,
            output_is_folder,
            armor: self.armor,
            remove_source,
            max_ratio,
            quarantine,
        })
    }
}
