//! The `exec` action: run an administrator's program for an event.
//!
//! Never through a shell: the program is an absolute path and each configured argument,
//! once expanded, is exactly one argument, so a file named `; rm -rf ~` or `$(id)` reaches
//! the program as those characters. The environment is cleared, then holds only `PATH`
//! (`/usr/local/bin:/usr/bin:/bin`) and `WHARF_*` variables describing the event; the
//! event's JSON record is the program's standard input. Output is kept up to a cap. A
//! program still running at the handler's timeout is killed. Exit status 0 is success.
//!
//! A program dies with the node that started it: it is started through util-linux's
//! `setpriv --pdeathsig KILL` where that is installed (Debian: always), so the kernel kills
//! it when the server process dies, even by `kill -9`. Otherwise a program outliving a dead
//! node could run on while another node, having taken its job over, runs it again. (The
//! signal follows the runtime thread that started the program; the server's worker threads
//! live as long as the server.)

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use wharf_store::AuditRecord;

use crate::ActionError;
use crate::spec::ExecAction;

/// Output kept from each of standard output and standard error.
const MAX_OUTPUT: usize = 64 * 1024;

/// Runs the program; answers the start of its standard output.
pub(crate) async fn run(
    action: &ExecAction,
    record: &AuditRecord,
    vars: &BTreeMap<&'static str, String>,
    timeout: Duration,
) -> Result<String, ActionError> {
    let mut command = match death_signal() {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command
                .args(["--pdeathsig", "KILL", "--"])
                .arg(&action.program);
            command
        }
        None => Command::new(&action.program),
    };
    command
        .args(action.args.iter().map(|t| t.expand(vars)))
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in vars {
        command.env(format!("WHARF_{name}"), value);
    }
    let mut child = command.spawn().map_err(|e| {
        ActionError::retry(format!("cannot start {}: {e}", action.program.display()))
    })?;
    let input = serde_json::to_vec(record).map_err(|e| ActionError::permanent(e.to_string()))?;
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let work = async {
        // A program that does not read its input must not block us: write in the
        // background and ignore a closed pipe.
        let feed = async {
            if let Some(pipe) = stdin.as_mut() {
                let _ = pipe.write_all(&input).await;
                let _ = pipe.shutdown().await;
            }
            drop(stdin.take());
        };
        let (_, out, err, status) = tokio::join!(
            feed,
            read_capped(stdout.as_mut()),
            read_capped(stderr.as_mut()),
            child.wait()
        );
        (out, err, status)
    };
    let (out, err, status) = match tokio::time::timeout(timeout, work).await {
        Ok(done) => done,
        Err(_) => {
            let _ = child.kill().await;
            return Err(ActionError::retry(format!(
                "{} still running after {} s; killed",
                action.program.display(),
                timeout.as_secs()
            )));
        }
    };
    let status =
        status.map_err(|e| ActionError::retry(format!("cannot wait for the program: {e}")))?;
    if status.success() {
        Ok(out)
    } else {
        let code = status
            .code()
            .map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"));
        let said = if err.trim().is_empty() { out } else { err };
        Err(ActionError::retry(format!(
            "{} exited with {code}: {}",
            action.program.display(),
            excerpt(&said)
        )))
    }
}

/// `setpriv`, which sets the parent-death signal and then executes the program in its own
/// place (same process, same status), if this machine has it.
fn death_signal() -> Option<&'static Path> {
    static SETPRIV: OnceLock<Option<&'static Path>> = OnceLock::new();
    *SETPRIV.get_or_init(|| {
        let found = ["/usr/bin/setpriv", "/bin/setpriv"]
            .into_iter()
            .map(Path::new)
            .find(|p| p.is_file());
        if found.is_none() {
            tracing::warn!("setpriv (util-linux) is not installed: a handler's program is not killed when the server dies");
        }
        found
    })
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(pipe: Option<&mut R>) -> String {
    let Some(pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    // Read to the end (so the program is never blocked on a full pipe), keep the start.
    while let Ok(n) = pipe.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buffer[..n.min(room)]);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The start of a program's output, for an event message.
pub(crate) fn excerpt(text: &str) -> String {
    let trimmed = text.trim();
    let mut out: String = trimmed.chars().take(1000).collect();
    if trimmed.chars().count() > 1000 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    #[tokio::test]
    async fn arguments_stay_whole_and_the_environment_is_cleared() {
        let action = ExecAction {
            program: "/usr/bin/env".into(),
            args: vec![],
        };
        let record: AuditRecord = serde_json::from_str(
            r#"{"seq":7,"id":30002,"name":"upload.finished","time":"2026-01-01T00:00:00.000000Z","node":"n","outcome":"success","prev":"0"}"#,
        )
        .unwrap();
        let vars = BTreeMap::from([("NAME", "a\nb; $(id)".to_owned())]);
        let out = run(&action, &record, &vars, Duration::from_secs(10))
            .await
            .unwrap();
        let mut lines: Vec<&str> = out.lines().collect();
        lines.sort();
        // `env` prints NAME=value per variable: the newline splits the value over two lines.
        assert_eq!(
            lines,
            [
                "PATH=/usr/local/bin:/usr/bin:/bin",
                "WHARF_NAME=a",
                "b; $(id)"
            ]
        );

        let printf = ExecAction {
            program: "/usr/bin/printf".into(),
            args: vec![
                Template::new("[%s][%s]").unwrap(),
                Template::new("${NAME}").unwrap(),
                Template::new("-x ${NAME}").unwrap(),
            ],
        };
        let out = run(&printf, &record, &vars, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(out, "[a\nb; $(id)][-x a\nb; $(id)]");
    }

    #[tokio::test]
    async fn a_slow_program_is_killed_and_a_failure_reported() {
        let record: AuditRecord = serde_json::from_str(
            r#"{"seq":1,"id":30002,"name":"upload.finished","time":"2026-01-01T00:00:00.000000Z","node":"n","outcome":"success","prev":"0"}"#,
        )
        .unwrap();
        let sleep = ExecAction {
            program: "/usr/bin/sleep".into(),
            args: vec![Template::new("30").unwrap()],
        };
        let started = std::time::Instant::now();
        let err = run(&sleep, &record, &BTreeMap::new(), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(err.message.contains("killed"), "{}", err.message);
        assert!(started.elapsed() < Duration::from_secs(10));
        let fail = ExecAction {
            program: "/usr/bin/false".into(),
            args: vec![],
        };
        let err = run(&fail, &record, &BTreeMap::new(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.message.contains("status 1"), "{}", err.message);
    }
}
