//! What the benchmark programs share: their child processes and free ports.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::process::{Child, Command};
use std::sync::Mutex;
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

/// A port nothing listens on now (bound and dropped; the child binds it a moment later), and
/// never one handed out before in this process: tests run in parallel threads, and the kernel
/// may give the same ephemeral port to two of them in a row, so that one test's router would
/// reach the other test's sidecar.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..1_000 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(0);
        if port != 0 && given.insert(port) {
            return port;
        }
    }
    0
}
