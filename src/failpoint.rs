//! Failpoints for the kill and panic tests (debug builds only; release builds ignore them).

/// Debug builds only: panics or sleeps at the named point when `C360_FAILPOINT` says so
/// (`panic:<point>`, `sleep:<point>:<ms>`). Points: the step names, and inside `publish`
/// `commit.parts` (feature snapshots too), `publish.manifest`, `publish.catalog`, `publish.latest` (after each
/// stage of the commit), which the kill tests use to stop a publish between stages.
pub fn hit(step: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Ok(v) = std::env::var("C360_FAILPOINT") else {
        return;
    };
    let mut it = v.splitn(3, ':');
    match (it.next(), it.next(), it.next()) {
        (Some("panic"), Some(s), None) if s == step => {
            panic!("failpoint: panic at step {step}")
        }
        (Some("sleep"), Some(s), Some(ms)) if s == step => {
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
        }
        _ => {}
    }
}
