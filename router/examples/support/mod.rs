//! What the benchmark programs share: their child processes and free ports.

use std::net::TcpListener;
use std::process::{Child, Command};
use std::time::Duration;

/// A child process (router, sidecar, function) that is stopped, SIGTERM then SIGKILL, when the
/// benchmark lets go of it, also when it fails half-way.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        std::thread::sleep(Duration::from_millis(300));
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on now (bound and dropped; the child binds it a moment later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
