//! The NATS server with JetStream that runs beside the local control plane.
//!
//! Built from its Go module (`github.com/nats-io/nats-server/v2`) once per pinned version, the way
//! [`crate::helm`] builds helm: a generated wrapper module in `$CACHE/nats-server-<version>/src`
//! (its tools.go embedded from `e2e/gomod/nats-server/`), the binary in
//! `$CACHE/nats-server-<version>/bin/nats-server`, filled by the rename of a finished build and
//! rebuilt when its recipe (`bin/.recipe`) changes. [`crate::gobuild::ensure_built`] builds it with
//! the control plane, so the first `lmi-dev up` on a fresh machine builds it too.
//!
//! `lmi-dev up` starts one server for the cluster on [`ports::NATS_CLIENT`] (tests reach it through
//! [`url`]). Fault tests start their own throw-away servers with [`start_throwaway`] or
//! [`Server::start`], which they can stop, kill and start again on the same store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tracing::info;

use crate::cluster::ports;
use crate::error::{Error, Result};
use crate::paths::Paths;
use crate::{gobuild, health, logs, process, versions};

/// The component name: pid file, log file (`nats-server.log`, `build-nats-server.log`), binary.
pub const COMPONENT: &str = "nats-server";

/// The environment variable `lmi-dev env` exports with the cluster's server URL.
pub const URL_ENV: &str = "LMI_NATS_URL";

/// The name (`-n`) of the cluster's server.
pub const SERVER_NAME: &str = "lmi-local";

const MODULE: &str = "github.com/nats-io/nats-server/v2";

/// The module root is the `main` package; `go build` names its binary `nats-server` (the path's
/// last element before the `/v2` major-version suffix).
const PACKAGE: &str = MODULE;

const TOOLS_GO: &str = include_str!("../gomod/nats-server/tools.go");

const LDFLAGS: &str = "-s -w";

/// A cold build on this project's 2-core machine, measured for v2.15.2 with empty Go module and
/// build caches: 57 s through `lmi-dev build`, 65 s by hand (`go mod tidy` with its downloads 3 s,
/// `go build` 62 s), 143 s while other builds shared the two cores. A 17 MB binary.
pub(crate) const TYPICAL_BUILD: Duration = Duration::from_secs(90);

/// How long a server may take to answer its JetStream health check.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

/// `nats://127.0.0.1:<port>` of the server `lmi-dev up` starts.
pub fn local_url() -> String {
    format!("nats://127.0.0.1:{}", ports::NATS_CLIENT)
}

/// The server tests use: [`URL_ENV`] when set and non-empty (as `lmi-dev env` exports it, or
/// another server's), else the local cluster's ([`local_url`]).
pub fn url() -> String {
    std::env::var(URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(local_url)
}

/// Where the binary is (or will be) for the pinned version.
pub fn server_binary(paths: &Paths) -> PathBuf {
    paths.nats_server_dir().join("bin").join(COMPONENT)
}

/// The command line of a server with JetStream on file storage in `store_dir`, client port `port`
/// and monitoring (`/healthz`, `/jsz`) on `monitor_port`, both on loopback only.
pub fn server_args(port: u16, monitor_port: u16, store_dir: &Path, name: &str) -> Vec<String> {
    vec![
        "-c".into(),
        config_file(store_dir).display().to_string(),
        "-js".into(),
        "-sd".into(),
        store_dir.display().to_string(),
        "-a".into(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
        // The monitoring listener binds the `-a` address too (nats-server's default).
        "-m".into(),
        monitor_port.to_string(),
        "-n".into(),
        name.into(),
    ]
}

/// The settings no flag carries, read with `-c` (see [`write_config`]).
pub fn config_file(store_dir: &Path) -> std::path::PathBuf {
    store_dir.join("nats-server.conf")
}

/// Writes the server's config file into its store directory: a 1 MiB event payload plus its
/// headers must fit one message, and nats-server's default `max_payload` is exactly 1 MiB.
pub fn write_config(store_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(store_dir).map_err(Error::io("creating", store_dir))?;
    let file = config_file(store_dir);
    std::fs::write(&file, "max_payload: 2MB\n").map_err(Error::io("writing", &file))
}

/// One attempt: 200 from `/healthz?js-enabled-only=true`, i.e. the server serves and JetStream is
/// enabled (its store opened).
pub async fn healthy(monitor_port: u16) -> Result<()> {
    health::http_ok(monitor_port, "/healthz?js-enabled-only=true").await
}

/// One attempt: `/jsz` reports JetStream enabled, with a store directory; returns that directory.
pub async fn jetstream_store_dir(monitor_port: u16) -> Result<String> {
    let body = health::http_get(monitor_port, "/jsz").await?;
    let jsz: serde_json::Value = serde_json::from_str(&body)?;
    if jsz.get("disabled").and_then(|d| d.as_bool()) == Some(true) {
        return Err(Error::Other(format!(
            "/jsz on port {monitor_port}: JetStream disabled"
        )));
    }
    jsz.pointer("/config/store_dir")
        .and_then(|d| d.as_str())
        .filter(|d| !d.is_empty())
        .map(str::to_string)
        .ok_or_else(|| Error::Other(format!("/jsz on port {monitor_port}: no store_dir: {body}")))
}

/// A free loopback port, for a throw-away server. (Another process may take it before the server
/// binds it; good enough for tests, not for the cluster's fixed ports.)
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Error::Other(format!("finding a free loopback port: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::Other(format!("finding a free loopback port: {e}")))?
        .port();
    Ok(port)
}

// ---- the build ----

fn recipe() -> String {
    format!(
        "nats-server={} go={}\nldflags={LDFLAGS}\npackages={PACKAGE}\n--- tools.go\n{TOOLS_GO}\n",
        versions::NATS_SERVER,
        versions::GO_DIRECTIVE,
    )
}

fn go_mod() -> String {
    format!(
        "module lmi.dev/e2e/nats-server\n\ngo {}\n\nrequire {MODULE} v{}\n",
        versions::GO_DIRECTIVE,
        versions::NATS_SERVER
    )
}

/// Whether the cache holds the pinned version, built with the current recipe.
pub fn is_built(paths: &Paths) -> bool {
    let bin = paths.nats_server_dir().join("bin");
    bin.join(COMPONENT).is_file()
        && std::fs::read_to_string(bin.join(gobuild::RECIPE_FILE)).is_ok_and(|r| r == recipe())
}

/// Builds the server unless the cache already holds the pinned version (one to two minutes the
/// first time, then nothing) and returns the binary. Concurrent callers (`up` and a test
/// binary) wait on a lock file instead of building twice.
pub async fn ensure_built(paths: &Paths) -> Result<PathBuf> {
    ensure_built_as(paths, "").await
}

/// [`ensure_built`], its progress line saying `position` ("4/4, ") when it is one step of
/// [`gobuild::ensure_built`].
pub(crate) async fn ensure_built_as(paths: &Paths, position: &str) -> Result<PathBuf> {
    let binary = server_binary(paths);
    if is_built(paths) {
        return Ok(binary);
    }
    let dir = paths.nats_server_dir();
    std::fs::create_dir_all(&dir).map_err(Error::io("creating", &dir))?;
    let lock_path = dir.join("lock");
    let lock = std::fs::File::create(&lock_path).map_err(Error::io("creating", &lock_path))?;
    let lock = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
        .await
        .map_err(|e| Error::Other(format!("waiting for the nats-server build lock: {e}")))?
        .map_err(Error::io("locking", &lock_path))?;
    if !is_built(paths) {
        gobuild::check_go().await?;
        let log_dir = paths.log_dir();
        std::fs::create_dir_all(&log_dir).map_err(Error::io("creating", &log_dir))?;
        let log = log_dir.join(format!("build-{COMPONENT}.log"));
        let started = Instant::now();
        info!(
            component = COMPONENT,
            log = %log.display(),
            version = versions::NATS_SERVER,
            "building {COMPONENT} ({position}usually about {} min)",
            TYPICAL_BUILD.as_secs().div_ceil(60)
        );
        let step = format!("building {COMPONENT}");
        crate::progress::heartbeat(&step, Some(TYPICAL_BUILD), build(&dir, &log)).await?;
        info!(
            component = COMPONENT,
            seconds = started.elapsed().as_secs(),
            "built"
        );
    }
    drop(lock);
    Ok(binary)
}

async fn build(dir: &Path, log: &Path) -> Result<()> {
    let tool = gobuild::ToolBuild {
        name: COMPONENT,
        binary: COMPONENT,
        tools_go: TOOLS_GO,
        go_mod: go_mod(),
        ldflags: LDFLAGS.to_string(),
        package: PACKAGE.to_string(),
        tags: "",
        recipe: recipe(),
    };
    gobuild::build_tool(&tool, dir, log).await
}

// ---- throw-away servers for tests ----

/// What a throw-away server runs with.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub port: u16,
    pub monitor_port: u16,
    pub store_dir: PathBuf,
    pub name: String,
    /// stdout and stderr; emptied by [`Server::start`], appended to by [`Server::restart`], so a
    /// fault test's log tells the whole story.
    pub log: PathBuf,
}

impl ServerOptions {
    /// A server named `lmi-test-<port>` logging to `<log dir>/nats-server-<port>.log`.
    pub fn new(paths: &Paths, port: u16, monitor_port: u16, store_dir: impl Into<PathBuf>) -> Self {
        ServerOptions {
            port,
            monitor_port,
            store_dir: store_dir.into(),
            name: format!("lmi-test-{port}"),
            log: paths.log_dir().join(format!("{COMPONENT}-{port}.log")),
        }
    }
}

/// A throw-away nats-server owned by a test: SIGKILLed on drop if still running. Unlike the
/// cluster's it stays in the test's process group, so a Ctrl-C on the test ends it too.
#[derive(Debug)]
pub struct Server {
    binary: PathBuf,
    options: ServerOptions,
    child: Option<Child>,
}

/// Builds the server if needed ([`ensure_built`]) and starts a throw-away one on `port`, its
/// monitoring on `monitor_port`, JetStream storing in `store_dir`; returns once it is healthy.
pub async fn start_throwaway(
    paths: &Paths,
    port: u16,
    monitor_port: u16,
    store_dir: impl Into<PathBuf>,
) -> Result<Server> {
    let binary = ensure_built(paths).await?;
    let options = ServerOptions::new(paths, port, monitor_port, store_dir);
    Server::start(&binary, options).await
}

impl Server {
    /// Starts `binary` with `options` and waits until JetStream is healthy.
    pub async fn start(binary: &Path, options: ServerOptions) -> Result<Server> {
        if let Some(dir) = options.log.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
        }
        logs::truncate(&options.log)?;
        let mut server = Server {
            binary: binary.to_path_buf(),
            options,
            child: None,
        };
        server.spawn_and_wait().await?;
        Ok(server)
    }

    /// Starts the server again with the same options (the same store, so JetStream recovers its
    /// streams), after stopping it if it still runs.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await?;
        self.spawn_and_wait().await
    }

    /// A graceful stop (SIGTERM: JetStream flushes its store), SIGKILL after 10 s.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        process::signal(child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().map_err(self.io_error())?.is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child.kill().map_err(self.io_error())?;
        child.wait().map_err(self.io_error())?;
        Ok(())
    }

    /// A crash: SIGKILL, no chance to flush.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().map_err(self.io_error())?;
            child.wait().map_err(self.io_error())?;
        }
        Ok(())
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.options.port)
    }

    pub fn options(&self) -> &ServerOptions {
        &self.options
    }

    /// The pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        let o = &self.options;
        write_config(&o.store_dir)?;
        let args = server_args(o.port, o.monitor_port, &o.store_dir, &o.name);
        logs::append_line(
            &o.log,
            &format!("$ {} {}", self.binary.display(), args.join(" ")),
        )?;
        let child = Command::new(&self.binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(logs::append(&o.log)?)
            .stderr(logs::append(&o.log)?)
            .spawn()
            .map_err(|e| self.failed(format!("could not start {}: {e}", self.binary.display())))?;
        self.child = Some(child);
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().map_err(self.io_error())?
            {
                self.child = None;
                return Err(self.failed(format!("exited during start-up ({status})")));
            }
            let last_error = match healthy(self.options.monitor_port).await {
                Ok(()) => return Ok(()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(self.failed(format!(
                    "not healthy after {}s (last check: {last_error})",
                    HEALTH_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn failed(&self, message: String) -> Error {
        Error::Component {
            component: format!("{COMPONENT} on port {}", self.options.port),
            message,
            log: self.options.log.clone(),
            tail: logs::tail(&self.options.log, 30),
        }
    }

    fn io_error(&self) -> impl FnOnce(std::io::Error) -> Error + use<> {
        let component = format!("{COMPONENT} on port {}", self.options.port);
        move |e| Error::Other(format!("{component}: {e}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Best effort: a test that fails half-way must not leave a server behind.
        let _ = self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_enables_jetstream_on_loopback() {
        let args = server_args(14222, 18222, Path::new("/tmp/store"), SERVER_NAME);
        assert_eq!(
            args.join(" "),
            "-c /tmp/store/nats-server.conf -js -sd /tmp/store -a 127.0.0.1 -p 14222 -m 18222 -n lmi-local"
        );
        assert!(
            go_mod().contains(&format!("require {MODULE} v{}", versions::NATS_SERVER)),
            "{}",
            go_mod()
        );
        assert!(recipe().contains(&format!("nats-server={}", versions::NATS_SERVER)));
    }

    #[test]
    fn the_url_is_the_local_clusters_unless_the_environment_names_another() {
        assert_eq!(
            local_url(),
            format!("nats://127.0.0.1:{}", ports::NATS_CLIENT)
        );
        if std::env::var_os(URL_ENV).is_none() {
            assert_eq!(url(), local_url());
        }
    }

    /// Builds the server when it is not built yet (one to two minutes cold, once per pinned version;
    /// `lmi-dev up` and `lmi-dev build` build it too), then starts a throw-away one on free ports
    /// with a temporary store, checks JetStream, restarts it on the same store and stops it.
    /// Ignored so that a plain `cargo test` never starts a Go build unexpectedly: run it with
    /// `cargo test -p lmi-e2e --lib nats -- --ignored`.
    #[tokio::test]
    #[ignore = "builds nats-server when the cache has none (one to two minutes)"]
    async fn a_throwaway_server_serves_jetstream_and_restarts_on_its_store() -> Result<()> {
        let paths = Paths::from_env();
        let store = std::env::temp_dir().join(format!("lmi-nats-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&store);
        let (port, monitor) = (free_port()?, free_port()?);
        let mut server = start_throwaway(&paths, port, monitor, &store).await?;
        healthy(monitor).await?;
        let store_dir = jetstream_store_dir(monitor).await?;
        assert!(
            store_dir.starts_with(&store.display().to_string()),
            "{store_dir}"
        );
        assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));

        let first = server.pid();
        server.restart().await?;
        assert_ne!(server.pid(), first, "a new process");
        healthy(monitor).await?;

        server.kill()?;
        assert!(healthy(monitor).await.is_err(), "gone after kill");
        server.restart().await?;
        jetstream_store_dir(monitor).await?;
        server.stop().await?;
        assert!(server.pid().is_none());
        assert!(healthy(monitor).await.is_err(), "gone after stop");
        let _ = std::fs::remove_dir_all(&store);
        Ok(())
    }
}
