//! [`ChildProcess`]: a named scenario of the same test binary, run in a child process, for tests
//! of what survives a crash (a lock holder killed mid-work, a consumer killed before its ack).
//!
//! The scenario is an ordinary test function of the binary, marked `#[ignore]` so that a normal
//! run skips it, which does its work only when [`in_scenario`] says this process was started for
//! it. [`ChildProcess::scenario`] re-executes the test binary ([`std::env::current_exe`]) with a
//! filter that selects exactly that test, and the scenario's name in [`SCENARIO_ENV`].

use std::ffi::OsString;
use std::fmt;
use std::io::Write as _;
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use super::process::{LineWait, Watched};

/// The environment variable that names the scenario a child process was started for.
pub const SCENARIO_ENV: &str = "REDISX_TEST_SCENARIO";

/// The line [`signal_ready`] prints, and what [`ChildBuilder::start`] waits for by default.
pub const READY_LINE: &str = "redisx-testing: ready";

/// How long [`ChildBuilder::start`] waits for the readiness line by default.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether this process is a child started by [`ChildProcess`] for the scenario `name` (the
/// test's path as the test binary names it, e.g. `crash::holder` for `fn holder` in
/// `mod crash`). A scenario test returns at once when it is not, so that `cargo test --
/// --include-ignored` runs it as a no-op.
///
/// ```no_run
/// use redisx_runtime::testing::{in_scenario, signal_ready};
///
/// // In the test file, with `#[test]` and `#[ignore = "scenario: run in a child process"]`.
/// fn holder() {
///     if !in_scenario("holder") {
///         return;
///     }
///     // ... take the lock ...
///     signal_ready();
///     std::thread::sleep(std::time::Duration::from_secs(60)); // until the parent kills us
/// }
/// # holder();
/// ```
pub fn in_scenario(name: &str) -> bool {
    std::env::var_os(SCENARIO_ENV).is_some_and(|value| value == name)
}

/// Prints [`READY_LINE`] on stdout (flushed): what the parent's [`ChildBuilder::start`] waits
/// for by default. Call it from the scenario once it reached the state the parent tests.
///
/// ```no_run
/// redisx_runtime::testing::signal_ready();
/// ```
pub fn signal_ready() {
    let mut out = std::io::stdout().lock();
    // A failed write is seen by the parent as a missing readiness line, with the output so far.
    let _ = writeln!(out, "{READY_LINE}");
    let _ = out.flush();
}

/// How to start a [`ChildProcess`]: made by [`ChildProcess::scenario`].
#[derive(Clone, Debug)]
#[must_use]
pub struct ChildBuilder {
    scenario: String,
    env: Vec<(OsString, Option<OsString>)>,
    ready_line: Option<String>,
    ready_timeout: Duration,
}

impl ChildBuilder {
    /// Sets an environment variable for the child (it inherits the others of this process).
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), Some(value.into())));
        self
    }

    /// Removes an environment variable from the child's environment, e.g. `REDISX_TEST_URL`.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.env.push((key.into(), None));
        self
    }

    /// What the child is ready after: the first line of its output that contains `needle`
    /// (default [`READY_LINE`], printed by [`signal_ready`]).
    pub fn ready_line(mut self, needle: impl Into<String>) -> Self {
        self.ready_line = Some(needle.into());
        self
    }

    /// Waits for no readiness line: [`ChildBuilder::start`] returns once the child is spawned
    /// (for a scenario that runs to its end, see [`ChildProcess::wait_exit`]).
    pub fn no_ready_line(mut self) -> Self {
        self.ready_line = None;
        self
    }

    /// How long to wait for the readiness line (default [`READY_TIMEOUT`]).
    pub fn ready_timeout(mut self, within: Duration) -> Self {
        self.ready_timeout = within;
        self
    }

    /// Starts the child and waits for its readiness line.
    ///
    /// # Panics
    /// When the child cannot be started, or does not print its readiness line in time (the
    /// message holds its output so far); see [`ChildBuilder::try_start`] for the error instead.
    pub fn start(self) -> ChildProcess {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the child and waits for its readiness line; on failure the child is killed and
    /// the error holds its output.
    pub fn try_start(self) -> Result<ChildProcess, ChildError> {
        let process = self.spawn()?;
        let mut child = ChildProcess {
            config: self,
            process,
            runs: 1,
        };
        child.wait_ready()?;
        Ok(child)
    }

    fn spawn(&self) -> Result<Watched, ChildError> {
        let program = std::env::current_exe()
            .map_err(|e| {
                ChildError::spawn(
                    &self.scenario,
                    format!("cannot find the test binary (current_exe): {e}"),
                )
            })?
            .into_os_string();
        let args: Vec<OsString> = [
            self.scenario.as_str(),
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let mut env = vec![(SCENARIO_ENV.into(), Some(self.scenario.clone().into()))];
        env.extend(self.env.iter().cloned());
        Watched::spawn("redisx-test-child", &program, &args, &env)
            .map_err(|e| ChildError::spawn(&self.scenario, e.to_string()))
    }
}

/// A named scenario of this test binary running in a child process behind the harness's
/// watchdog: it never outlives the test process, even when the test process is killed.
///
/// The child's stdout and stderr are collected ([`ChildProcess::output`]);
/// [`ChildProcess::kill`] sends `SIGKILL` (no unwinding, no `Drop`: a crash) and reaps it;
/// [`ChildProcess::restart`] runs the scenario again in a fresh process. The child is killed
/// when the handle is dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use redisx_runtime::testing::{
///     ChildProcess, RedisServer, in_scenario, process_alive, signal_ready,
/// };
///
/// // The scenario, with `#[test]` and `#[ignore = "scenario: run in a child process"]`.
/// fn worker() {
///     if !in_scenario("worker") {
///         return;
///     }
///     let url = std::env::var("WORKER_REDIS").expect("set by the parent");
///     // ... start work against `url` ...
///     # let _ = url;
///     signal_ready();
///     std::thread::sleep(Duration::from_secs(60)); // until the parent kills us
/// }
///
/// // The test, with `#[test]`.
/// fn worker_crash() {
///     let server = RedisServer::start();
///     let mut child = ChildProcess::scenario("worker")
///         .env("WORKER_REDIS", server.url())
///         .start(); // waits for `signal_ready()`
///     let pid = child.pid();
///     child.kill(); // SIGKILL, mid-work
///     assert!(!process_alive(pid));
///     // ... check what the crash left behind ...
///     child.restart(); // runs `worker` again, ready again
/// }
/// # worker();
/// # worker_crash();
/// ```
#[derive(Debug)]
#[must_use = "the child is killed when the handle is dropped"]
pub struct ChildProcess {
    config: ChildBuilder,
    /// The current run, or the last one once it was killed or exited.
    process: Watched,
    runs: usize,
}

impl ChildProcess {
    /// A builder for a child running the test `name` of this test binary: its path as the
    /// binary names it (`module::test_name` for a test in a module), which must match exactly.
    /// That test checks [`in_scenario`] with the same name.
    pub fn scenario(name: impl Into<String>) -> ChildBuilder {
        ChildBuilder {
            scenario: name.into(),
            env: Vec::new(),
            ready_line: Some(READY_LINE.to_owned()),
            ready_timeout: READY_TIMEOUT,
        }
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.config.scenario
    }

    /// The process id of the current run (of the last one once it was killed or exited). The
    /// child process is the test binary itself, not a shell.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether the current run is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// How many times the scenario was started: 1, plus one per [`ChildProcess::restart`].
    pub fn runs(&self) -> usize {
        self.runs
    }

    /// Everything the current (or last) run printed so far, stdout and stderr, including the
    /// test binary's own lines (`running 1 test`, ...).
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// Waits until a line of the current run's output contains `needle` and returns that line.
    /// The whole output of the run is searched, from its first line.
    pub fn wait_for_line(&self, needle: &str, within: Duration) -> Result<String, ChildError> {
        self.process
            .wait_for_line(needle, within)
            .map_err(|reason| self.line_error(needle, within, &reason))
    }

    /// Waits until the current run exits (for a scenario that runs to its end) and returns its
    /// status; [`ChildProcess::output`] then holds all it printed.
    pub fn wait_exit(&mut self, within: Duration) -> Result<ExitStatus, ChildError> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.process.try_wait() {
                self.process.wait_output_closed(Duration::from_secs(1));
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(ChildError {
                    scenario: self.config.scenario.clone(),
                    reason: Reason::StillRunning { within },
                    output: self.output(),
                });
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the current run with `SIGKILL` (as a crash would: no unwinding, no `Drop`) and
    /// reaps it, so its pid is gone when this returns. Does nothing when it already exited.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Kills the current run if it still runs, starts the scenario again in a fresh process and
    /// waits for its readiness line.
    ///
    /// # Panics
    /// As [`ChildBuilder::start`]; see [`ChildProcess::try_restart`] for the error instead.
    pub fn restart(&mut self) {
        self.try_restart().unwrap_or_else(|e| panic!("{e}"));
    }

    /// [`ChildProcess::restart`], returning the error (with the new run's output) instead of
    /// panicking.
    pub fn try_restart(&mut self) -> Result<(), ChildError> {
        self.process.kill();
        self.process = self.config.spawn()?;
        self.runs += 1;
        self.wait_ready()
    }

    /// Waits for the configured readiness line; kills the run when it does not come.
    fn wait_ready(&mut self) -> Result<(), ChildError> {
        let Some(needle) = self.config.ready_line.clone() else {
            return Ok(());
        };
        let ready = self.wait_for_line(&needle, self.config.ready_timeout);
        if ready.is_err() {
            self.process.kill();
        }
        ready.map(drop)
    }

    fn line_error(&self, needle: &str, within: Duration, reason: &LineWait) -> ChildError {
        let reason = match reason {
            LineWait::TimedOut => Reason::TimedOut {
                needle: needle.to_owned(),
                within,
            },
            LineWait::Closed => Reason::Exited {
                needle: needle.to_owned(),
            },
        };
        ChildError {
            scenario: self.config.scenario.clone(),
            reason,
            output: self.output(),
        }
    }
}

/// Why a [`ChildProcess`] did not start, print a line or exit as asked. Its `Display` names the
/// scenario and holds the child's output so far.
#[derive(Debug)]
pub struct ChildError {
    scenario: String,
    reason: Reason,
    output: String,
}

#[derive(Debug)]
enum Reason {
    Spawn(String),
    TimedOut { needle: String, within: Duration },
    Exited { needle: String },
    StillRunning { within: Duration },
}

impl ChildError {
    fn spawn(scenario: &str, message: String) -> Self {
        ChildError {
            scenario: scenario.to_owned(),
            reason: Reason::Spawn(message),
            output: String::new(),
        }
    }

    /// The scenario's name.
    pub fn scenario(&self) -> &str {
        &self.scenario
    }

    /// What the child printed until the error.
    pub fn output(&self) -> &str {
        &self.output
    }

    /// Whether the child was still running when the wait gave up (as opposed to having exited
    /// or never started).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.reason,
            Reason::TimedOut { .. } | Reason::StillRunning { .. }
        )
    }
}

impl fmt::Display for ChildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scenario = &self.scenario;
        match &self.reason {
            Reason::Spawn(message) => {
                return write!(f, "child scenario `{scenario}` did not start: {message}");
            }
            Reason::TimedOut { needle, within } => write!(
                f,
                "child scenario `{scenario}` printed no line containing `{needle}` within \
                 {within:?}"
            )?,
            Reason::Exited { needle } => write!(
                f,
                "child scenario `{scenario}` exited without printing a line containing \
                 `{needle}`"
            )?,
            Reason::StillRunning { within } => write!(
                f,
                "child scenario `{scenario}` was still running after {within:?}"
            )?,
        }
        if self.output.contains("running 0 tests") {
            write!(
                f,
                " (this test binary has no test named exactly `{scenario}`: the scenario is a \
                 test function, named by its path such as `module::name`)"
            )?;
        }
        write!(f, "; its output so far:\n{}", self.output)
    }
}

impl std::error::Error for ChildError {}
