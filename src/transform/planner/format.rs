//! Human-readable numbers for plans and their explanations: durations, dollars, bytes,
//! counts.

/// `1h`, `1h 30m 20s`, `48m 40s`, `7m`, `42s`, `0.5s`.
pub fn format_duration(secs: f64) -> String {
    if secs < 10.0 {
        let r = (secs * 10.0).round() / 10.0;
        return format!("{}s", trim_float(r));
    }
    let total = secs.round() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let mut out = Vec::new();
    if h > 0 {
        out.push(format!("{h}h"));
    }
    if m > 0 || (h > 0 && s > 0) {
        out.push(format!("{m}m"));
    }
    if s > 0 {
        out.push(format!("{s}s"));
    }
    out.join(" ")
}

/// `$0.0134` below a dollar, `$6.43` above.
pub fn format_usd(x: f64) -> String {
    if x < 1.0 {
        format!("${x:.4}")
    } else {
        format!("${x:.2}")
    }
}

/// Binary units: `64 MiB`, `23.3 GiB`, `250 B`.
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u < UNITS.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else if (x - x.round()).abs() < 0.05 {
        format!("{} {}", x.round(), UNITS[u])
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

/// `100,000,000`.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `8`, `7.5`.
pub(super) fn trim_float(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}
