//! The process allocator: mimalloc, keeping freed memory for the next batch.

// Every candle op allocates its output. glibc hands large blocks back to the kernel on free, so each
// op of a batch paid page faults again (half the time of a 2048-token linear layer); mimalloc keeps
// them for reuse (`cargo bench -p tessera-flash --bench kernels`: 20.3 ms -> 10.8 ms).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in libmimalloc-sys 0.1.49's mimalloc 3.3 (`mi_option_t`, 16th entry);
/// the crate exports no constant for it. The test below fails if a new version moves it.
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Stops mimalloc from returning freed pages to the kernel (it does after 1 s by default).
///
/// Batches of different sizes reuse each other's memory only if it is still mapped; purged pages
/// fault in zeroed again, and `clear_page` was 3.7% of a loaded server's CPU time. Keeping them:
/// 4 clients x 32 mixed inputs on all-MiniLM-L6-v2 went from 98-100 to 104-108 embeddings/s
/// (four runs each, same binary, `MIMALLOC_PURGE_DELAY=-1` vs unset). The cost is that the
/// process keeps its peak, which `--max-batch-tokens` bounds. `MIMALLOC_PURGE_DELAY` in the
/// environment still decides when set.
pub(crate) fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_purge_delay_index_is_mimallocs() {
        // The documented default of purge_delay is 1000 ms; any other option at this index has
        // another default (or the test environment set MIMALLOC_PURGE_DELAY).
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            // SAFETY: reads one integer option.
            assert_eq!(unsafe { libmimalloc_sys::mi_option_get(PURGE_DELAY) }, 1000);
        }
    }
}
