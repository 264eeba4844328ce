//! The `C360_*` tuning and diagnostic environment variables, checked once before a command
//! runs: a value c360 cannot read is a usage error (exit 2) naming the variable, its value
//! and the values it accepts, instead of a failure deep inside a computation (exit 1,
//! "computing failed: ...") or a value silently ignored.
//!
//! Each check reads the variable exactly as the code that uses it does (the same function
//! where the library has one), so the two can never disagree on what is valid.

use super::{exit, Failure};

/// One checked variable: its name and the check, which gives the refusal's text.
struct Var {
    name: &'static str,
    check: fn() -> Result<(), String>,
}

/// Every variable read at run time whose value is parsed (not only tested for presence,
/// and not a path or URI: `C360_CONFIG`, `C360_STORE` and `C360_SOURCE` are checked where
/// they are opened). `C360_SERVE_*` are also read by clap for `serve-model`'s flags, whose
/// refusal names only the flag: checked here first, with the flag's own parser.
const VARS: &[Var] = &[
    Var {
        name: crate::features::compile::SWEEP_ENV,
        check: || {
            crate::features::compile::env_switch(
                crate::features::compile::SWEEP_ENV,
                "join path only",
            )
            .map(drop)
        },
    },
    Var {
        name: crate::features::cut::TRAINING_CUT_ENV,
        check: || {
            crate::features::compile::env_switch(
                crate::features::cut::TRAINING_CUT_ENV,
                "every row loaded",
            )
            .map(drop)
        },
    },
    Var {
        name: crate::features::BATCH_ENV,
        check: || crate::features::batch_size_from_env().map(drop),
    },
    Var {
        name: crate::features::WORKERS_ENV,
        check: || crate::features::workers_from_env().map(drop),
    },
    Var {
        name: LOG_ENV,
        check: check_log,
    },
    Var {
        name: STEP_DELAY_ENV,
        check: check_step_delay,
    },
    Var {
        name: "C360_SERVE_HEADER_TIMEOUT_SECONDS",
        check: || {
            parsed(
                "C360_SERVE_HEADER_TIMEOUT_SECONDS",
                crate::serving::parse_seconds,
            )
        },
    },
    Var {
        name: "C360_SERVE_BODY_TIMEOUT_SECONDS",
        check: || {
            parsed(
                "C360_SERVE_BODY_TIMEOUT_SECONDS",
                crate::serving::parse_seconds,
            )
        },
    },
    Var {
        name: "C360_SERVE_MAX_CONNECTIONS",
        check: || {
            parsed(
                "C360_SERVE_MAX_CONNECTIONS",
                super::serve_model::parse_max_connections,
            )
        },
    },
];

/// A variable read with `parse` (a clap value parser, whose message says what it accepts).
fn parsed<T>(name: &str, parse: fn(&str) -> Result<T, String>) -> Result<(), String> {
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => Ok(()),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{name} is not valid text; unset it or set a valid value"
        )),
        Ok(v) => parse(&v)
            .map(drop)
            .map_err(|e| format!("{name}={v:?}: {e}")),
    }
}

/// The log filter (`tracing` directives, as [`crate::telemetry::init`] reads it).
const LOG_ENV: &str = "C360_LOG";

/// The service's testing aid that slows every step (`service::runner`).
const STEP_DELAY_ENV: &str = "C360_SERVICE_STEP_DELAY_MS";

/// Checks every variable of [`VARS`] that is set; the first bad one is a usage error
/// (exit 2) whose message names the variable, its value and the accepted values. Called
/// by the binary before the command line is parsed (clap reads `C360_SERVE_*` while
/// parsing), and again by [`super::run`] for callers of the library.
pub fn check() -> Result<(), Failure> {
    for v in VARS {
        if let Err(message) = (v.check)() {
            debug_assert!(message.contains(v.name), "{message}");
            return Err(Failure {
                code: exit::USAGE,
                error: anyhow::anyhow!("{message}"),
            });
        }
    }
    Ok(())
}

/// `C360_LOG`: unset, or directives `tracing` accepts (`debug`, `c360=debug,warn`).
fn check_log() -> Result<(), String> {
    match std::env::var(LOG_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(()),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{LOG_ENV} is not valid text; unset it, or set a level (error, warn, info, debug, trace) or directives like c360=debug,warn"
        )),
        Ok(v) => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!(
                "{LOG_ENV}={v:?} is not a log filter ({e}); unset it, or set a level (error, warn, info, debug, trace) or directives like c360=debug,warn"
            )),
        },
    }
}

/// `C360_SERVICE_STEP_DELAY_MS`: unset, or a whole number of milliseconds.
fn check_step_delay() -> Result<(), String> {
    match std::env::var(STEP_DELAY_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(()),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{STEP_DELAY_ENV} is not valid text; unset it, or set a whole number of milliseconds (a testing aid)"
        )),
        Ok(v) => match v.parse::<u64>() {
            Ok(_) => Ok(()),
            Err(_) => Err(format!(
                "{STEP_DELAY_ENV}={v:?} is not a whole number of milliseconds; unset it, or set one like 200 (a testing aid that slows every service step)"
            )),
        },
    }
}
