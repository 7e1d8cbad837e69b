//! The CSV format of expense export and import (RFC 4180, read and written with the
//! `csv` crate). No GraphQL, no BSON, no storage here.
//!
//! # Columns
//!
//! Export writes a header row and then one row per expense, in this order:
//!
//! | column          | content                                                         |
//! |-----------------|-----------------------------------------------------------------|
//! | `id`            | the expense's id; on import, the client row id (see below)      |
//! | `date`          | `YYYY-MM-DD`                                                    |
//! | `type`          | `EXPENSE` or `INCOME`                                           |
//! | `amount`        | dot decimal with exactly the currency's digits (`12.50`, `1500`)|
//! | `currency`      | ISO 4217 code                                                   |
//! | `category`      | category name                                                   |
//! | `description`   | free text                                                       |
//! | `paymentMethod` | `cash`, `card`, `bank_transfer`, `mobile`, `other` or empty     |
//! | `tags`          | tags joined by `;`; a `;` or `\` inside a tag is written `\;`, `\\` |
//!
//! Fields are quoted only where needed (commas, quotes, CR/LF), lines end with CRLF.
//!
//! Import reads the same format. The header row is required; columns are matched by
//! name (case-insensitively), so their order does not matter; unknown or repeated
//! columns are refused. `id`, `date`, `amount` and `description` are required; an
//! absent column or an empty cell of the others takes createExpense's default (type
//! EXPENSE, the user's currency, category `other`, no payment method, no tags).
//!
//! # Formula injection
//!
//! A text cell (category, description, paymentMethod, tags) that starts with `=`, `+`,
//! `-`, `@`, a tab, a CR or a `'` is written with a leading `'`, so spreadsheets show it
//! as text. Import removes one leading `'` when the next character is one of those, so
//! an export always imports back to the same text. Ids, dates, types, amounts and
//! currencies are never guarded: they cannot start with those characters.

use std::borrow::Cow;

use chrono::NaiveDate;
use kit::AppError;
use kit::money::{Currency, Decimal, Money, positive_amount};

use super::{Expense, PaymentMethod, TxType};

/// The columns, in the order export writes them.
pub const COLUMNS: &[&str] = &[
    "id",
    "date",
    "type",
    "amount",
    "currency",
    "category",
    "description",
    "paymentMethod",
    "tags",
];
/// Columns an import must have.
pub const REQUIRED_COLUMNS: &[&str] = &["id", "date", "amount", "description"];
/// Most data rows one import accepts.
pub const MAX_IMPORT_ROWS: usize = 10_000;
/// Largest CSV text one import accepts (5 MiB).
pub const MAX_IMPORT_BYTES: usize = 5 * 1024 * 1024;
/// Longest client row id.
pub const MAX_ROW_ID_CHARS: usize = 200;
/// Most rows one export writes; a larger range must be split.
pub const MAX_EXPORT_ROWS: usize = 100_000;

const GUARDED_STARTS: &[char] = &['=', '+', '-', '@', '\t', '\r', '\''];

/// A text cell as written: a leading `'` when a spreadsheet could read it as a formula.
pub fn guard(text: &str) -> Cow<'_, str> {
    if text.starts_with(GUARDED_STARTS) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Undoes [`guard`].
pub fn unguard(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(GUARDED_STARTS) => rest,
        _ => cell,
    }
}

/// Tags as one cell: `;`-joined, `\` escaping `;` and `\`.
pub fn join_tags(tags: &[String]) -> String {
    tags.iter()
        .map(|t| t.replace('\\', "\\\\").replace(';', "\\;"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Undoes [`join_tags`]; an empty cell is no tags.
pub fn split_tags(cell: &str) -> Vec<String> {
    if cell.trim().is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = cell.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => current.push(next),
                None => current.push('\\'),
            },
            ';' => out.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    out.push(current);
    out
}

/// Writes expenses as CSV text (header row first), one row per expense in the order
/// given.
pub fn write(rows: &[Expense]) -> Result<String, AppError> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::with_capacity(64 + rows.len() * 96));
    w.write_record(COLUMNS).map_err(AppError::internal)?;
    for r in rows {
        let date = r.date.to_string();
        let amount = r.amount.amount_text();
        let tags = join_tags(&r.tags);
        w.write_record([
            r.id.as_str(),
            date.as_str(),
            r.kind.as_str(),
            amount.as_str(),
            r.amount.currency().code(),
            &guard(&r.category),
            &guard(&r.description),
            &guard(r.payment_method.map(|p| p.as_str()).unwrap_or_default()),
            &guard(&tags),
        ])
        .map_err(AppError::internal)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| AppError::internal(anyhow::anyhow!("csv writer: {e}")))?;
    String::from_utf8(bytes).map_err(AppError::internal)
}

/// A problem with one cell, one row, or the file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based number of the data row (the header is not counted); `None` for the
    /// header or the file as a whole.
    pub row: Option<usize>,
    /// Line of the file where the record starts (the header is line 1).
    pub line: u64,
    /// The column at fault, or `csv` for the file as a whole.
    pub column: String,
    pub message: String,
}

impl RowError {
    fn file(message: impl Into<String>) -> RowError {
        RowError {
            row: None,
            line: 1,
            column: "csv".into(),
            message: message.into(),
        }
    }
}

/// A data row as read: cells by column (`None` when the column is absent or the cell
/// empty), text cells already unguarded. Not yet checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRow {
    pub row: usize,
    pub line: u64,
    pub id: Option<String>,
    pub date: Option<String>,
    pub kind: Option<String>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub category: Option<String>,
    pub description: Option<String>,
    pub payment_method: Option<String>,
    pub tags: Option<String>,
}

/// Reads CSV text into rows; the errors say what is wrong with the file's shape
/// (size, header, field counts, row count). Cell contents are checked by [`check`].
pub fn read(text: &str) -> Result<Vec<RawRow>, Vec<RowError>> {
    if text.len() > MAX_IMPORT_BYTES {
        return Err(vec![RowError::file(format!(
            "the CSV text has {} bytes; at most {MAX_IMPORT_BYTES} bytes (5 MiB) are accepted",
            text.len()
        ))]);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Err(vec![RowError::file(format!("unreadable header row: {e}"))]),
    };
    if header.iter().all(|h| h.trim().is_empty()) {
        return Err(vec![RowError::file(format!(
            "a header row is required: {}",
            COLUMNS.join(",")
        ))]);
    }
    // Column index of each known name.
    let mut index: Vec<Option<usize>> = vec![None; COLUMNS.len()];
    let mut errors = Vec::new();
    for (i, name) in header.iter().enumerate() {
        let name = name.trim();
        match COLUMNS.iter().position(|c| c.eq_ignore_ascii_case(name)) {
            Some(k) if index[k].is_some() => errors.push(RowError {
                column: name.to_string(),
                message: format!("column {name:?} appears more than once"),
                ..RowError::file("")
            }),
            Some(k) => index[k] = Some(i),
            None => errors.push(RowError {
                column: name.to_string(),
                message: format!(
                    "unknown column {name:?}; the columns are {}",
                    COLUMNS.join(", ")
                ),
                ..RowError::file("")
            }),
        }
    }
    for required in REQUIRED_COLUMNS {
        let k = COLUMNS.iter().position(|c| c == required).unwrap_or(0);
        if index[k].is_none() {
            errors.push(RowError {
                column: (*required).to_string(),
                message: format!("the required column {required:?} is missing"),
                ..RowError::file("")
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Line numbers from byte offsets (a quoted cell may span lines).
    let mut counted_to = 0usize;
    let mut lines_before = 0u64;
    let mut line_at = |byte: u64| -> u64 {
        // A record's position can be the line end just before it.
        let mut byte = usize::try_from(byte).unwrap_or(usize::MAX).min(text.len());
        while byte < text.len() && matches!(text.as_bytes()[byte], b'\r' | b'\n') {
            byte += 1;
        }
        if byte >= counted_to {
            let newlines = text.as_bytes()[counted_to..byte]
                .iter()
                .filter(|b| **b == b'\n')
                .count();
            lines_before += u64::try_from(newlines).unwrap_or(0);
            counted_to = byte;
        }
        lines_before + 1
    };
    let mut rows = Vec::new();
    for (n, record) in reader.records().enumerate() {
        let row = n + 1;
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| line_at(p.byte())).unwrap_or(0);
                return Err(vec![RowError {
                    row: Some(row),
                    line,
                    column: "csv".into(),
                    message: format!("unreadable CSV: {e}"),
                }]);
            }
        };
        if row > MAX_IMPORT_ROWS {
            return Err(vec![RowError::file(format!(
                "more than {MAX_IMPORT_ROWS} rows; split the file"
            ))]);
        }
        let line = record.position().map(|p| line_at(p.byte())).unwrap_or(0);
        // A blank line (one empty field) is skipped.
        if record.len() == 1 && record.get(0).is_some_and(|c| c.trim().is_empty()) {
            continue;
        }
        if record.len() != header.len() {
            errors.push(RowError {
                row: Some(row),
                line,
                column: "csv".into(),
                message: format!(
                    "the row has {} fields; the header has {}",
                    record.len(),
                    header.len()
                ),
            });
            continue;
        }
        let cell = |name: &str| -> Option<String> {
            let k = COLUMNS.iter().position(|c| *c == name)?;
            let text = record.get(index[k]?)?;
            (!text.trim().is_empty()).then(|| text.to_string())
        };
        let text_cell = |name: &str| cell(name).map(|c| unguard(&c).to_string());
        rows.push(RawRow {
            row,
            line,
            id: cell("id"),
            date: cell("date"),
            kind: cell("type"),
            amount: cell("amount"),
            currency: cell("currency"),
            category: text_cell("category"),
            description: text_cell("description"),
            payment_method: text_cell("paymentMethod"),
            tags: text_cell("tags"),
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(rows)
}

/// A checked row, ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRow {
    pub row: usize,
    /// The client row id (trimmed).
    pub row_id: String,
    pub kind: TxType,
    pub amount: Money,
    pub category: String,
    pub description: String,
    pub date: NaiveDate,
    pub payment_method: Option<PaymentMethod>,
    pub tags: Vec<String>,
}

/// Checks a row with createExpense's rules. `home` is the user's currency, `today`
/// today in the user's timezone, `custom` the user's own categories of a type.
/// Returns every bad cell of the row, not only the first.
pub fn check(
    raw: &RawRow,
    home: Currency,
    today: NaiveDate,
    custom: &dyn Fn(TxType) -> Vec<String>,
) -> Result<ImportRow, Vec<RowError>> {
    let mut errors = Vec::new();
    let mut fail = |column: &str, message: String| {
        errors.push(RowError {
            row: Some(raw.row),
            line: raw.line,
            column: column.to_string(),
            message,
        });
    };
    let mut take = |e: AppError, column: &str| match e {
        AppError::Validation { message, .. } => fail(column, message),
        other => fail(column, other.public_message()),
    };
    let row_id = match raw.id.as_deref().map(str::trim) {
        Some(id) if id.chars().count() <= MAX_ROW_ID_CHARS => Some(id.to_string()),
        Some(_) => {
            take(
                AppError::validation("id", format!("at most {MAX_ROW_ID_CHARS} characters")),
                "id",
            );
            None
        }
        None => {
            take(
                AppError::validation("id", "a row id is required (it makes imports idempotent)"),
                "id",
            );
            None
        }
    };
    let kind = match raw.kind.as_deref().map(|k| k.trim().to_uppercase()) {
        None => Some(TxType::Expense),
        Some(k) => match TxType::parse(&k) {
            Some(t) => Some(t),
            None => {
                take(
                    AppError::validation("type", "type must be EXPENSE or INCOME"),
                    "type",
                );
                None
            }
        },
    };
    let currency = match super::currency(raw.currency.as_deref(), home) {
        Ok(c) => Some(c),
        Err(e) => {
            take(e, "currency");
            None
        }
    };
    let amount = match raw.amount.as_deref() {
        None => {
            take(
                AppError::validation("amount", "an amount is required"),
                "amount",
            );
            None
        }
        Some(text) => match Decimal::parse(text) {
            Err(e) => {
                take(AppError::money("amount", e), "amount");
                None
            }
            Ok(value) => match currency.map(|c| positive_amount(value, c)) {
                Some(Ok(m)) => Some(m),
                Some(Err(e)) => {
                    take(e, "amount");
                    None
                }
                // The currency is bad; that is already reported.
                None => None,
            },
        },
    };
    let category = match kind {
        Some(k) => match super::resolve_category(raw.category.as_deref(), k, &custom(k)) {
            Ok(c) => Some(c),
            Err(e) => {
                take(e, "category");
                None
            }
        },
        None => None,
    };
    let description = match super::description(raw.description.as_deref().unwrap_or_default()) {
        Ok(d) => Some(d),
        Err(e) => {
            take(e, "description");
            None
        }
    };
    let date = match raw.date.as_deref().map(str::trim) {
        None => {
            take(AppError::validation("date", "a date is required"), "date");
            None
        }
        Some(text) => match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            Ok(d) if text.len() == 10 => match super::date(Some(d), today) {
                Ok(d) => Some(d),
                Err(e) => {
                    take(e, "date");
                    None
                }
            },
            _ => {
                take(
                    AppError::validation("date", format!("{text:?} is not a YYYY-MM-DD date")),
                    "date",
                );
                None
            }
        },
    };
    let payment_method = match super::payment_method(raw.payment_method.as_deref()) {
        Ok(p) => Some(p),
        Err(e) => {
            take(e, "paymentMethod");
            None
        }
    };
    let tags = match super::tags(&split_tags(raw.tags.as_deref().unwrap_or_default())) {
        Ok(t) => Some(t),
        Err(e) => {
            take(e, "tags");
            None
        }
    };
    match (
        row_id,
        kind,
        amount,
        category,
        description,
        date,
        payment_method,
        tags,
    ) {
        (
            Some(row_id),
            Some(kind),
            Some(amount),
            Some(category),
            Some(description),
            Some(date),
            Some(payment_method),
            Some(tags),
        ) if errors.is_empty() => Ok(ImportRow {
            row: raw.row,
            row_id,
            kind,
            amount,
            category,
            description,
            date,
            payment_method,
            tags,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_cells_import_back_to_the_same_text() {
        for text in [
            "=SUM(A1)",
            "+1",
            "-5 refund",
            "@x",
            "'quoted",
            "''",
            "plain",
            "a=b",
        ] {
            assert_eq!(unguard(&guard(text)), text, "{text}");
        }
        assert_eq!(guard("=1+1"), "'=1+1");
        assert_eq!(guard("safe"), "safe");
    }

    #[test]
    fn tags_with_separators_round_trip() {
        let tags = vec![
            "a;b".to_string(),
            "back\\slash".to_string(),
            "c".to_string(),
        ];
        assert_eq!(split_tags(&join_tags(&tags)), tags);
        assert!(split_tags("").is_empty());
        assert_eq!(split_tags("x;y"), vec!["x", "y"]);
    }

    #[test]
    fn header_problems_name_each_column() {
        let errors = read("id,amount,colour\r\n1,2,red\r\n").unwrap_err();
        let columns: Vec<&str> = errors.iter().map(|e| e.column.as_str()).collect();
        assert_eq!(columns, vec!["colour", "date", "description"]);
    }

    #[test]
    fn rows_know_the_line_they_start_on() {
        let rows = read(
            "id,date,amount,description\r\na,2024-01-01,1,\"two\nlines\"\r\nb,2024-01-01,1,x\r\n",
        )
        .unwrap();
        let lines: Vec<(usize, u64)> = rows.iter().map(|r| (r.row, r.line)).collect();
        assert_eq!(lines, vec![(1, 2), (2, 4)]);
    }
}
