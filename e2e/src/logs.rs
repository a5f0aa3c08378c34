//! Log files of the components and builds: one folder, one file each.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Empties (or creates) a log file at the start of a run.
pub fn truncate(path: &Path) -> Result<()> {
    File::create(path).map_err(Error::io("creating log", path))?;
    Ok(())
}

/// An append handle, for a child's stdout or stderr.
pub fn append(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io("opening log", path))
}

pub fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut file = append(path)?;
    writeln!(file, "{line}").map_err(Error::io("writing log", path))
}

/// The last `lines` lines of a log, for error messages (empty when unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::from("(no log)");
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs `cmd` with its output appended to `log`; a failure names `component` and shows the
/// log's tail. (Every build step and package install of lmi-dev goes through here.)
pub async fn run_logged(
    component: &str,
    log: &Path,
    cmd: &mut tokio::process::Command,
) -> Result<()> {
    let std_cmd = cmd.as_std();
    let line = std::iter::once(std_cmd.get_program())
        .chain(std_cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    append_line(log, &format!("$ {line}"))?;
    let running = cmd
        .stdin(std::process::Stdio::null())
        .stdout(append(log)?)
        .stderr(append(log)?)
        .status();
    let status = crate::progress::heartbeat(&format!("running {component}"), None, running)
        .await
        .map_err(|e| build_failed(component, log, format!("could not run `{line}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(build_failed(
            component,
            log,
            format!("`{line}` exited with {status}"),
        ))
    }
}

/// A failed step of `component`, with the last lines of its log.
pub fn build_failed(component: &str, log: &Path, message: String) -> Error {
    Error::Build {
        component: component.to_string(),
        message,
        log: log.to_path_buf(),
        tail: tail(log, 40),
    }
}
