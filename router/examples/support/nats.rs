//! The nats-server the benchmark and the router's tests run: the one `lmi-dev` builds into its
//! cache (`LMI_NATS_SERVER` names another), with the settings no flag carries.

use std::path::{Path, PathBuf};

/// `LMI_NATS_SERVER`, else `<cache>/nats-server-*/bin/nats-server` (`LMI_CACHE_DIR`, else
/// `~/.cache/lmi`).
pub fn nats_server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LMI_NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("LMI_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/lmi")
        });
    std::fs::read_dir(cache)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("nats-server-"))
        .map(|e| e.path().join("bin/nats-server"))
        .find(|p| p.is_file())
}

/// The arguments of a server with JetStream on `port` and its store in `store`, after writing
/// its config file there: a 1 MiB event plus its headers is more than nats-server's default
/// `max_payload` of 1 MiB.
pub fn nats_server_args(port: u16, store: &Path) -> std::io::Result<Vec<String>> {
    std::fs::create_dir_all(store)?;
    let config = store.join("nats-server.conf");
    std::fs::write(&config, "max_payload: 2MB\n")?;
    Ok(vec![
        "-c".to_string(),
        config.display().to_string(),
        "-js".to_string(),
        "-sd".to_string(),
        store.display().to_string(),
        "-a".to_string(),
        "127.0.0.1".to_string(),
        "-p".to_string(),
        port.to_string(),
    ])
}
