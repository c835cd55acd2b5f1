//! The controller's clock. Production runs on the wall clock; tests can run the same
//! controller over stored (past) metrics, faster than real time.

use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// Virtual time: `origin + (real time since start) * speed`.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    real_origin: Instant,
    virtual_origin: DateTime<Utc>,
    speed: f64,
}

impl Clock {
    /// The wall clock.
    pub fn wall() -> Clock {
        Clock {
            real_origin: Instant::now(),
            virtual_origin: Utc::now(),
            speed: 1.0,
        }
    }

    /// A clock that starts at `origin` and runs `speed` times faster than real time.
    pub fn accelerated(origin: DateTime<Utc>, speed: f64) -> Clock {
        Clock {
            real_origin: Instant::now(),
            virtual_origin: origin,
            speed: if speed.is_finite() && speed > 0.0 {
                speed
            } else {
                1.0
            },
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = self.real_origin.elapsed().mul_f64(self.speed);
        self.virtual_origin + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }

    /// How long to really wait for `d` of this clock's time.
    pub fn real(&self, d: Duration) -> Duration {
        d.div_f64(self.speed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_accelerated_clock_runs_faster() {
        let origin = Utc::now() - chrono::Duration::days(30);
        let c = Clock::accelerated(origin, 60.0);
        assert!(c.now() >= origin);
        assert_eq!(c.real(Duration::from_secs(60)), Duration::from_secs(1));
        assert_eq!(
            Clock::wall().real(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }
}
