//! The exec allow-list: which commands an SSH client may run. No shell is ever involved;
//! a command line is tokenised and matched against what Wharf implements itself. SCP runs
//! in `scp.rs`; `sha256sum`, `md5sum` and `sha1sum`, which only ask the core session for
//! digests, run here.

use wharf_core::DigestKind;

/// A command Wharf runs in-process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `scp -t` (upload to the server).
    ScpSink {
        /// Target path.
        target: String,
        /// `-r`.
        recursive: bool,
        /// `-d`: the target must be a folder.
        target_is_dir: bool,
    },
    /// `scp -f` (download from the server).
    ScpSource {
        /// Source path.
        source: String,
        /// `-r`.
        recursive: bool,
        /// `-p`: send times.
        preserve: bool,
    },
    /// `sha256sum`, `md5sum` or `sha1sum` of files, or of the command's input when no file
    /// is named (rclone checks that the command works with `md5sum` on empty input).
    Checksum {
        /// Which digest.
        kind: SumKind,
        /// Files to hash; empty for the input.
        paths: Vec<String>,
    },
}

/// The digest a checksum command prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumKind {
    /// `sha256sum`.
    Sha256,
    /// `md5sum`.
    Md5,
    /// `sha1sum`.
    Sha1,
}

impl SumKind {
    fn digest(self) -> DigestKind {
        match self {
            SumKind::Sha256 => DigestKind::Sha256,
            SumKind::Md5 => DigestKind::Md5,
            SumKind::Sha1 => DigestKind::Sha1,
        }
    }

    fn program(self) -> &'static str {
        match self {
            SumKind::Sha256 => "sha256sum",
            SumKind::Md5 => "md5sum",
            SumKind::Sha1 => "sha1sum",
        }
    }
}

/// Most bytes of input a checksum command hashes when no file is named: enough for a
/// client's probe, never a way to make the server hash a stream.
pub const MAX_SUM_INPUT: usize = 64 * 1024;

/// A leading `~` means the home, as a login shell would expand it; here the home is `/`.
pub fn home_relative(path: &str) -> &str {
    match path {
        "~" => "/",
        p => p.strip_prefix("~/").unwrap_or(p),
    }
}

/// Longest exec command line accepted.
pub const MAX_COMMAND: usize = 8 * 1024;

/// Parses an exec request; `Err` carries the reason to record.
pub fn parse(command: &[u8]) -> Result<Command, String> {
    if command.len() > MAX_COMMAND {
        return Err("command line too long".to_owned());
    }
    let text = std::str::from_utf8(command).map_err(|_| "command is not UTF-8".to_owned())?;
    let words = shell_words::split(text).map_err(|e| format!("cannot parse command: {e}"))?;
    let Some((program, args)) = words.split_first() else {
        return Err("empty command".to_owned());
    };
    match program.as_str() {
        "scp" => parse_scp(args),
        name @ ("sha256sum" | "md5sum" | "sha1sum") => {
            let kind = match name {
                "md5sum" => SumKind::Md5,
                "sha1sum" => SumKind::Sha1,
                _ => SumKind::Sha256,
            };
            let mut paths = Vec::with_capacity(args.len());
            let mut names_only = false;
            for arg in args {
                if !names_only && arg == "--" {
                    names_only = true;
                } else if !names_only && arg.starts_with('-') {
                    return Err(format!("{name} takes only file names"));
                } else {
                    paths.push(home_relative(arg).to_owned());
                }
            }
            Ok(Command::Checksum { kind, paths })
        }
        other => Err(format!(
            "command {:?} is not allowed",
            other.chars().take(64).collect::<String>()
        )),
    }
}

fn parse_scp(args: &[String]) -> Result<Command, String> {
    let (mut sink, mut source, mut recursive, mut preserve, mut dir) =
        (false, false, false, false, false);
    let mut paths = Vec::new();
    let mut flags_done = false;
    for arg in args {
        if !flags_done && arg == "--" {
            flags_done = true;
        } else if !flags_done && arg.starts_with('-') && arg.len() > 1 {
            for flag in arg[1..].chars() {
                match flag {
                    't' => sink = true,
                    'f' => source = true,
                    'r' => recursive = true,
                    'p' => preserve = true,
                    'd' => dir = true,
                    'v' | 'q' => {}
                    other => return Err(format!("scp option -{other} is not allowed")),
                }
            }
        } else {
            paths.push(arg.clone());
        }
    }
    if sink == source {
        return Err("scp needs exactly one of -t or -f".to_owned());
    }
    let [path] = paths.as_slice() else {
        return Err("scp needs exactly one path".to_owned());
    };
    Ok(if sink {
        Command::ScpSink {
            target: home_relative(path).to_owned(),
            recursive,
            target_is_dir: dir,
        }
    } else {
        Command::ScpSource {
            source: home_relative(path).to_owned(),
            recursive,
            preserve,
        }
    })
}

/// The digest of the command's input (at most [`MAX_SUM_INPUT`] bytes).
async fn input_digest(kind: SumKind, input: &mut crate::input::Input) -> Result<String, String> {
    let mut hasher = kind.digest().hasher();
    let mut total = 0usize;
    while let Some(chunk) = input.next_chunk().await {
        total += chunk.len();
        if total > MAX_SUM_INPUT {
            return Err(format!("input longer than {MAX_SUM_INPUT} bytes"));
        }
        hasher.update(&chunk);
    }
    Ok(hasher.finish())
}

/// `sha256sum`, `md5sum` or `sha1sum`: each named file's digest as the core session gives
/// it, or the input's digest when no file is named, in coreutils' format.
pub(crate) async fn checksum<W: tokio::io::AsyncWrite + Unpin>(
    core: &wharf_core::Session,
    input: &mut crate::input::Input,
    out: &mut W,
    kind: SumKind,
    paths: &[String],
) -> u32 {
    use tokio::io::AsyncWriteExt;
    let program = kind.program();
    if paths.is_empty() {
        let (line, status) = match input_digest(kind, input).await {
            Ok(hex) => (format!("{hex}  -\n"), 0),
            Err(why) => (format!("{program}: -: {why}\n"), 1),
        };
        let _ = out.write_all(line.as_bytes()).await;
        let _ = out.flush().await;
        return status;
    }
    let mut status = 0;
    for raw in paths {
        let digest = match core.resolve(&wharf_types::VirtualPath::root(), raw.as_bytes()) {
            Ok(path) => core.file_digest(&path, kind.digest()).await,
            Err(e) => Err(e),
        };
        let line = match digest {
            Ok(hex) => format!("{hex}  {raw}\n"),
            Err(e) => {
                status = 1;
                format!("{program}: {raw}: {}\n", e.message)
            }
        };
        if out.write_all(line.as_bytes()).await.is_err() {
            return 1;
        }
    }
    let _ = out.flush().await;
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_and_refused() {
        assert_eq!(
            parse(b"scp -r -p -t -- /up").unwrap(),
            Command::ScpSink {
                target: "/up".into(),
                recursive: true,
                target_is_dir: false
            }
        );
        assert!(matches!(
            parse(b"scp -t ~/in/x").unwrap(),
            Command::ScpSink { target, .. } if target == "in/x"
        ));
        assert!(matches!(
            parse(b"scp -pf 'a b.txt'").unwrap(),
            Command::ScpSource { preserve: true, .. }
        ));
        for bad in [
            &b"ls -la"[..],
            b"scp -t a b",
            b"scp -t -f a",
            b"scp -S evil -t a",
            b"sh -c 'scp -t x'",
            b"rsync --server . x",
            b"",
            b"sha256sum -c list",
            b"md5sum --check list",
            b"sha1sum -b x",
            b"echo ${ShellId}%ComSpec%",
            b"df -k /",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn checksum_commands_as_rclone_sends_them() {
        assert_eq!(
            parse(b"md5sum").unwrap(),
            Command::Checksum {
                kind: SumKind::Md5,
                paths: vec![]
            }
        );
        // rclone escapes every character outside [A-Za-z0-9_.,:/@-] and non-ASCII with `\`.
        assert_eq!(
            parse("sha1sum /dir\\ with\\ space/caf\u{e9}\\%20x.txt".as_bytes()).unwrap(),
            Command::Checksum {
                kind: SumKind::Sha1,
                paths: vec!["/dir with space/caf\u{e9}%20x.txt".into()]
            }
        );
        assert!(matches!(
            parse(b"sha256sum -- -odd").unwrap(),
            Command::Checksum { kind: SumKind::Sha256, paths } if paths == ["-odd"]
        ));
    }
}
