//! Starting and stopping the component processes, tracked by pid files.
//!
//! A pid file holds the pid and the binary path. `down` signals a pid only when
//! `/proc/<pid>/cmdline` still starts with that binary, so a recycled pid is never killed.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::logs;

/// A process that `up` started.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub component: String,
    pub pid: u32,
    pub binary: PathBuf,
}

fn pid_file(pid_dir: &Path, component: &str) -> PathBuf {
    pid_dir.join(format!("{component}.pid"))
}

/// Starts `binary` detached from our terminal (own process group, so a Ctrl-C on lmi-dev does not
/// reach it), with stdout and stderr appended to `log`, and records its pid.
pub fn spawn(
    component: &str,
    binary: &Path,
    args: &[String],
    log: &Path,
    pid_dir: &Path,
) -> Result<Tracked> {
    spawn_with_env(component, binary, args, &[], log, pid_dir)
}

/// [`spawn`], with `env` added to the inherited environment.
pub fn spawn_with_env(
    component: &str,
    binary: &Path,
    args: &[String],
    env: &[(String, String)],
    log: &Path,
    pid_dir: &Path,
) -> Result<Tracked> {
    std::fs::create_dir_all(pid_dir).map_err(Error::io("creating", pid_dir))?;
    logs::truncate(log)?;
    logs::append_line(log, &format!("$ {} {}", binary.display(), args.join(" ")))?;
    let child = Command::new(binary)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(logs::append(log)?)
        .stderr(logs::append(log)?)
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Component {
            component: component.to_string(),
            message: format!("could not start {}: {e}", binary.display()),
            log: log.to_path_buf(),
            tail: logs::tail(log, 20),
        })?;
    let tracked = Tracked {
        component: component.to_string(),
        pid: child.id(),
        binary: binary.to_path_buf(),
    };
    let path = pid_file(pid_dir, component);
    std::fs::write(&path, format!("{}\n{}\n", tracked.pid, binary.display()))
        .map_err(Error::io("writing", &path))?;
    // The child is deliberately not waited for: it outlives this process. When we exit it is
    // re-parented and reaped by init.
    drop(child);
    Ok(tracked)
}

/// The process recorded for `component`, if its pid file exists.
pub fn tracked(pid_dir: &Path, component: &str) -> Option<Tracked> {
    let text = std::fs::read_to_string(pid_file(pid_dir, component)).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok()?;
    let binary = PathBuf::from(lines.next()?.trim());
    Some(Tracked {
        component: component.to_string(),
        pid,
        binary,
    })
}

impl Tracked {
    /// Whether the process still runs and is still the binary we started (not a recycled pid,
    /// not a zombie).
    pub fn is_running(&self) -> bool {
        let proc_dir = PathBuf::from(format!("/proc/{}", self.pid));
        // /proc/<pid>/exe names the executable even while a fresh process still has an empty
        // cmdline (seen right after exec of a large binary); " (deleted)" when it was rebuilt since.
        // The link is the canonical path (`/bin/sleep` shows as `/usr/bin/sleep`).
        let binary = std::fs::canonicalize(&self.binary).unwrap_or_else(|_| self.binary.clone());
        let exe_matches = std::fs::read_link(proc_dir.join("exe")).is_ok_and(|exe| {
            exe == binary
                || exe == self.binary
                || exe.as_os_str().as_encoded_bytes()
                    == format!("{} (deleted)", binary.display()).as_bytes()
        });
        let argv0_matches = std::fs::read(proc_dir.join("cmdline")).is_ok_and(|cmdline| {
            cmdline.split(|b| *b == 0).next() == Some(self.binary.as_os_str().as_encoded_bytes())
        });
        if !exe_matches && !argv0_matches {
            return false;
        }
        // Field 3 of /proc/<pid>/stat is the state; `Z` is a zombie that only waits to be reaped.
        let stat = std::fs::read_to_string(proc_dir.join("stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        !matches!(state, Some("Z") | Some("X"))
    }

    /// SIGTERM, then SIGKILL after `grace`; returns once the process is gone.
    pub async fn stop(&self, grace: Duration) {
        if !self.is_running() {
            return;
        }
        debug!(component = %self.component, pid = self.pid, "stopping");
        signal(self.pid, "TERM");
        if self.wait_gone(grace).await {
            return;
        }
        warn!(component = %self.component, pid = self.pid, "did not stop on SIGTERM, killing");
        signal(self.pid, "KILL");
        if !self.wait_gone(Duration::from_secs(10)).await {
            warn!(component = %self.component, pid = self.pid, "still running after SIGKILL");
        }
    }

    async fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if !self.is_running() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        !self.is_running()
    }
}

/// Sends a signal with the `kill` command: std has no kill(2) for processes that are not our
/// children, and unsafe code (libc) is forbidden in this workspace.
pub(crate) fn signal(pid: u32, name: &str) {
    let result = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Err(e) = result {
        warn!(pid, "could not run kill: {e}");
    }
}

pub fn remove_pid_file(pid_dir: &Path, component: &str) {
    let _ = std::fs::remove_file(pid_file(pid_dir, component));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spawned_process_is_running_until_stopped() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("lmi-process-test-{}", std::process::id()));
        let sleep = Path::new("/bin/sleep");
        // Many rounds: the check right after spawn once lost a race with exec.
        for _ in 0..200 {
            let tracked = spawn(
                "sleeper",
                sleep,
                &["30".into()],
                &dir.join("sleep.log"),
                &dir,
            )?;
            assert!(tracked.is_running(), "running right after spawn");
            let again =
                super::tracked(&dir, "sleeper").ok_or(Error::Other("no pid file".into()))?;
            assert_eq!(again.pid, tracked.pid);
            tracked.stop(Duration::from_secs(5)).await;
            assert!(!tracked.is_running(), "gone after stop");
        }
        let _ = std::fs::remove_dir_all(&dir);
        Ok(())
    }
}
