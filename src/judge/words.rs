//! Numbers as a release manager reads them.

/// A rate as a percentage with sensible precision: 1.9%, 0.052%, 0%.
pub fn percent(rate: f64) -> String {
    let p = rate * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p.abs() >= 10.0 {
        format!("{}%", significant(p, 3))
    } else {
        format!("{}%", significant(p, 2))
    }
}

/// A signed relative change: +25%, -3.1%.
pub fn change(rel: f64) -> String {
    if !rel.is_finite() {
        return if rel > 0.0 {
            "+inf%".into()
        } else {
            "n/a".into()
        };
    }
    let sign = if rel >= 0.0 { "+" } else { "" };
    format!("{sign}{}", percent(rel))
}

/// A multiplier: x3.8, x0.95.
pub fn times(ratio: f64) -> String {
    if !ratio.is_finite() {
        return "x∞".into();
    }
    format!("x{}", significant(ratio, 2))
}

/// A count with thousands separators.
pub fn count(n: f64) -> String {
    let rounded = n.round();
    if !rounded.is_finite() {
        return n.to_string();
    }
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

/// A p-value: p=0.31, p=0.004, p<1e-12.
pub fn p_value(p: f64) -> String {
    if p < 1e-12 {
        "p<1e-12".into()
    } else if p < 0.001 {
        format!("p={p:.1e}")
    } else {
        format!("p={}", significant(p, 2))
    }
}

/// An e-value: 12, 3400, 2.1e9.
pub fn e_value(e: f64) -> String {
    if !e.is_finite() {
        "∞".into()
    } else if e >= 1e5 {
        format!("{e:.1e}")
    } else {
        significant(e, 2)
    }
}

/// A plain value with about three significant digits.
pub fn value(v: f64) -> String {
    significant(v, 3)
}

/// `v` rounded to `digits` significant digits, without trailing zeros.
pub fn significant(v: f64, digits: i32) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let text = format!("{v:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// "95%" for a confidence of 0.95.
pub fn confidence(alpha: f64) -> String {
    format!("{}%", significant((1.0 - alpha) * 100.0, 3))
}

/// `text` cut to at most `max` characters, ending with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` cut to at most `max` bytes (on a character boundary), with `…` when cut: for
/// fields limited in bytes, such as a Kubernetes Event's note.
pub fn truncate_bytes(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(percent(0.019), "1.9%");
        assert_eq!(percent(0.00052), "0.052%");
        assert_eq!(percent(0.25), "25%");
        assert_eq!(percent(0.1234), "12.3%");
        assert_eq!(change(0.25), "+25%");
        assert_eq!(change(-0.031), "-3.1%");
        assert_eq!(times(3.8123), "x3.8");
        assert_eq!(count(45_000.4), "45,000");
        assert_eq!(count(999.0), "999");
        assert_eq!(p_value(0.3123), "p=0.31");
        assert_eq!(p_value(1.2e-9), "p=1.2e-9");
        assert_eq!(confidence(0.01), "99%");
    }
}
