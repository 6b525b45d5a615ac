//! The system's own binaries as child processes, for fault tests that kill real
//! processes (SIGKILL): a consumer that survives an aborted task can still stall when
//! its process dies mid-rebalance.

use std::{
    fs::{File, OpenOptions},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A workspace binary, built beside the test executables (`target/<profile>/`).
pub fn binary(name: &str) -> PathBuf {
    let test_executable = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = test_executable.parent().and_then(Path::parent).expect("target/<profile>");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built; `cargo build --workspace --bins` (scripts/test does) builds it",
        path.display()
    );
    path
}

/// A running child process; killed (SIGKILL) when dropped.
pub struct Process {
    name: String,
    child: Child,
}

impl Process {
    /// Starts the workspace binary `name` with `env` on top of this process's
    /// environment (and `SNAPSHOT_EVERY` at the tests' value unless `env` sets it);
    /// its stdout and stderr are appended to `log`.
    pub fn start(name: &str, env: &[(&str, String)], log: &Path) -> Self {
        Self::start_with_args(name, &[], env, log)
    }

    /// [`Process::start`] with command-line arguments (a `vectis` subcommand).
    pub fn start_with_args(name: &str, args: &[&str], env: &[(&str, String)], log: &Path) -> Self {
        let output = || -> File { OpenOptions::new().create(true).append(true).open(log).expect("the process log") };
        let child = Command::new(binary(name))
            .args(args)
            .env("SNAPSHOT_EVERY", crate::store::TEST_SNAPSHOT_EVERY.to_string())
            .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
            .stdin(Stdio::null())
            .stdout(output())
            .stderr(output())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { name: name.to_string(), child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a crash or the OOM killer would: nothing runs on the way out.
    pub fn kill(mut self) {
        self.kill_now();
    }

    /// Whether it still runs (false: it exited by itself).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn kill_now(&mut self) {
        if let Err(error) = self.child.kill() {
            // Only an already exited process cannot be killed.
            assert!(!self.is_running(), "cannot kill {}: {error}", self.name);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// The last `lines` lines of a log, for a failure message.
pub fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A small deterministic generator (xorshift64*), so a failing schedule can be re-run
/// with `KILL_SEED`.
pub struct KillSchedule(u64);

impl KillSchedule {
    pub fn from_env() -> Self {
        let seed = std::env::var("KILL_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_2026_u64);
        println!("kill schedule seed {seed} (set KILL_SEED to replay it)");
        Self(seed.max(1))
    }

    /// A generator of its own, from another's draw.
    pub fn seeded(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn draw(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.draw() % (to - from))
    }
}
