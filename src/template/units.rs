//! Small value types used by templates: PromQL durations and fractions written as percentages.

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::fmt;
use std::str::FromStr;

/// A duration in PromQL syntax (`30s`, `1m`, `1h30m`, `500ms`), kept in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PromDuration {
    millis: u64,
}

impl PromDuration {
    /// A duration of whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self {
            millis: secs * 1000,
        }
    }

    /// A duration in milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self { millis }
    }

    /// The length in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    /// The length in seconds, with fractions.
    pub fn as_secs_f64(self) -> f64 {
        self.millis as f64 / 1000.0
    }

    /// The length as a standard library duration.
    pub const fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }
}

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {why} (use PromQL units, e.g. 30s, 5m, 1h30m, 500ms)")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

const UNITS: [(&str, u64); 7] = [
    ("ms", 1),
    ("s", 1000),
    ("m", 60_000),
    ("h", 3_600_000),
    ("d", 86_400_000),
    ("w", 604_800_000),
    ("y", 31_536_000_000),
];

impl FromStr for PromDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| DurationError {
            input: s.to_string(),
            why,
        };
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(err("it is empty"));
        }
        let mut total: u64 = 0;
        // Units must appear from largest to smallest, each at most once, as PromQL requires.
        let mut last_unit_index: Option<usize> = None;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(err("expected a number before each unit"));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| err("the number is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..unit_len];
            rest = &rest[unit_len..];
            let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
                return Err(if unit.is_empty() {
                    err("a unit is missing")
                } else {
                    err("unknown unit")
                });
            };
            // UNITS is ordered from the smallest unit to the largest.
            if let Some(prev) = last_unit_index
                && index >= prev
            {
                return Err(err("units must go from largest to smallest, each once"));
            }
            last_unit_index = Some(index);
            let part = number
                .checked_mul(UNITS[index].1)
                .ok_or_else(|| err("the duration is too large"))?;
            total = total
                .checked_add(part)
                .ok_or_else(|| err("the duration is too large"))?;
        }
        if total == 0 {
            return Err(err("it must be longer than zero"));
        }
        Ok(Self { millis: total })
    }
}

impl fmt::Display for PromDuration {
    /// Formats in the largest units that divide it exactly, e.g. `1h30m`, `90s` stays `1m30s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.millis;
        if rest == 0 {
            return f.write_str("0s");
        }
        for (name, size) in UNITS.iter().skip(1).rev().chain(UNITS.iter().take(1)) {
            if rest >= *size {
                write!(f, "{}{}", rest / size, name)?;
                rest %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for PromDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PromDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl schemars::JsonSchema for PromDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PromDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // Every unit `FromStr` takes, so that the API server accepts what vigil reads (a `1w`
        // offset compares the same time of week); zero passes the pattern and is refused by
        // vigil with the field's path.
        schemars::json_schema!({
            "type": "string",
            "description": "A PromQL duration such as \"30s\", \"1h30m\", \"1d\" or \"1w\".",
            "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

/// A non-negative fraction, written in templates as a percentage (`10%`) or a plain number (`0.1`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Fraction(pub f64);

/// Why a percentage could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FractionError(String);

impl FromStr for Fraction {
    type Err = FractionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        let err = || {
            FractionError(format!(
                "invalid percentage {s:?}: write it as e.g. 10% or 0.1, not negative"
            ))
        };
        let value = match trimmed.strip_suffix('%') {
            Some(number) => number.trim().parse::<f64>().map_err(|_| err())? / 100.0,
            None => {
                let v = trimmed.parse::<f64>().map_err(|_| err())?;
                // "tolerance: 10" almost always means 10%, not 1000%: make the user say so.
                if v > 1.0 {
                    return Err(FractionError(format!(
                        "invalid percentage {s:?}: a plain number is a fraction, so this would be \
                         {}%; write {s}% for {s} percent",
                        v * 100.0
                    )));
                }
                v
            }
        };
        if !value.is_finite() || value < 0.0 {
            return Err(err());
        }
        Ok(Self(value))
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let percent = self.0 * 100.0;
        // Whole percentages print without the float's noise (10%, not 10.000000000000002%);
        // the test is relative, so that a tiny fraction does not print as 0%.
        if (percent - percent.round()).abs() <= 1e-9 * percent.abs() {
            write!(f, "{}%", percent.round())
        } else {
            write!(f, "{percent}%")
        }
    }
}

impl schemars::JsonSchema for Fraction {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Fraction".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // A percentage string ("10%") or a plain number (0.1): Kubernetes schemas have no
        // "string or float" type, so the value is kept as written and checked by vigil.
        schemars::json_schema!({
            "description": "A percentage such as \"10%\", or a fraction such as 0.1.",
            "x-kubernetes-preserve-unknown-fields": true
        })
    }

    fn inline_schema() -> bool {
        true
    }
}

impl Serialize for Fraction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FractionVisitor;
        impl de::Visitor<'_> for FractionVisitor {
            type Value = Fraction;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage such as 10% or a fraction such as 0.1")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Fraction, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Fraction, E> {
                v.to_string().parse().map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Fraction, E> {
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Fraction, E> {
                self.visit_f64(v as f64)
            }
        }
        deserializer.deserialize_any(FractionVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print() {
        let cases = [
            ("30s", 30_000, "30s"),
            ("1m", 60_000, "1m"),
            ("1h30m", 5_400_000, "1h30m"),
            ("90s", 90_000, "1m30s"),
            ("500ms", 500, "500ms"),
            ("1d", 86_400_000, "1d"),
        ];
        for (input, millis, shown) in cases {
            let d: PromDuration = input.parse().unwrap();
            assert_eq!(d.as_millis(), millis, "{input}");
            assert_eq!(d.to_string(), shown, "{input}");
        }
    }

    #[test]
    fn bad_durations_are_rejected() {
        for input in ["", "5", "m", "5x", "-5m", "0s", "30s1m", "1m1m", "5 m"] {
            assert!(input.parse::<PromDuration>().is_err(), "{input:?} accepted");
        }
    }

    #[test]
    fn tiny_fractions_print_as_themselves_not_as_zero() {
        // Found by the `units` fuzz target: 11e-33 printed as "0%".
        for text in ["11e-33", "1e-12", "0.1", "10%", "12.5%", "0"] {
            let f: Fraction = text.parse().unwrap();
            let again: Fraction = f.to_string().parse().unwrap();
            assert!(
                (again.0 - f.0).abs() <= 1e-9 * f.0,
                "{text} -> {f} -> {}",
                again.0
            );
        }
        assert_eq!(Fraction(0.1).to_string(), "10%");
        assert_eq!(Fraction(0.0).to_string(), "0%");
    }

    #[test]
    fn fractions_parse() {
        assert_eq!("10%".parse::<Fraction>().unwrap(), Fraction(0.1));
        assert_eq!("0.25".parse::<Fraction>().unwrap(), Fraction(0.25));
        assert_eq!("2.5%".parse::<Fraction>().unwrap().to_string(), "2.5%");
        assert_eq!("150%".parse::<Fraction>().unwrap(), Fraction(1.5));
        for bad in ["ten", "-5%", "%", "NaN", "inf%", "10"] {
            assert!(bad.parse::<Fraction>().is_err(), "{bad:?} accepted");
        }
    }
}
