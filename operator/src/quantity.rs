//! Kubernetes resource quantities, as far as nodes and pods use them: CPU in millicores and
//! memory in MiB.

/// CPU in millicores: `2`, `1.5`, `3920m`. None when unreadable.
pub fn cpu_millis(q: &str) -> Option<u64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse().ok();
    }
    let cores: f64 = q.parse().ok()?;
    (cores >= 0.0).then(|| (cores * 1000.0).round() as u64)
}

/// Memory in MiB (rounded down): `8192Mi`, `16279028Ki`, `7Gi`, `4G`, `1048576`.
pub fn memory_mib(q: &str) -> Option<u64> {
    let q = q.trim();
    const UNITS: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (number, factor) = UNITS
        .iter()
        .find_map(|(suffix, f)| q.strip_suffix(suffix).map(|n| (n, *f)))
        .unwrap_or((q, 1.0));
    let value: f64 = number.parse().ok()?;
    (value >= 0.0).then(|| (value * factor / 1048576.0).floor() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities() {
        assert_eq!(cpu_millis("2"), Some(2000));
        assert_eq!(cpu_millis("1.5"), Some(1500));
        assert_eq!(cpu_millis("3920m"), Some(3920));
        assert_eq!(cpu_millis("x"), None);
    }

    #[test]
    fn memory_quantities() {
        assert_eq!(memory_mib("8192Mi"), Some(8192));
        assert_eq!(memory_mib("7Gi"), Some(7168));
        assert_eq!(memory_mib("16279028Ki"), Some(15897));
        assert_eq!(memory_mib("1048576"), Some(1));
        assert_eq!(memory_mib("4G"), Some(3814));
        assert_eq!(memory_mib("lots"), None);
    }
}
