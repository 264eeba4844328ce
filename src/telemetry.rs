//! Logs (tracing, to stderr), progress bars for long steps, and the process-memory helpers
//! the load steps log and call between tables (peak resident memory, returning freed memory).
//!
//! `C360_LOG` (or `RUST_LOG`) sets the filter, e.g. `C360_LOG=c360=debug`. Progress bars
//! draw only on a terminal, so scripts and CI logs stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Starts logging at `default_level` unless the environment says otherwise.
pub fn init(default_level: &str) {
    let filter = std::env::var("C360_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| format!("c360={default_level},warn,aws_config=error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// Set by `-q`: no progress bars even on a terminal.
static NO_PROGRESS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Hides every progress bar from now on (`-q`).
pub fn hide_progress() {
    NO_PROGRESS.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn visible() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("C360_NO_PROGRESS").is_none()
        && !NO_PROGRESS.load(std::sync::atomic::Ordering::Relaxed)
}

/// A bar over `len` units (hidden when stderr is not a terminal).
pub fn bar(len: u64, message: &str, unit: &str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{{spinner}} {{msg:<28}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, eta {{eta}})"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(message.to_string());
    pb
}

/// A spinner for a step of unknown length.
pub fn spinner(message: &str) -> ProgressBar {
    if !visible() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(message.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// The process's peak resident memory so far, in MB (Linux; 0 elsewhere), for debug logs.
pub fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb / 1024)
        .unwrap_or(0)
}

/// Hands the allocator's free memory back to the system when there is much of it (glibc
/// keeps what a big step freed, fragmented, and the next step's allocations then add to
/// it). Called between the load steps.
///
/// Only when the free memory inside the allocator is at least [`TRIM_FREE_BYTES`]: trimming
/// returns pages the next step then faults back in (measured at 1M customers: a two-set build
/// spent 0.45 s more in the kernel with a trim at every step, 1.2 s instead of 0.75 s, to keep
/// its peak 200 MB lower), which pays only where the held memory would matter (10M customers
/// and more, where a step frees gigabytes).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        /// glibc's `struct mallinfo2` (glibc 2.33+): all fields `size_t`.
        #[repr(C)]
        struct MallInfo2 {
            arena: usize,
            ordblks: usize,
            smblks: usize,
            hblks: usize,
            hblkhd: usize,
            usmblks: usize,
            fsmblks: usize,
            uordblks: usize,
            fordblks: usize,
            keepcost: usize,
        }
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
            fn mallinfo2() -> MallInfo2;
        }
        // SAFETY: mallinfo2 only reads the allocator's counters; malloc_trim only returns
        // free pages to the system.
        unsafe {
            let free = mallinfo2().fordblks;
            if free >= TRIM_FREE_BYTES {
                malloc_trim(0);
            }
        }
    }
}

/// The allocator's free bytes from which [`release_free_memory`] trims: 1 GiB.
pub const TRIM_FREE_BYTES: usize = 1 << 30;
