//! A PDF document's text, read by a process of its own (`wharf pdf-text`).
//!
//! The PDF reader is another's code meeting hostile input, and a document can make it
//! recurse without end (a form that draws itself overflows the stack, which no
//! `catch_unwind` catches and which takes the whole process down), work for days (forms
//! drawing each other many times over) or inflate streams without limit. So it never runs
//! in the server: the child gets the document on its standard input and writes the text on
//! its standard output, with its address space and CPU time capped before it reads a byte,
//! and it is killed at the check's deadline. Whatever ends it early makes the document
//! unscannable. This module never parses PDF itself.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Largest PDF document handed to the reader (it reads it whole).
pub const MAX_PDF: u64 = 32 << 20;

/// The reader's address space: a document that needs more cannot be read.
const MEMORY: u64 = 1 << 30;

/// The reader's CPU time when the deadline leaves more.
const MAX_CPU: Duration = Duration::from_secs(60);

/// Bytes of the reader's own complaint kept for the event.
const MAX_COMPLAINT: u64 = 200;

/// The program that turns a PDF document into text.
#[derive(Debug, Clone)]
pub struct PdfReader {
    /// The program (the server names itself: `/proc/self/exe`).
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

/// A reader at work on one document.
pub struct Reading {
    child: Arc<Mutex<Child>>,
    stdout: Option<ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
    feeder: Option<std::thread::JoinHandle<()>>,
    watchdog: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<bool>)>,
    deadline: Instant,
}

fn lock(child: &Mutex<Child>) -> std::sync::MutexGuard<'_, Child> {
    child
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Reading {
    /// Starts `reader` on `pdf`, to end by `deadline`.
    pub fn start(reader: &PdfReader, pdf: Vec<u8>, deadline: Instant) -> Result<Reading, String> {
        let mut child = Command::new(&reader.program)
            .args(&reader.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("the PDF reader cannot start: {e}"))?;
        // The child waits for its input: the limits are in place before it reads a byte.
        let pid = rustix::process::Pid::from_raw(child.id() as i32);
        let cpu = deadline
            .saturating_duration_since(Instant::now())
            .min(MAX_CPU)
            .as_secs()
            .max(1);
        let limited = [
            (rustix::process::Resource::As, MEMORY),
            (rustix::process::Resource::Cpu, cpu),
        ]
        .into_iter()
        .try_for_each(|(resource, value)| {
            let limit = rustix::process::Rlimit {
                current: Some(value),
                maximum: Some(value),
            };
            rustix::process::prlimit(pid, resource, limit).map(|_| ())
        });
        if let Err(e) = limited {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the PDF reader cannot be limited: {e}"));
        }
        let (stdin, stdout, stderr) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take());
        let feeder = stdin.map(|mut stdin| {
            std::thread::spawn(move || {
                // A reader that stops early closes the pipe: that is its exit status's to say.
                let _ = stdin.write_all(&pdf);
            })
        });
        let child = Arc::new(Mutex::new(child));
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let watched = Arc::clone(&child);
        let watchdog = std::thread::spawn(move || {
            let wait = deadline.saturating_duration_since(Instant::now());
            match stopped.recv_timeout(wait) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    let _ = lock(&watched).kill();
                    true
                }
                _ => false,
            }
        });
        Ok(Reading {
            child,
            stdout,
            stderr,
            feeder,
            watchdog: Some((stop, watchdog)),
            deadline,
        })
    }

    /// The text, as the reader writes it.
    pub fn text(&mut self) -> Option<&mut ChildStdout> {
        self.stdout.as_mut()
    }

    /// Waits for the reader's end: `Ok` when it read the whole document, why not otherwise.
    pub fn finish(mut self) -> Result<(), String> {
        self.stdout = None;
        let status = loop {
            match lock(&self.child).try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(e) => break Err(format!("the PDF reader cannot be waited for: {e}")),
            }
            if Instant::now() >= self.deadline {
                let mut child = lock(&self.child);
                let _ = child.kill();
                let _ = child.wait();
                break Err("the PDF reader ran past the check's timeout".to_owned());
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let killed = self.stop_watchdog();
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
        let status = status?;
        if killed {
            return Err("the PDF reader ran past the check's timeout".to_owned());
        }
        if status.success() {
            return Ok(());
        }
        if let Some(signal) = std::os::unix::process::ExitStatusExt::signal(&status) {
            // A stack overflow (SIGABRT, SIGSEGV) or a limit reached (SIGKILL, SIGXCPU).
            return Err(format!("the PDF reader ended on signal {signal}"));
        }
        let mut complaint = String::new();
        if let Some(stderr) = self.stderr.take() {
            let _ = stderr.take(MAX_COMPLAINT).read_to_string(&mut complaint);
        }
        let complaint: String = complaint
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        Err(if complaint.is_empty() {
            format!("the PDF reader stopped ({status})")
        } else {
            complaint
        })
    }

    fn stop_watchdog(&mut self) -> bool {
        match self.watchdog.take() {
            Some((stop, watchdog)) => {
                let _ = stop.send(());
                watchdog.join().unwrap_or(false)
            }
            None => false,
        }
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        // A walk that stopped before the end (a limit reached) leaves no reader behind.
        if self.watchdog.is_some() {
            self.stdout = None;
            let mut child = lock(&self.child);
            let _ = child.kill();
            let _ = child.wait();
            drop(child);
            self.stop_watchdog();
        }
        if let Some(feeder) = self.feeder.take() {
            let _ = feeder.join();
        }
    }
}
