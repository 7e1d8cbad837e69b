//! The service clock. Production reads the system clock; tests pin it to an instant
//! (e.g. 23:30 on the last day of a month in some timezone) and move it by hand.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

#[derive(Clone, Debug, Default)]
pub struct Clock {
    fixed: Option<Arc<Mutex<DateTime<Utc>>>>,
}

impl Clock {
    pub fn system() -> Clock {
        Clock { fixed: None }
    }

    /// A clock that stays at `at` until `set` or `advance` moves it.
    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock {
            fixed: Some(Arc::new(Mutex::new(at))),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match &self.fixed {
            None => Utc::now(),
            Some(at) => *at.lock().unwrap_or_else(|p| p.into_inner()),
        }
    }

    /// Moves a fixed clock; no effect on the system clock.
    pub fn set(&self, to: DateTime<Utc>) {
        if let Some(at) = &self.fixed {
            *at.lock().unwrap_or_else(|p| p.into_inner()) = to;
        }
    }

    /// Today's calendar date in `tz`.
    pub fn today_in(&self, tz: Tz) -> NaiveDate {
        self.now().with_timezone(&tz).date_naive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn today_follows_the_timezone_not_utc() {
        // 2024-02-01 04:30 UTC is still 2024-01-31 23:30 in New York.
        let clock = Clock::fixed(Utc.with_ymd_and_hms(2024, 2, 1, 4, 30, 0).unwrap());
        let ny: Tz = "America/New_York".parse().unwrap();
        assert_eq!(clock.today_in(ny).to_string(), "2024-01-31");
        assert_eq!(clock.today_in(Tz::UTC).to_string(), "2024-02-01");
    }
}
