//! Detection of personal data in columns: by what the values look like (e-mail addresses,
//! phone numbers, card numbers, IP addresses, IBANs, US social security numbers) and by what the
//! column is called (`email`, `phone`, `first_name`, `address`, `birth_date`, ...).

use std::sync::LazyLock;

use arrow::array::{AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use regex::Regex;

/// Values looked at per column.
pub const SAMPLE_VALUES: usize = 1000;
/// Share of the sampled non-empty values that must match a pattern to flag a column.
pub const MATCH_SHARE: f64 = 0.5;

struct Pattern {
    kind: &'static str,
    regex: Regex,
    /// An extra check on a regex match (the Luhn checksum of card numbers).
    check: Option<fn(&str) -> bool>,
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let p = |kind, re: &str, check| Pattern {
        kind,
        regex: Regex::new(re).expect("built-in PII pattern compiles"),
        check,
    };
    vec![
        p("email", r"^[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$", None),
        p("ssn", r"^\d{3}-\d{2}-\d{4}$", None),
        p("credit_card", r"^(?:\d[ -]?){13,19}$", Some(luhn)),
        p("iban", r"^[A-Z]{2}\d{2}[A-Z0-9 ]{11,30}$", None),
        p(
            "ip_address",
            r"^(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)$",
            None,
        ),
        p(
            "phone",
            r"^\+?\(?\d{1,4}\)?(?:[ .\-]?\(?\d{1,4}\)?){2,5}$",
            Some(phone_digits),
        ),
    ]
});

/// Column-name hints: a name whose `_`/`-`/space separated words contain one of these.
const NAME_HINTS: &[(&str, &[&str])] = &[
    ("email", &["email", "e_mail", "mail"]),
    ("phone", &["phone", "mobile", "tel", "telephone", "msisdn"]),
    (
        "name",
        &[
            "firstname",
            "first_name",
            "lastname",
            "last_name",
            "surname",
            "fullname",
            "full_name",
        ],
    ),
    ("address", &["address", "street", "addr"]),
    (
        "birth_date",
        &["birthdate", "birth_date", "dob", "birthday", "date_of_birth"],
    ),
    ("ssn", &["ssn", "social_security"]),
    ("passport", &["passport"]),
    ("ip_address", &["ip", "ip_address", "ipaddr"]),
    ("credit_card", &["card_number", "credit_card", "ccn", "pan"]),
];

fn luhn(s: &str) -> bool {
    let digits: Vec<u32> = s.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.len() < 13 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Phone numbers have 7 to 15 digits (E.164) and are not plain decimal numbers or dates.
fn phone_digits(s: &str) -> bool {
    let n = s.chars().filter(char::is_ascii_digit).count();
    let separated = s.contains([' ', '-', '.', '(', ')', '+']);
    (7..=15).contains(&n) && separated && !looks_like_date(s)
}

fn looks_like_date(s: &str) -> bool {
    static DATE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d{4}-\d{2}-\d{2}").expect("date pattern compiles"));
    DATE.is_match(s)
}

/// The PII kind suggested by a column's name, if any.
pub fn kind_from_name(column: &str) -> Option<&'static str> {
    let lower = column.to_ascii_lowercase();
    let words: Vec<&str> = lower.split(['_', '-', ' ', '.']).filter(|w| !w.is_empty()).collect();
    for (kind, hints) in NAME_HINTS {
        for hint in *hints {
            let whole = lower == *hint;
            let word = !hint.contains('_') && words.contains(hint);
            let phrase = hint.contains('_') && lower.contains(hint);
            if whole || word || phrase {
                return Some(kind);
            }
        }
    }
    None
}

/// The PII kind most of `values` look like (at least [`MATCH_SHARE`] of the non-empty ones).
pub fn kind_from_values<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let mut hits = vec![0usize; PATTERNS.len()];
    let mut seen = 0usize;
    for v in values
        .into_iter()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .take(SAMPLE_VALUES)
    {
        seen += 1;
        for (i, p) in PATTERNS.iter().enumerate() {
            if p.regex.is_match(v) && p.check.is_none_or(|check| check(v)) {
                hits[i] += 1;
                break;
            }
        }
    }
    if seen == 0 {
        return None;
    }
    let (best, count) = hits.iter().enumerate().max_by_key(|(_, c)| **c)?;
    (*count as f64 / seen as f64 >= MATCH_SHARE).then(|| PATTERNS[best].kind)
}

/// What detection concluded for one column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub column: String,
    pub kind: &'static str,
    /// `values` or `name`.
    pub by: &'static str,
}

/// Scans the string columns of a sample of rows (values first, then names) and every column's
/// name; returns the columns that look like personal data.
pub fn detect(batches: &[RecordBatch]) -> Vec<Detected> {
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        let stringy = matches!(
            field.data_type(),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        );
        let by_values = if stringy {
            let mut values: Vec<String> = Vec::new();
            for batch in batches {
                let Ok(column) = cast(batch.column(i), &DataType::Utf8) else {
                    continue;
                };
                let strings = column.as_string::<i32>();
                values.extend(
                    strings
                        .iter()
                        .flatten()
                        .take(SAMPLE_VALUES.saturating_sub(values.len()))
                        .map(str::to_owned),
                );
                if values.len() >= SAMPLE_VALUES {
                    break;
                }
            }
            kind_from_values(values.iter().map(String::as_str))
        } else {
            None
        };
        if let Some(kind) = by_values {
            out.push(Detected {
                column: field.name().clone(),
                kind,
                by: "values",
            });
        } else if let Some(kind) = kind_from_name(field.name()) {
            out.push(Detected {
                column: field.name().clone(),
                kind,
                by: "name",
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn values_are_recognised() {
        let emails = ["ann@example.com", "bob.smith+promo@mail.co.uk", "", "x@y.io"];
        assert_eq!(kind_from_values(emails), Some("email"));
        let phones = [
            "+33 6 12 34 56 78",
            "(555) 123-4567",
            "+1-202-555-0143",
            "020 7946 0958",
        ];
        assert_eq!(kind_from_values(phones), Some("phone"));
        assert_eq!(
            kind_from_values(["4111 1111 1111 1111", "5500-0000-0000-0004"]),
            Some("credit_card")
        );
        assert_eq!(kind_from_values(["123-45-6789", "987-65-4321"]), Some("ssn"));
        assert_eq!(kind_from_values(["192.168.0.1", "10.0.0.255"]), Some("ip_address"));
        assert_eq!(
            kind_from_values(["GB82WEST12345698765432", "DE89370400440532013000"]),
            Some("iban")
        );
    }

    #[test]
    fn ordinary_values_are_not_pii() {
        assert_eq!(kind_from_values(["red", "green", "blue"]), None);
        assert_eq!(kind_from_values(["2019-11-24 00:00:20", "2019-11-24 00:01:02"]), None);
        assert_eq!(kind_from_values(["1.5", "2.25", "-3"]), None);
        // A 16-digit number failing the Luhn check is an id, not a card.
        assert_eq!(kind_from_values(["4111111111111112"]), None);
        assert_eq!(kind_from_values(["aed790911d0344f149be2fb9470d6f0a"]), None);
        // Fewer than half matching is not enough.
        assert_eq!(kind_from_values(["a@b.com", "x", "y", "z"]), None);
        assert_eq!(kind_from_values(Vec::<&str>::new()), None);
    }

    #[test]
    fn names_hint_at_pii() {
        assert_eq!(kind_from_name("customer_email"), Some("email"));
        assert_eq!(kind_from_name("Phone"), Some("phone"));
        assert_eq!(kind_from_name("date_of_birth"), Some("birth_date"));
        assert_eq!(kind_from_name("last_name"), Some("name"));
        assert_eq!(kind_from_name("ip"), Some("ip_address"));
        assert_eq!(kind_from_name("zip_code"), None);
        assert_eq!(kind_from_name("item_id"), None);
        assert_eq!(kind_from_name("tip"), None);
        assert_eq!(kind_from_name("propensity_score"), None);
    }

    #[test]
    fn batches_are_scanned_by_value_and_by_name() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("contact", DataType::Utf8, true),
            Field::new("mobile", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
            Field::new("segment", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("a@b.com"), None, Some("c@d.org")])),
                Arc::new(Int64Array::from(vec![33612345678, 33698765432, 33611111111])),
                Arc::new(Float64Array::from(vec![0.1, 0.2, 0.3])),
                Arc::new(StringArray::from(vec!["gold", "silver", "gold"])),
            ],
        )
        .unwrap();
        let found = detect(&[batch]);
        assert_eq!(
            found,
            vec![
                Detected {
                    column: "contact".into(),
                    kind: "email",
                    by: "values"
                },
                Detected {
                    column: "mobile".into(),
                    kind: "phone",
                    by: "name"
                },
            ]
        );
    }
}
