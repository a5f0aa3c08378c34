//! The crate's only unsafe code: one call into glibc that no safe wrapper offers (the `libc`
//! crate declares it as an `unsafe extern` function, and no maintained crate wraps it safely).
//! The crate denies unsafe code everywhere else (`lib.rs`).
#![allow(unsafe_code)]

/// glibc's `malloc_trim(0)`: gives back to the system every whole page of freed heap memory, also
/// those below live allocations (malloc itself returns only the top of the heap). True when it
/// released something. Elsewhere than glibc it does nothing: the crate's images are glibc
/// (distroless cc), and other allocators return memory their own way.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn malloc_trim() -> bool {
    // SAFETY: malloc_trim takes no pointer and has no precondition; glibc locks each arena while
    // it trims it, so other threads may allocate meanwhile.
    unsafe { libc::malloc_trim(0) != 0 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn malloc_trim() -> bool {
    false
}
