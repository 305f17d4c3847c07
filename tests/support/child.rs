//! A child process that cannot outlive its test.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use tempfile::TempDir;

use super::wait::wait_until;

/// Log lines shown when a test panics while the child is alive.
const TAIL_LINES: usize = 40;

/// Owns a spawned peer: SIGKILLs and reaps it on drop, so a panicking test
/// leaves no server behind. Its stdout and stderr go to one log file; when
/// dropped during a panic the guard prints the last lines of that log.
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// Holds the log when the caller did not give a place for it.
    _log_dir: Option<TempDir>,
    /// Set once the tail was shown in a panic message, so drop does not repeat it.
    tail_shown: bool,
}

impl ChildGuard {
    /// Spawns `cmd` with its output in a log file in a fresh temp dir.
    ///
    /// # Panics
    /// When the process cannot be spawned.
    pub fn spawn(name: &str, cmd: &mut Command) -> ChildGuard {
        let dir = tempfile::tempdir().expect("create temp dir for child log");
        let log = dir.path().join(format!("{name}.log"));
        let mut guard = ChildGuard::spawn_logged(name, cmd, &log);
        guard._log_dir = Some(dir);
        guard
    }

    /// Spawns `cmd` with its output appended to `log` (a restarted peer keeps
    /// one log across runs; each run starts with a header line).
    ///
    /// # Panics
    /// When the log cannot be opened or the process cannot be spawned.
    pub fn spawn_logged(name: &str, cmd: &mut Command, log: &Path) -> ChildGuard {
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open log {}: {e}", log.display()));
        writeln!(out, "=== spawn {name}: {cmd:?}").expect("write child log header");
        let err: File = out.try_clone().expect("clone child log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} ({cmd:?}): {e}"));
        ChildGuard {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
            _log_dir: None,
            tail_shown: false,
        }
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the child's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read(&self.log).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The exit status if the child has exited (or was killed), without waiting.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        child.try_wait().expect("try_wait on child")
    }

    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.exit_status().is_none()
    }

    /// SIGKILLs the child and reaps it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if it already exited; the wait reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits until `ready` holds while the child stays alive.
    ///
    /// # Panics
    /// When the child exits first (the message carries its log tail) or the
    /// deadline passes.
    pub fn wait_ready(&mut self, deadline: Duration, what: &str, mut ready: impl FnMut() -> bool) {
        let mut exited = None;
        wait_until(deadline, what, || {
            if let Some(status) = self.exit_status() {
                exited = Some(status);
                return true;
            }
            ready()
        });
        if let Some(status) = exited {
            self.tail_shown = true;
            panic!(
                "{} exited ({status}) before {what}; last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(TAIL_LINES)
            );
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
        if thread::panicking() && !self.tail_shown {
            eprintln!(
                "--- last lines of {} ({}) ---\n{}\n--- end of {} ---",
                self.name,
                self.log.display(),
                self.log_tail(TAIL_LINES),
                self.name
            );
        }
    }
}
