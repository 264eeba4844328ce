//! The `c360` binary: parse arguments, run, map the outcome to an exit code.

use clap::Parser;

fn main() {
    one_malloc_arena();
    quiet_broken_pipe();
    // Before parsing: clap reads some C360_* variables itself and would name only the flag.
    if let Err(f) = c360::cli::env_vars::check() {
        eprintln!("{}", c360::cli::error_report(&f.error));
        std::process::exit(f.code);
    }
    let cli = c360::cli::Cli::parse();
    match c360::cli::run(cli) {
        Ok(()) => {}
        Err(f) => {
            eprintln!("{}", c360::cli::error_report(&f.error));
            std::process::exit(f.code);
        }
    }
}

/// glibc's allocator, tuned for polars' large short-lived buffers (each setting that
/// `GLIBC_TUNABLES` names wins over ours):
/// - one heap ("arena"): glibc gives each allocating thread its own, up to 8 per core, and
///   keeps freed memory in the arena that freed it; polars allocates and frees large buffers
///   on many threads, so a feature build held up to a quarter more memory than it used
///   (churn_signals at 1M customers peaked at 740 MB with the default, 600 MB with one
///   arena, at the same speed on 2 cores);
/// - buffers up to 32 MiB from the heap (`mmap_threshold`, glibc's largest) and freed memory
///   at the heap's top kept up to 1 GiB (`trim_threshold`): by default glibc maps and unmaps
///   such buffers and trims the heap top, and every next buffer faults its pages in again
///   (a 1M two-set build: 0.75 s of kernel time became 0.5 s, wall 2.8 s became 2.5 s,
///   peak within 50 MB). `release_free_memory` still returns free memory past 1 GiB between
///   load steps.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn one_malloc_arena() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    const M_ARENA_MAX: i32 = -8;
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    for (name, param, value) in [
        ("arena_max", M_ARENA_MAX, 1),
        ("mmap_threshold", M_MMAP_THRESHOLD, 32 << 20),
        ("trim_threshold", M_TRIM_THRESHOLD, 1 << 30),
    ] {
        if tunables.contains(name) {
            continue;
        }
        // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
        unsafe {
            mallopt(param, value);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn one_malloc_arena() {}

/// Output piped into `head` (or any reader that stops early) ends the process quietly with
/// 141 (128 + SIGPIPE, as a shell reports it), as other command-line tools do, instead of a
/// "failed printing to stdout" panic. SIGPIPE itself stays ignored: the service and the S3
/// and SageMaker clients write to sockets whose peer may close, which must be an error, not
/// the end of the process.
fn quiet_broken_pipe() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        previous(info)
    }));
}
