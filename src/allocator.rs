//! How the process allocates: set once in `main`, before any model loads.

/// Keeps freed memory in the process for the next allocation.
///
/// Every layer of a 512-token prefill allocates activations of several
/// megabytes and frees them; glibc hands blocks that large back to the
/// kernel, which must zero fresh pages for the next layer: 10% of a
/// Qwen3-1.7B prefill went to that. Blocks up to glibc's largest threshold
/// (32 MiB) now come from the heap, and the heap is not trimmed. Peak
/// memory stays what the model needs at once.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator settings; nothing allocates
    // concurrently this early in `main`.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
