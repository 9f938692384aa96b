//! Child processes: a named scenario of this binary runs in a child, signals readiness, dies of
//! `SIGKILL`, runs again on restart, never outlives its parent, and fails with its output.

use std::time::Duration;

use redisx::testing::{ChildProcess, READY_LINE, in_scenario, process_alive, signal_ready};

use crate::wait_dead;

/// The pid a scenario printed on its `PID <pid>` line.
fn printed_pid(child: &ChildProcess) -> u32 {
    let line = child.wait_for_line("PID ", Duration::from_secs(1)).unwrap();
    let (_, pid) = line.split_once("PID ").unwrap();
    pid.trim().parse().unwrap()
}

/// Prints its pid, signals readiness and sleeps until it is killed.
#[test]
#[ignore = "scenario: run in a child process by the tests of this module"]
fn sleeper() {
    if !in_scenario("children::sleeper") {
        return;
    }
    println!("PID {}", std::process::id());
    signal_ready();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_killed_child_is_gone_and_its_restart_runs_again() {
    let mut child = ChildProcess::scenario("children::sleeper").start();
    assert_eq!(child.name(), "children::sleeper");
    assert_eq!(child.runs(), 1);
    let pid = child.pid();
    // The child process is the test binary itself, not a shell around it.
    assert_eq!(printed_pid(&child), pid);
    assert!(child.output().contains(READY_LINE));
    assert!(child.is_running());

    child.kill();
    assert!(!process_alive(pid), "child {pid} survived SIGKILL");
    assert!(!child.is_running());

    child.restart();
    assert_eq!(child.runs(), 2);
    let second = child.pid();
    assert_ne!(second, pid);
    assert_eq!(printed_pid(&child), second);
    let output = child.output();
    assert_eq!(output.matches(READY_LINE).count(), 1, "{output}");
    assert!(!output.contains(&format!("PID {pid}\n")), "{output}");
    assert!(child.is_running());
}

#[test]
fn a_custom_ready_line() {
    let child = ChildProcess::scenario("children::sleeper")
        .ready_line("PID ")
        .start();
    assert_eq!(printed_pid(&child), child.pid());
}

#[test]
fn dropping_the_handle_kills_the_child() {
    let child = ChildProcess::scenario("children::sleeper").start();
    let pid = child.pid();
    drop(child);
    assert!(!process_alive(pid), "child {pid} survived its handle");
}

/// Starts `sleeper` as its own child, prints that grandchild's pid, then sleeps until killed.
#[test]
#[ignore = "scenario: run in a child process by a_killed_child_takes_its_children_along"]
fn grandparent() {
    if !in_scenario("children::grandparent") {
        return;
    }
    let grandchild = ChildProcess::scenario("children::sleeper").start();
    println!("GRANDCHILD {}", grandchild.pid());
    signal_ready();
    std::thread::sleep(Duration::from_secs(60));
    drop(grandchild);
}

#[test]
fn a_killed_child_takes_its_children_along() {
    let mut child = ChildProcess::scenario("children::grandparent").start();
    let line = child
        .wait_for_line("GRANDCHILD ", Duration::from_secs(1))
        .unwrap();
    let (_, grandchild) = line.split_once("GRANDCHILD ").unwrap();
    let grandchild: u32 = grandchild.trim().parse().unwrap();
    assert!(process_alive(grandchild));
    // SIGKILL: the child's handle of the grandchild is never dropped; its watchdog acts.
    child.kill();
    assert!(
        wait_dead(grandchild, Duration::from_secs(5)),
        "grandchild {grandchild} outlived its SIGKILLed parent"
    );
}

/// Prints a line, then never signals readiness.
#[test]
#[ignore = "scenario: run in a child process by a_missing_ready_line_fails_with_the_output_so_far"]
fn silent() {
    if !in_scenario("children::silent") {
        return;
    }
    println!("warming up, PID {}", std::process::id());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_missing_ready_line_fails_with_the_output_so_far() {
    let err = ChildProcess::scenario("children::silent")
        .ready_timeout(Duration::from_millis(500))
        .try_start()
        .unwrap_err();
    assert!(err.is_timeout());
    assert_eq!(err.scenario(), "children::silent");
    let message = err.to_string();
    assert!(message.contains("children::silent"), "{message}");
    assert!(message.contains(READY_LINE), "{message}");
    assert!(message.contains("warming up"), "{message}");
    // The child that never got ready was killed.
    let (_, pid) = err.output().split_once("PID ").unwrap();
    let pid: u32 = pid.trim().parse().unwrap();
    assert!(!process_alive(pid), "the unready child {pid} still runs");
}

/// Prints a line and ends.
#[test]
#[ignore = "scenario: run in a child process by a_child_that_exits_early_reports_its_output"]
fn quitter() {
    if !in_scenario("children::quitter") {
        return;
    }
    println!("giving up");
}

#[test]
fn a_child_that_exits_early_reports_its_output() {
    let err = ChildProcess::scenario("children::quitter")
        .try_start()
        .unwrap_err();
    assert!(!err.is_timeout());
    let message = err.to_string();
    assert!(message.contains("exited without printing"), "{message}");
    assert!(message.contains("giving up"), "{message}");

    // Run to its end on purpose, it succeeds and its output is kept.
    let mut child = ChildProcess::scenario("children::quitter")
        .no_ready_line()
        .start();
    let status = child.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{}", child.output());
    assert!(child.output().contains("giving up"));
}

#[test]
fn an_unknown_scenario_says_so() {
    let err = ChildProcess::scenario("children::no_such_scenario")
        .try_start()
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("no test named exactly `children::no_such_scenario`"),
        "{message}"
    );
}

#[test]
fn a_scenario_is_a_no_op_outside_its_child() {
    // What `cargo test -- --include-ignored` does to a scenario: it returns at once.
    assert!(!in_scenario("children::sleeper"));
    sleeper();
}
