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
