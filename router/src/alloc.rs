//! The process allocator: mimalloc, keeping freed memory for the next batch.

// Every candle op allocates its output. glibc hands large blocks back to the kernel on free, so each
// op of a batch paid page faults again (half the time of a 2048-token linear layer); mimalloc keeps
// them for reuse (`cargo bench -p tessera-flash --bench kernels`: 20.3 ms -> 10.8 ms).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in libmimalloc-sys 0.1.49's mimalloc 3.3 (`mi_option_t`, 16th entry);
/// the crate exports no constant for it. The test below fails if a new version moves it.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed pages stay mapped before mimalloc returns them to the kernel (its default: 1 s).
const KEEP_FREED_MS: std::ffi::c_long = 10_000;

/// Makes mimalloc keep freed pages for [`KEEP_FREED_MS`] instead of 1 s.
///
/// Batches of different sizes reuse each other's memory only while it is still mapped; purged
/// pages fault in zeroed again, and `clear_page` was 3.7% of a loaded server's CPU time. 4 clients
/// x 32 mixed inputs on all-MiniLM-L6-v2, same binary, alternated: 1 s 114.0-114.4 emb/s with
/// peak RSS 374-428 MiB; 10 s 118.6-120.7 emb/s, 495-565 MiB; never 120.9-121.0 emb/s, 538-581 MiB.
/// 10 s gets the speed and still hands memory back once the server idles.
/// `MIMALLOC_PURGE_DELAY` in the environment still decides when set.
pub(crate) fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, KEEP_FREED_MS) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_freed_pages_for_ten_seconds() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads one integer option.
        let read = || unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) };
        // purge_delay's documented default is 1000 ms; another option at this index would have
        // another default, so this fails if a new mimalloc moves the enum.
        assert_eq!(read(), 1000);
        keep_freed_memory();
        assert_eq!(read(), KEEP_FREED_MS);
    }
}
