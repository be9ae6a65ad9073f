//! The exec allow-list: which commands an SSH client may run. No shell is ever involved;
//! a command line is tokenised and matched against what Wharf implements itself. SCP runs
//! in `scp.rs`; `sha256sum`, which only asks the core session for digests, runs here.

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
    /// `sha256sum PATH...`.
    Sha256Sum {
        /// Files to hash.
        paths: Vec<String>,
    },
}

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
        "sha256sum" => {
            let paths: Vec<String> = args
                .iter()
                .filter(|a| *a != "--")
                .map(|a| home_relative(a).to_owned())
                .collect();
            if paths.is_empty() || paths.iter().any(|p| p.starts_with('-')) {
                return Err("sha256sum takes only file names".to_owned());
            }
            Ok(Command::Sha256Sum { paths })
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

/// `sha256sum PATH...`: each file's digest as the core session knows it, like coreutils.
pub(crate) async fn sha256sum<W: tokio::io::AsyncWrite + Unpin>(
    core: &wharf_core::Session,
    out: &mut W,
    paths: &[String],
) -> u32 {
    use tokio::io::AsyncWriteExt;
    let mut status = 0;
    for raw in paths {
        let line = match core.resolve(&wharf_types::VirtualPath::root(), raw.as_bytes()) {
            Ok(path) => match core.sha256(&path).await {
                Ok(hex) => format!("{hex}  {raw}\n"),
                Err(e) => {
                    status = 1;
                    format!("sha256sum: {raw}: {}\n", e.message)
                }
            },
            Err(e) => {
                status = 1;
                format!("sha256sum: {raw}: {}\n", e.message)
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
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
