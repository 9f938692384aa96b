//! Processes that never outlive the test process: the pipe watchdog shared by the servers
//! ([`RedisServer`](super::RedisServer)) and the child scenarios
//! ([`ChildProcess`](super::ChildProcess)).
//!
//! A process is started through a tiny `sh` wrapper that forks a watchdog and then `exec`s the
//! real program, so the child process *is* the program (its pid is the program's pid). The
//! watchdog blocks reading a pipe whose only write end lives in the test process. It gets
//! end-of-file when the handle is dropped (normal case, also while a panicking test unwinds)
//! **and** when the test process dies in any way (even `SIGKILL`, since the kernel closes the
//! pipe), and then `SIGKILL`s the program. Killing a handle closes that pipe first and only then
//! reaps the program, so the watchdog can never signal a recycled pid.

use std::ffi::OsString;
use std::io::{self, BufRead as _, BufReader};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// The `sh` wrapper: keep the pipe on stdin as fd 3, fork a watchdog that kills this very process
/// (`$$`, which becomes the program through `exec`) once the pipe reaches end-of-file, then
/// replace the shell by the program. Positional parameters are the program's command line.
const WRAPPER: &str = r#"exec 3<&0
( read -r _ <&3; kill -9 $$ ) </dev/null >/dev/null 2>&1 &
exec "$@" 3<&- </dev/null 2>&1
"#;

/// The shell that runs the wrapper, by absolute path so that a child started with another
/// `PATH` (even an empty one) still starts.
const SHELL: &str = "/bin/sh";

/// How long a kill waits for the watchdog's `SIGKILL` before sending one itself.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Whether a process with this pid exists and is not a zombie: for tests that check a killed
/// server or child is really gone.
///
/// On Linux this reads `/proc/<pid>/stat` (a zombie, dead but not yet reaped, counts as gone);
/// elsewhere it asks `kill -0`.
///
/// ```no_run
/// use redisx_runtime::testing::{RedisServer, process_alive};
///
/// let mut server = RedisServer::start_owned();
/// let pid = server.pid().expect("an owned server runs");
/// server.kill();
/// assert!(!process_alive(pid));
/// ```
pub fn process_alive(pid: u32) -> bool {
    #[cfg(target_os = "linux")]
    {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state is the field after the parenthesised command name.
            Ok(stat) => stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X"),
            Err(_) => false,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// What a watched process printed (stdout and stderr, interleaved as lines), and whether its
/// output has ended.
#[derive(Debug, Default)]
struct Log {
    text: String,
    closed: bool,
}

/// The log and the condition variable that wakes waiters on every new line.
#[derive(Debug, Default)]
struct Output {
    log: Mutex<Log>,
    changed: Condvar,
}

impl Output {
    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Why [`Watched::wait_for_line`] returned without a line.
#[derive(Debug)]
pub(crate) enum LineWait {
    /// No matching line within the bound.
    TimedOut,
    /// The process closed its output (it exited) without printing a matching line.
    Closed,
}

/// One process started behind the watchdog, with its output collected by a reader thread.
#[derive(Debug)]
pub(crate) struct Watched {
    child: Child,
    /// The write end of the watchdog's pipe: closing it kills the process.
    watchdog: Option<ChildStdin>,
    output: Arc<Output>,
}

impl Watched {
    /// Starts `program args...` behind the watchdog, with `env` applied (`None` removes a
    /// variable). `label` names the output reader thread.
    pub(crate) fn spawn(
        label: &str,
        program: &OsString,
        args: &[OsString],
        env: &[(OsString, Option<OsString>)],
    ) -> io::Result<Self> {
        let mut command = Command::new(SHELL);
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg(label)
            .arg(program)
            .args(args);
        for (key, value) in env {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot run `{SHELL}` to start {label}: {e}"),
            )
        })?;
        let watchdog = child.stdin.take();
        let output = Arc::new(Output::default());
        let mut watched = Watched {
            child,
            watchdog,
            output,
        };
        if let Some(stdout) = watched.child.stdout.take() {
            let sink = Arc::clone(&watched.output);
            let reader = thread::Builder::new()
                .name(format!("{label}-output"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        let mut log = sink.lock();
                        log.text.push_str(&line);
                        log.text.push('\n');
                        sink.changed.notify_all();
                    }
                    sink.lock().closed = true;
                    sink.changed.notify_all();
                });
            if let Err(e) = reader {
                watched.kill();
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot spawn the output reader of {label}: {e}"),
                ));
            }
        }
        Ok(watched)
    }

    /// The process id (also after it exited, until the handle is dropped).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far.
    pub(crate) fn output(&self) -> String {
        self.output.lock().text.clone()
    }

    /// The exit status once the process has exited, `None` while it runs.
    pub(crate) fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Whether the process still runs.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until a line of the output contains `needle` and returns that line; the whole
    /// output of the process is searched, from its first line.
    pub(crate) fn wait_for_line(&self, needle: &str, within: Duration) -> Result<String, LineWait> {
        let deadline = Instant::now() + within;
        let mut log = self.output.lock();
        loop {
            if let Some(line) = log.text.lines().find(|line| line.contains(needle)) {
                return Ok(line.to_owned());
            }
            if log.closed {
                return Err(LineWait::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(LineWait::TimedOut);
            }
            log = self
                .output
                .changed
                .wait_timeout(log, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until the output has ended (the process exited and the reader saw end-of-file), for
    /// at most `within`; a short wait so that an error message holds the last lines.
    pub(crate) fn wait_output_closed(&self, within: Duration) {
        let deadline = Instant::now() + within;
        let mut log = self.output.lock();
        while !log.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            log = self
                .output
                .changed
                .wait_timeout(log, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Sends the signal `sig` (`STOP`, `CONT`, ...) to the process with the `kill` command.
    ///
    /// # Panics
    /// When `kill` cannot run or fails.
    pub(crate) fn signal(&self, sig: &str) {
        let pid = self.pid();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `kill` ({e})"))
            .success();
        assert!(ok, "kill -{sig} {pid} failed");
    }

    /// Kills the process (`SIGKILL`) and reaps it. The pipe is closed first so that the watchdog
    /// signals the process while it is still this process's (unreaped) child; a direct `SIGKILL`
    /// follows only if the watchdog is gone.
    pub(crate) fn kill(&mut self) {
        drop(self.watchdog.take());
        let deadline = Instant::now() + KILL_GRACE;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => break,
                Ok(None) => thread::sleep(Duration::from_millis(1)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.kill();
    }
}
