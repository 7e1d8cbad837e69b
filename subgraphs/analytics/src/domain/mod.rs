//! Analytics rules over plain data: calendar windows in the user's timezone, totals,
//! averages and the insight rules; and the records they work on (`model`). No GraphQL,
//! no BSON.

mod model;

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, Months, NaiveDate, Weekday};
use contract::ids::ExpenseId;
use kit::AppError;

pub use contract::events::TxKind;
pub use model::{BucketKey, DayTotal, ExpenseFact, ExpenseState, WeeklyRun};

/// Longest trend a client may ask for.
pub const MAX_TREND_MONTHS: i32 = 36;
/// Longest daily pattern a client may ask for.
pub const MAX_PATTERN_DAYS: i32 = 366;
/// Most top expenses a client may ask for.
pub const MAX_TOP_EXPENSES: i32 = 100;

/// Minimum data behind each insight (nothing is said from less).
pub const TOP_CATEGORY_MIN_EXPENSES: i64 = 5;
/// Month-over-month change is reported from this many percent on (either direction).
pub const MOM_MIN_CHANGE_PERCENT: i64 = 20;
/// Unusual expense: more than this many times the category's median ...
pub const LARGE_EXPENSE_FACTOR: i64 = 3;
/// ... over this many days ...
pub const LARGE_EXPENSE_WINDOW_DAYS: i64 = 90;
/// ... with at least this many expenses in that category in the window.
pub const LARGE_EXPENSE_MIN_SAMPLES: usize = 5;
/// Weekend vs weekday: the last 28 calendar days (8 weekend days, 20 weekdays) ...
pub const WEEKPART_WINDOW_DAYS: i64 = 28;
/// ... with at least this many expenses in them.
pub const WEEKPART_MIN_EXPENSES: i64 = 10;

/// A half-open range of calendar days `[start, next)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveDate,
    pub next: NaiveDate,
}

impl Window {
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.start <= d && d < self.next
    }

    /// Last day, inclusive.
    pub fn last(&self) -> NaiveDate {
        self.next.pred_opt().unwrap_or(self.next)
    }

    pub fn days(&self) -> i64 {
        (self.next - self.start).num_days()
    }
}

/// `value` when it lies in `min..=max`; a validation error on `field` otherwise.
fn within(field: &str, value: i32, min: i32, max: i32) -> Result<i32, AppError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(AppError::validation(
            field,
            format!("{field} must be between {min} and {max}"),
        ))
    }
}

pub fn validate_year_month(year: i32, month: i32) -> Result<(), AppError> {
    within("year", year, 1970, 9999)?;
    within("month", month, 1, 12)?;
    Ok(())
}

/// The whole month `year-month` (the last day counts in full).
pub fn month_window(year: i32, month: u32) -> Result<Window, AppError> {
    let start = NaiveDate::from_ymd_opt(year, month, 1)
        .ok_or_else(|| AppError::validation("month", "no such month"))?;
    let next = start
        .checked_add_months(Months::new(1))
        .ok_or_else(|| AppError::validation("year", "out of range"))?;
    Ok(Window { start, next })
}

pub fn month_of(d: NaiveDate) -> Window {
    let start = d.with_day(1).unwrap_or(d);
    let next = start.checked_add_months(Months::new(1)).unwrap_or(start);
    Window { start, next }
}

/// Exactly `n` consecutive months ending with the month of `today`, oldest first.
pub fn trend_months(today: NaiveDate, n: i32) -> Result<Vec<Window>, AppError> {
    within("months", n, 1, MAX_TREND_MONTHS)?;
    let current = month_of(today);
    let mut out = Vec::with_capacity(n as usize);
    for back in (0..n as u32).rev() {
        let start = current
            .start
            .checked_sub_months(Months::new(back))
            .ok_or_else(|| AppError::validation("months", "out of range"))?;
        out.push(month_of(start));
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Week,
    Month,
    Year,
}

/// The current week (Monday to Sunday), month or year containing `today`.
pub fn period_window(period: Period, today: NaiveDate) -> Window {
    match period {
        Period::Week => {
            let start = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
            Window {
                start,
                next: start + Duration::days(7),
            }
        }
        Period::Month => month_of(today),
        Period::Year => {
            let start = NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today);
            let next = NaiveDate::from_ymd_opt(today.year() + 1, 1, 1).unwrap_or(today);
            Window { start, next }
        }
    }
}

/// The last `days` calendar days ending with `today` (inclusive).
pub fn last_days(today: NaiveDate, days: i64) -> Window {
    let next = today + Duration::days(1);
    Window {
        start: next - Duration::days(days),
        next,
    }
}

pub fn validate_days(days: i32) -> Result<i64, AppError> {
    within("days", days, 1, MAX_PATTERN_DAYS).map(i64::from)
}

pub fn validate_limit(limit: i32) -> Result<i64, AppError> {
    within("limit", limit, 1, MAX_TOP_EXPENSES).map(i64::from)
}

/// `total / n` rounded to the nearest minor unit (halves away from zero); 0 when n is
/// not positive. Exact for any total (sums are 128-bit, see `kit::money::Total`).
pub fn average_minor(total: i128, n: i128) -> i128 {
    if n <= 0 {
        return 0;
    }
    let (t, n) = (total.unsigned_abs(), n.unsigned_abs());
    // `r < n`, so `2 * r` cannot overflow.
    let (q, r) = (t / n, t % n);
    let q = if 2 * r >= n { q + 1 } else { q };
    let q = i128::try_from(q).unwrap_or(i128::MAX);
    if total < 0 { -q } else { q }
}

/// Percentage `part / whole` of a positive `whole` (0 otherwise), rounded to two
/// decimals; for display, so it saturates rather than overflow on sums no one reaches.
pub fn percentage(part: i128, whole: i128) -> f64 {
    let basis_points = average_minor(part.saturating_mul(10_000), whole);
    basis_points as f64 / 100.0
}

/// Totals of a set of rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    pub spent_minor: i128,
    pub expense_count: i64,
    pub income_minor: i128,
    pub income_count: i64,
    /// Expense totals per category: (total, count).
    pub by_category: BTreeMap<String, (i128, i64)>,
}

impl Totals {
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a DayTotal>) -> Totals {
        let mut t = Totals::default();
        for r in rows {
            match r.kind {
                TxKind::Expense => {
                    t.spent_minor += r.total_minor;
                    t.expense_count += r.count;
                    let e = t.by_category.entry(r.category.clone()).or_default();
                    e.0 += r.total_minor;
                    e.1 += r.count;
                }
                TxKind::Income => {
                    t.income_minor += r.total_minor;
                    t.income_count += r.count;
                }
            }
        }
        t
    }

    /// Categories by total spent, largest first (ties by name).
    pub fn categories_desc(&self) -> Vec<(String, i128, i64)> {
        let mut v: Vec<(String, i128, i64)> = self
            .by_category
            .iter()
            .map(|(c, (t, n))| (c.clone(), *t, *n))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }
}

/// Expense spending per calendar day of `window`, every day present (zero included).
pub fn daily_spending(rows: &[DayTotal], window: Window) -> Vec<(NaiveDate, i128)> {
    let mut per_day: BTreeMap<NaiveDate, i128> = BTreeMap::new();
    let mut d = window.start;
    while d < window.next {
        per_day.insert(d, 0);
        d += Duration::days(1);
    }
    for r in rows
        .iter()
        .filter(|r| r.kind == TxKind::Expense && window.contains(r.date))
    {
        *per_day.entry(r.date).or_default() += r.total_minor;
    }
    per_day.into_iter().collect()
}

/// The median of some amounts (mean of the two middle values, rounded, when even).
pub fn median(values: &mut [i64]) -> Option<i64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        Some(values[mid])
    } else {
        let sum = i128::from(values[mid - 1]) + i128::from(values[mid]);
        // The mean of two amounts lies between them, so it is an amount too.
        Some(i64::try_from(average_minor(sum, 2)).unwrap_or(values[mid]))
    }
}

/// Budget pace: only for budgets at least this many days into their period ...
pub const PACE_MIN_DAYS: i64 = 7;

/// A budget as the budgets subgraph reports it (current period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetFact {
    pub category: Option<String>,
    pub amount_minor: i128,
    pub spent_minor: i128,
    pub period_start: NaiveDate,
    /// Inclusive.
    pub period_end: NaiveDate,
}

/// "At this pace your food budget runs out on Nov 26": for budgets with spending, not
/// yet exhausted, at least `PACE_MIN_DAYS` into the period, whose spending per
/// calendar day so far would use the whole amount before the period ends.
pub fn budget_pace(
    today: NaiveDate,
    budgets: &[BudgetFact],
    money: &dyn Fn(i128) -> String,
) -> Vec<Insight> {
    let mut out = Vec::new();
    for b in budgets {
        let elapsed = (today - b.period_start).num_days() + 1;
        if elapsed < PACE_MIN_DAYS
            || today > b.period_end
            || b.spent_minor <= 0
            || b.amount_minor <= 0
            || b.spent_minor >= b.amount_minor
        {
            continue;
        }
        // The day the running total reaches the amount at the average pace so far:
        // ceil(amount * elapsed / spent) days after the start, counting the start.
        let days = (b.amount_minor.saturating_mul(i128::from(elapsed)) + b.spent_minor - 1)
            / b.spent_minor;
        let Ok(days) = i64::try_from(days) else {
            continue;
        };
        let runs_out = b.period_start + Duration::days(days - 1);
        if runs_out > b.period_end {
            continue;
        }
        let name = b.category.as_deref().unwrap_or("overall");
        let pace = average_minor(b.spent_minor, i128::from(elapsed));
        out.push(Insight {
            kind: InsightKind::BudgetPace,
            title: format!("Your {name} budget is running fast"),
            message: format!(
                "At this pace your {name} budget runs out on {} ({} per day so far; {} of {} spent).",
                runs_out.format("%b %-d"),
                money(pace),
                money(b.spent_minor),
                money(b.amount_minor)
            ),
            severity: if (runs_out - today).num_days() <= 3 {
                Severity::Critical
            } else {
                Severity::Warning
            },
            figures: vec![
                ("category", Figure::Text(name.to_string())),
                ("runsOutOn", Figure::Text(runs_out.to_string())),
                ("periodEnd", Figure::Text(b.period_end.to_string())),
                ("spent", Figure::Money(b.spent_minor)),
                ("amount", Figure::Money(b.amount_minor)),
                ("dailyPace", Figure::Money(pace)),
            ],
            expense_id: None,
        });
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

/// A figure behind an insight: money in minor units, a percentage, a count or a date.
#[derive(Debug, Clone, PartialEq)]
pub enum Figure {
    Money(i128),
    Percent(f64),
    Count(i64),
    Text(String),
}

/// What an insight is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsightKind {
    TopCategory,
    MonthOverMonth,
    LargeExpense,
    WeekendVsWeekday,
    BudgetPace,
}

impl InsightKind {
    pub fn as_str(self) -> &'static str {
        match self {
            InsightKind::TopCategory => "TOP_CATEGORY",
            InsightKind::MonthOverMonth => "MONTH_OVER_MONTH",
            InsightKind::LargeExpense => "LARGE_EXPENSE",
            InsightKind::WeekendVsWeekday => "WEEKEND_VS_WEEKDAY",
            InsightKind::BudgetPace => "BUDGET_PACE",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Insight {
    pub kind: InsightKind,
    pub title: String,
    pub message: String,
    pub severity: Severity,
    pub figures: Vec<(&'static str, Figure)>,
    /// The expense an insight is about, when there is one.
    pub expense_id: Option<ExpenseId>,
}

/// What the insight rules look at.
pub struct InsightInput<'a> {
    pub today: NaiveDate,
    /// Day totals from the first day of the previous month to today at least, and the
    /// last `WEEKPART_WINDOW_DAYS` days.
    pub rows: &'a [DayTotal],
    /// Expenses of the last `LARGE_EXPENSE_WINDOW_DAYS` days.
    pub recent: &'a [ExpenseFact],
    /// Formats minor units as money text in the user's currency.
    pub money: &'a dyn Fn(i128) -> String,
}

pub fn insights(input: &InsightInput<'_>) -> Vec<Insight> {
    let mut out = Vec::new();
    let this_month = month_of(input.today);
    let prev_month = month_of(this_month.start - Duration::days(1));
    let current = Totals::of(input.rows.iter().filter(|r| this_month.contains(r.date)));
    let previous = Totals::of(input.rows.iter().filter(|r| prev_month.contains(r.date)));
    top_category(&current, input, &mut out);
    month_over_month(&current, &previous, input, &mut out);
    large_expenses(input, &mut out);
    weekend_vs_weekday(input, &mut out);
    out
}

fn top_category(current: &Totals, input: &InsightInput<'_>, out: &mut Vec<Insight>) {
    if current.expense_count < TOP_CATEGORY_MIN_EXPENSES || current.spent_minor <= 0 {
        return;
    }
    let Some((category, total, count)) = current.categories_desc().into_iter().next() else {
        return;
    };
    let share = percentage(total, current.spent_minor);
    out.push(Insight {
        kind: InsightKind::TopCategory,
        title: format!("Top category: {category}"),
        message: format!(
            "{category} is {share}% of your spending this month ({} of {}).",
            (input.money)(total),
            (input.money)(current.spent_minor)
        ),
        severity: if share >= 50.0 {
            Severity::Warning
        } else {
            Severity::Info
        },
        figures: vec![
            ("category", Figure::Text(category.clone())),
            ("categoryTotal", Figure::Money(total)),
            ("monthTotal", Figure::Money(current.spent_minor)),
            ("share", Figure::Percent(share)),
            ("expenses", Figure::Count(count)),
        ],
        expense_id: None,
    });
}

fn month_over_month(
    current: &Totals,
    previous: &Totals,
    input: &InsightInput<'_>,
    out: &mut Vec<Insight>,
) {
    for (category, (now, _)) in &current.by_category {
        let Some((before, _)) = previous.by_category.get(category) else {
            continue;
        };
        if *before <= 0 || *now <= 0 {
            continue;
        }
        let change = percentage(now - before, *before);
        if change.abs() < MOM_MIN_CHANGE_PERCENT as f64 {
            continue;
        }
        let up = change > 0.0;
        out.push(Insight {
            kind: InsightKind::MonthOverMonth,
            title: format!(
                "{category} {} {}% vs last month",
                if up { "up" } else { "down" },
                change.abs()
            ),
            message: format!(
                "You spent {} on {category} so far this month, against {} in the whole of last month ({}{}%).",
                (input.money)(*now),
                (input.money)(*before),
                if up { "+" } else { "" },
                change
            ),
            severity: if up && change >= 50.0 {
                Severity::Warning
            } else {
                Severity::Info
            },
            figures: vec![
                ("category", Figure::Text(category.clone())),
                ("thisMonth", Figure::Money(*now)),
                ("lastMonth", Figure::Money(*before)),
                ("changePercent", Figure::Percent(change)),
            ],
            expense_id: None,
        });
    }
}

fn large_expenses(input: &InsightInput<'_>, out: &mut Vec<Insight>) {
    let window = last_days(input.today, LARGE_EXPENSE_WINDOW_DAYS);
    let mut per_category: BTreeMap<&str, Vec<&ExpenseFact>> = BTreeMap::new();
    for e in input.recent.iter().filter(|e| window.contains(e.date)) {
        per_category.entry(e.category.as_str()).or_default().push(e);
    }
    let mut found: Vec<(i64, &ExpenseFact, i64)> = Vec::new();
    for facts in per_category.values() {
        if facts.len() < LARGE_EXPENSE_MIN_SAMPLES {
            continue;
        }
        let mut amounts: Vec<i64> = facts.iter().map(|e| e.amount_minor).collect();
        let Some(med) = median(&mut amounts) else {
            continue;
        };
        if med <= 0 {
            continue;
        }
        for e in facts {
            if e.amount_minor > med.saturating_mul(LARGE_EXPENSE_FACTOR) {
                found.push((e.amount_minor, e, med));
            }
        }
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
    for (_, e, med) in found.into_iter().take(3) {
        let (amount, med) = (i128::from(e.amount_minor), i128::from(med));
        let ratio = percentage(amount, med) / 100.0;
        out.push(Insight {
            kind: InsightKind::LargeExpense,
            title: format!("Unusually large {} expense", e.category),
            message: format!(
                "{} on {} is {ratio:.1}x your median {} expense of the last {LARGE_EXPENSE_WINDOW_DAYS} days ({}).",
                (input.money)(amount),
                e.date,
                e.category,
                (input.money)(med)
            ),
            severity: Severity::Warning,
            figures: vec![
                ("category", Figure::Text(e.category.clone())),
                ("amount", Figure::Money(amount)),
                ("median", Figure::Money(med)),
                ("date", Figure::Text(e.date.to_string())),
            ],
            expense_id: Some(e.id.clone()),
        });
    }
}

fn weekend_vs_weekday(input: &InsightInput<'_>, out: &mut Vec<Insight>) {
    let window = last_days(input.today, WEEKPART_WINDOW_DAYS);
    let rows: Vec<&DayTotal> = input
        .rows
        .iter()
        .filter(|r| r.kind == TxKind::Expense && window.contains(r.date))
        .collect();
    let count: i64 = rows.iter().map(|r| r.count).sum();
    if count < WEEKPART_MIN_EXPENSES {
        return;
    }
    let (mut weekend, mut weekday) = (0_i128, 0_i128);
    let (mut weekend_days, mut weekday_days) = (0_i64, 0_i64);
    let mut d = window.start;
    while d < window.next {
        if matches!(d.weekday(), Weekday::Sat | Weekday::Sun) {
            weekend_days += 1;
        } else {
            weekday_days += 1;
        }
        d += Duration::days(1);
    }
    for r in rows {
        if matches!(r.date.weekday(), Weekday::Sat | Weekday::Sun) {
            weekend += r.total_minor;
        } else {
            weekday += r.total_minor;
        }
    }
    let weekend_avg = average_minor(weekend, i128::from(weekend_days));
    let weekday_avg = average_minor(weekday, i128::from(weekday_days));
    let (higher, ratio) = if weekend_avg >= weekday_avg {
        (
            "weekends",
            percentage(weekend_avg, weekday_avg.max(1)) / 100.0,
        )
    } else {
        (
            "weekdays",
            percentage(weekday_avg, weekend_avg.max(1)) / 100.0,
        )
    };
    out.push(Insight {
        kind: InsightKind::WeekendVsWeekday,
        title: format!("You spend more on {higher}"),
        message: format!(
            "Over the last {WEEKPART_WINDOW_DAYS} days you spent {} per weekend day and {} per weekday (averages per calendar day).",
            (input.money)(weekend_avg),
            (input.money)(weekday_avg)
        ),
        severity: if ratio >= 1.5 {
            Severity::Warning
        } else {
            Severity::Info
        },
        figures: vec![
            ("weekendAveragePerDay", Figure::Money(weekend_avg)),
            ("weekdayAveragePerDay", Figure::Money(weekday_avg)),
            ("weekendDays", Figure::Count(weekend_days)),
            ("weekdayDays", Figure::Count(weekday_days)),
        ],
        expense_id: None,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn trends_are_exactly_n_months_ending_with_the_current_one() {
        let m = trend_months(d("2024-01-31"), 3).unwrap();
        let starts: Vec<String> = m.iter().map(|w| w.start.to_string()).collect();
        assert_eq!(starts, ["2023-11-01", "2023-12-01", "2024-01-01"]);
        assert_eq!(m[2].last().to_string(), "2024-01-31");
        assert!(trend_months(d("2024-01-31"), 0).is_err());
        assert!(trend_months(d("2024-01-31"), MAX_TREND_MONTHS + 1).is_err());
    }

    #[test]
    fn averages_round_to_the_minor_unit() {
        assert_eq!(average_minor(1000, 3), 333);
        assert_eq!(average_minor(1001, 2), 501);
        assert_eq!(average_minor(-1001, 2), -501);
        assert_eq!(average_minor(5, 0), 0);
        assert_eq!(percentage(1, 3), 33.33);
        assert_eq!(percentage(1, 0), 0.0);
    }

    #[test]
    fn averages_and_shares_of_the_largest_sums_are_exact_and_never_overflow() {
        let max = 999_999_999_999_999_i128; // 9,999,999,999,999.99 in cents
        assert_eq!(average_minor(3 * max, 3), max);
        assert_eq!(average_minor(2 * max + 1, 2), max + 1);
        assert_eq!(average_minor(i128::MAX, 1), i128::MAX);
        assert_eq!(average_minor(i128::MIN + 1, 1), i128::MIN + 1);
        assert_eq!(average_minor(i128::MAX, 2), i128::MAX / 2 + 1);
        assert_eq!(percentage(2 * max, 3 * max), 66.67);
        assert!(percentage(i128::MAX, 1).is_finite());
        assert_eq!(median(&mut [i64::MAX, i64::MAX - 1]), Some(i64::MAX));
    }

    #[test]
    fn a_week_starts_on_monday() {
        let w = period_window(Period::Week, d("2024-03-03"));
        assert_eq!(w.start.to_string(), "2024-02-26");
        assert_eq!(w.days(), 7);
    }

    #[test]
    fn budget_pace_names_the_day_the_budget_runs_out() {
        let b = BudgetFact {
            category: Some("food".into()),
            amount_minor: 30_000,
            spent_minor: 10_000,
            period_start: d("2024-11-01"),
            period_end: d("2024-11-30"),
        };
        let money = |m: i128| m.to_string();
        // 100.00 in 10 days: 10.00 a day, 300.00 is reached on day 30... not before the end.
        let i = budget_pace(d("2024-11-10"), std::slice::from_ref(&b), &money);
        assert_eq!(i.len(), 1);
        assert!(
            i[0].message.contains("runs out on Nov 30"),
            "{}",
            i[0].message
        );
        // 100.00 in 11 days: on budget to last, no insight.
        assert!(budget_pace(d("2024-11-11"), std::slice::from_ref(&b), &money).is_empty());
        // 100.00 in 8 days: 12.50 a day, 300.00 on day 24.
        let i = budget_pace(d("2024-11-08"), std::slice::from_ref(&b), &money);
        assert!(
            i[0].message.contains("runs out on Nov 24"),
            "{}",
            i[0].message
        );
        // Too early in the period to say.
        assert!(budget_pace(d("2024-11-06"), &[b], &money).is_empty());
    }

    #[test]
    fn median_of_even_and_odd_sets() {
        assert_eq!(median(&mut [5, 1, 3]), Some(3));
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(3));
        assert_eq!(median(&mut []), None);
    }
}
