//! Giving freed heap memory back to the operating system.
//!
//! glibc's allocator keeps memory it has handed out and got back: a freed block returns to its arena's free lists,
//! and only the free space at the very top of the main heap goes back to the system on its own. After a burst of
//! large requests (3 MiB bodies parsed into JSON documents many times that size, spread over one arena per thread)
//! the process keeps its peak size, though nearly all of it is free. `malloc_trim(0)` walks every arena and returns
//! each whole free page to the kernel (`MADV_DONTNEED`), so the resident set falls back to what is in use.
//!
//! This crate is the one place in the workspace with `unsafe` code: a single call of a C function that takes an
//! integer and touches no Rust memory. On other platforms (musl, macOS, Windows) [`release_free_memory`] does
//! nothing.

/// Whether [`release_free_memory`] can give memory back on this platform (Linux with glibc).
pub const SUPPORTED: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

/// Return the allocator's free memory to the operating system, as far as the platform allows. Returns whether any
/// memory was released (always `false` where [`SUPPORTED`] is false).
///
/// It takes each arena's lock in turn, so it briefly holds up allocations on other threads: call it off the request
/// path, after a burst rather than after every request.
pub fn release_free_memory() -> bool {
    imp::release()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
mod imp {
    pub fn release() -> bool {
        // SAFETY: malloc_trim only inspects and releases the allocator's own free memory; it takes a plain integer
        // (the padding to keep at the top of the heap), reads no pointer of ours, and is thread-safe (it locks each
        // arena while trimming it).
        unsafe { libc::malloc_trim(0) == 1 }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod imp {
    pub fn release() -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releasing_is_safe_to_call_any_time_and_from_any_thread() {
        let blocks: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 256 * 1024]).collect();
        drop(blocks);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..8 {
                        release_free_memory();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        if !SUPPORTED {
            assert!(!release_free_memory());
        }
    }
}
