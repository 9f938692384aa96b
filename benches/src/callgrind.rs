//! `--callgrind FILE`: client-side instructions per operation of every side, for ratios that sit
//! in this VM's noise (instruction counts repeat from run to run; wall times here do not).
//!
//! Run the program under callgrind with the same file for its output:
//!
//! ```text
//! valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.out \
//!     target/release/redisx-bench locks --quick --only locks.acquire_release --callgrind /tmp/cg.out
//! ```
//!
//! Around every measured round, [`interval`] asks callgrind (`callgrind_control -d`) to dump and
//! reset its counters, and reads the instructions of the dump (`FILE.<n>`, removed once read).
//! A round's count covers the whole process while that side ran: its tasks, the runtime, the
//! connection's driver. The server is a child process that callgrind does not follow, so its
//! work is not counted. The wall times printed beside the counts are callgrind's, not real ones.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The `--callgrind-out-file` this process runs under, once `--callgrind` gave it.
static OUT_FILE: OnceLock<PathBuf> = OnceLock::new();

/// Turns the counts on for this run: `out_file` is callgrind's `--callgrind-out-file`.
pub(crate) fn enable(out_file: PathBuf) {
    let _ = OUT_FILE.set(out_file);
}

/// Whether `--callgrind` was given.
pub(crate) fn enabled() -> bool {
    OUT_FILE.get().is_some()
}

/// The instructions this process ran since the previous call (or since it started), and resets
/// the count. Panics when callgrind cannot be asked or its dump cannot be read: a count that
/// silently went missing would make a comparison meaningless.
pub(crate) fn interval() -> u64 {
    let out_file = OUT_FILE
        .get()
        .expect("callgrind::interval is only called with --callgrind");
    let status = Command::new("callgrind_control")
        .args(["--dump=round", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("cannot run `callgrind_control` (valgrind's): {e}"));
    assert!(
        status.success(),
        "`callgrind_control -d` failed: is this process running under \
         `valgrind --tool=callgrind --callgrind-out-file=FILE`?"
    );
    let dump = newest_dump(out_file).unwrap_or_else(|| {
        panic!(
            "no callgrind dump `{}.<n>` was written: `--callgrind` must name the file given to \
             `--callgrind-out-file`",
            out_file.display()
        )
    });
    let text = std::fs::read_to_string(&dump)
        .unwrap_or_else(|e| panic!("cannot read the callgrind dump {}: {e}", dump.display()));
    let _ = std::fs::remove_file(&dump);
    instructions(&text).unwrap_or_else(|| {
        panic!(
            "the callgrind dump {} has no `summary:` line",
            dump.display()
        )
    })
}

/// The dump `out_file.<n>` with the largest `n`.
fn newest_dump(out_file: &Path) -> Option<PathBuf> {
    let dir = out_file.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let stem = format!("{}.", out_file.file_name()?.to_string_lossy());
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let n: u64 = name.strip_prefix(&stem)?.parse().ok()?;
            Some((n, entry.path()))
        })
        .max_by_key(|(n, _)| *n)
        .map(|(_, path)| path)
}

/// The instruction count of a callgrind dump: its `summary:` line (the first event, `Ir`).
fn instructions(dump: &str) -> Option<u64> {
    dump.lines()
        .find_map(|line| line.strip_prefix("summary:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dump_summary_reads_as_its_instruction_count() {
        let dump =
            "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\n\nsummary: 106225185\n\nfl=(1)\n";
        assert_eq!(instructions(dump), Some(106_225_185));
        assert_eq!(instructions("events: Ir\n"), None);
        assert_eq!(instructions("summary: many\n"), None);
    }

    #[test]
    fn the_newest_dump_is_the_largest_suffix() {
        let dir = std::env::temp_dir().join(format!("redisx-bench-cg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["cg.out.2", "cg.out.10", "cg.out.9", "cg.out.x", "other.11"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        assert_eq!(
            newest_dump(&dir.join("cg.out")),
            Some(dir.join("cg.out.10"))
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
