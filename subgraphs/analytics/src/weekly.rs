//! The weekly summary job: "You spent X this week; top category Y", once per user and
//! ISO week, at a configurable local day and hour in the user's timezone.
//!
//! Each run is a `weekly_runs` document with `_id = "<user>|<ISO week>"` inserted
//! together with its `weekly.summary` event (the kit outbox, delivered to the
//! notifications subgraph). The unique `_id` makes it once per (user, week) even with
//! several instances; a run that is due is made whenever the job next looks, so
//! downtime only delays it (up to `WEEKLY_CATCHUP_HOURS` after the scheduled time).

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use contract::events::WeeklySummary;
use contract::ids::UserId;
use kit::AppError;
use kit::config::{ConfigError, Vars, var_or};
use kit::events::{Dispatcher, DomainEvent, Outbox};
use kit::money::{Currency, Total};

use crate::domain::{Totals, WeeklyRun, Window};
use crate::service::Analytics;

/// The collection of the runs (each carrying its event in its outbox).
pub use crate::store::WEEKLY_RUNS;

#[derive(Debug, Clone)]
pub struct WeeklySettings {
    /// `WEEKLY_SUMMARY_DAY` (default `SUN`): `MON`..`SUN`.
    pub day: Weekday,
    /// `WEEKLY_SUMMARY_HOUR` (default 18): local hour, 0..=23.
    pub hour: u32,
    /// `WEEKLY_SUMMARY_INTERVAL_MS` (default 60000): how often the job looks.
    pub interval: Duration,
    /// `WEEKLY_CATCHUP_HOURS` (default 48): a run missed for longer is skipped.
    pub catch_up: Duration,
}

impl WeeklySettings {
    pub const VARS: &'static [&'static str] = &[
        "WEEKLY_SUMMARY_DAY",
        "WEEKLY_SUMMARY_HOUR",
        "WEEKLY_SUMMARY_INTERVAL_MS",
        "WEEKLY_CATCHUP_HOURS",
    ];

    pub fn from_vars(vars: &(impl Vars + ?Sized)) -> Result<Self, ConfigError> {
        let day_text = var_or(vars, "WEEKLY_SUMMARY_DAY", "SUN".to_string())?;
        let day = day_text
            .parse::<Weekday>()
            .map_err(|_| ConfigError::new("WEEKLY_SUMMARY_DAY", "expected MON..SUN"))?;
        let hour: u32 = var_or(vars, "WEEKLY_SUMMARY_HOUR", 18)?;
        if hour > 23 {
            return Err(ConfigError::new("WEEKLY_SUMMARY_HOUR", "expected 0..23"));
        }
        Ok(WeeklySettings {
            day,
            hour,
            interval: Duration::from_millis(var_or(vars, "WEEKLY_SUMMARY_INTERVAL_MS", 60_000u64)?),
            catch_up: Duration::from_secs(3600 * var_or(vars, "WEEKLY_CATCHUP_HOURS", 48u64)?),
        })
    }
}

/// The ISO week label of a date: `2024-W10`.
pub fn week_label(d: NaiveDate) -> String {
    let w = d.iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}

/// The scheduled instant of the week containing `d` (a DST gap moves it an hour on).
pub fn scheduled_at(d: NaiveDate, s: &WeeklySettings, tz: Tz) -> Option<DateTime<Utc>> {
    let monday = d - chrono::Duration::days(i64::from(d.weekday().num_days_from_monday()));
    let day = monday + chrono::Duration::days(i64::from(s.day.num_days_from_monday()));
    let local = day.and_hms_opt(s.hour, 0, 0)?;
    tz.from_local_datetime(&local)
        .earliest()
        .or_else(|| {
            tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                .earliest()
        })
        .map(|t| t.with_timezone(&Utc))
}

impl Analytics {
    /// One pass of the job; returns how many summaries it made.
    pub async fn run_weekly(
        &self,
        settings: &WeeklySettings,
        dispatcher: &Dispatcher,
    ) -> Result<usize, AppError> {
        let now = self.clock.now();
        let since = (now - chrono::Duration::days(16)).date_naive();
        let users = self.store.recent_users(since).await?;
        let mut made = 0;
        for user in users {
            // Until the user used analytics: UTC and their latest expense's currency.
            let (tz, currency) = match self.store.profile_of(&user).await? {
                Some(p) => (p.timezone, Some(p.currency)),
                None => (Tz::UTC, None),
            };
            let today = now.with_timezone(&tz).date_naive();
            for week_day in [today - chrono::Duration::days(7), today] {
                let Some(at) = scheduled_at(week_day, settings, tz) else {
                    continue;
                };
                let late = (now - at).to_std().ok();
                if late.is_none_or(|l| l > settings.catch_up) {
                    continue;
                }
                if self
                    .weekly_summary(&user, tz, currency, week_day, at, dispatcher)
                    .await?
                {
                    made += 1;
                }
            }
        }
        if made > 0 {
            dispatcher.wake();
        }
        Ok(made)
    }

    async fn weekly_summary(
        &self,
        user: &UserId,
        tz: Tz,
        currency: Option<Currency>,
        week_day: NaiveDate,
        at: DateTime<Utc>,
        dispatcher: &Dispatcher,
    ) -> Result<bool, AppError> {
        let week = week_label(week_day);
        if self.store.weekly_run_made(user, &week).await? {
            return Ok(false);
        }
        let monday =
            week_day - chrono::Duration::days(i64::from(week_day.weekday().num_days_from_monday()));
        let scheduled_local = at.with_timezone(&tz).date_naive();
        let window = Window {
            start: monday,
            next: scheduled_local + chrono::Duration::days(1),
        };
        // Without any expense to tell, the summary is in USD.
        let cur = match currency {
            Some(c) => c,
            None => self
                .store
                .latest_currency(user)
                .await?
                .unwrap_or(Currency::USD),
        };
        let rows = self
            .store
            .day_totals(user, cur, window.start, window.next)
            .await?;
        let t = Totals::of(&rows);
        // Only weeks with spending are summed up: a week before the account existed (or
        // an empty one) gets no "You spent 0.00" summary.
        if t.expense_count == 0 {
            return Ok(false);
        }
        let text = |m: i128| Total::from_minor(m, cur).to_string();
        let top = t.categories_desc().into_iter().next();
        let message = match &top {
            Some((c, total, _)) => format!(
                "You spent {} this week; top category {c} ({}).",
                text(t.spent_minor),
                text(*total)
            ),
            None => format!("You spent {} this week.", text(0)),
        };
        let event = DomainEvent::WeeklySummary(WeeklySummary {
            week: week.clone(),
            from: window.start,
            to: window.last(),
            currency: cur.code().to_string(),
            spent_minor: Total::from_minor(t.spent_minor, cur).minor_saturating_i64(),
            expense_count: t.expense_count,
            top_category: top.as_ref().map(|c| c.0.clone()),
            top_category_minor: top
                .as_ref()
                .map(|c| Total::from_minor(c.1, cur).minor_saturating_i64()),
            message,
        })
        .into_event(user, self.clock.now());
        let run = WeeklyRun {
            user_id: user.clone(),
            week,
            created_at: self.clock.now(),
        };
        let events = Outbox::with(event, &dispatcher.consumer_names());
        // `false`: another instance made it first.
        self.store.insert_weekly_run(&run, events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheduled_time_is_the_local_day_and_hour_of_that_week() {
        let s = WeeklySettings {
            day: Weekday::Sun,
            hour: 18,
            interval: Duration::from_secs(1),
            catch_up: Duration::from_secs(1),
        };
        let tz: Tz = "America/New_York".parse().unwrap();
        let d = NaiveDate::from_ymd_opt(2024, 3, 6).unwrap(); // Wednesday
        let at = scheduled_at(d, &s, tz).unwrap();
        // Sunday 2024-03-10 18:00 EDT (after the DST switch that morning) = 22:00 UTC.
        assert_eq!(at.to_rfc3339(), "2024-03-10T22:00:00+00:00");
        assert_eq!(week_label(d), "2024-W10");
    }
}
