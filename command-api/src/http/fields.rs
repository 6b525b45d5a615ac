//! The rules a command body's fields obey, each stated once. A field's type carries
//! its rule: the same definition checks the request and writes the field's schema in
//! the OpenAPI document, so what the document allows and what the server takes cannot
//! drift apart (the schemathesis run in `scripts/test` holds them to it).
//!
//! Patterns are written in the subset that ECMA-262 (the document's dialect), Python
//! (the fuzzer) and Rust's `regex` read alike: explicit character classes, no `\s`
//! or `\w`, whose meanings differ between the three.

use std::{borrow::Cow, sync::LazyLock};

use regex::Regex;
use serde::Deserialize;
use utoipa::{
    openapi::{schema::SchemaType, ObjectBuilder, RefOr, Schema, Type},
    PartialSchema, ToSchema,
};

use super::{json::problem, problem::FieldProblem};

/// A field that checks itself, naming itself `field` in what it reports.
pub trait Field {
    fn check(&self, field: &str, problems: &mut Vec<FieldProblem>);
}

impl<T: Field> Field for Option<T> {
    fn check(&self, field: &str, problems: &mut Vec<FieldProblem>) {
        if let Some(value) = self {
            value.check(field, problems);
        }
    }
}

/// The characters that count as blank: what a person types as space.
const BLANK: [char; 4] = [' ', '\t', '\n', '\r'];
/// Any text without U+0000, which PostgreSQL cannot store.
const NO_NUL: &str = r"^[^\u0000]*$";
/// At least one character that is not blank, and no U+0000.
const NOT_BLANK: &str = r"^[^\u0000]*[^ \t\n\r\u0000][^\u0000]*$";
/// ISO 4217: three upper-case letters.
pub const CURRENCY: &str = "^[A-Z]{3}$";
/// SKUs as the event contract defines them.
pub const SKU: &str = "^[A-Z0-9][A-Z0-9._-]{0,63}$";
/// An address with a local part, an `@` and a domain with a dot, and nothing that any
/// of the three regex dialects counts as white space (the union of their `\s`): the
/// `AccountRegistered` event's schema refuses `\s` there, in whichever dialect a
/// consumer reads it.
const EMAIL: &str = concat!(
    r"^[^@\u0000\t\n\u000b\f\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+",
    r"@[^@\u0000\t\n\u000b\f\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+",
    r"\.[^@\u0000\t\n\u000b\f\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff]+$"
);
/// Whole seconds, minutes, hours, days or weeks, one or more: "3 days", "1w 2d", "12h".
const DURATION: &str =
    "^ *([0-9]{1,6} *(weeks|week|w|days|day|d|hours|hour|hr|h|minutes|minute|min|m|seconds|second|sec|s) *)+$";

fn compiled(pattern: &'static str) -> Regex {
    // The patterns are constants of this file, and a unit test compiles each.
    Regex::new(pattern).unwrap_or_else(|e| panic!("pattern {pattern:?} does not compile: {e}"))
}

static NO_NUL_RE: LazyLock<Regex> = LazyLock::new(|| compiled(NO_NUL));
static NOT_BLANK_RE: LazyLock<Regex> = LazyLock::new(|| compiled(NOT_BLANK));
static CURRENCY_RE: LazyLock<Regex> = LazyLock::new(|| compiled(CURRENCY));
static SKU_RE: LazyLock<Regex> = LazyLock::new(|| compiled(SKU));
static EMAIL_RE: LazyLock<Regex> = LazyLock::new(|| compiled(EMAIL));
static DURATION_RE: LazyLock<Regex> = LazyLock::new(|| compiled(DURATION));

fn string_schema(pattern: &str, rule: &str) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).pattern(Some(pattern)).description(Some(rule))
}

/// Text a person writes (a name, a reason): at least one character that is not blank,
/// at most `MAX` characters. [`Text::trimmed`] is what the events record.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct Text<const MAX: usize>(String);

impl<const MAX: usize> Text<MAX> {
    fn rule() -> String {
        format!("must be 1 to {MAX} characters, not all blank (space, tab, CR, LF), without U+0000")
    }

    pub fn trimmed(&self) -> String {
        self.0.trim_matches(BLANK).to_string()
    }
}

impl<const MAX: usize> Field for Text<MAX> {
    fn check(&self, field: &str, problems: &mut Vec<FieldProblem>) {
        if self.0.chars().count() > MAX || !NOT_BLANK_RE.is_match(&self.0) {
            problem(problems, field, Self::rule());
        }
    }
}

impl<const MAX: usize> PartialSchema for Text<MAX> {
    fn schema() -> RefOr<Schema> {
        string_schema(NOT_BLANK, &Self::rule()).min_length(Some(1)).max_length(Some(MAX)).into()
    }
}

impl<const MAX: usize> ToSchema for Text<MAX> {
    fn name() -> Cow<'static, str> {
        format!("Text{MAX}").into()
    }
}

/// Text that may be empty, at most `MAX` characters (a description, a note).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct FreeText<const MAX: usize>(String);

impl<const MAX: usize> FreeText<MAX> {
    fn rule() -> String {
        format!("must be at most {MAX} characters, without U+0000")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<const MAX: usize> Field for FreeText<MAX> {
    fn check(&self, field: &str, problems: &mut Vec<FieldProblem>) {
        if self.0.chars().count() > MAX || !NO_NUL_RE.is_match(&self.0) {
            problem(problems, field, Self::rule());
        }
    }
}

impl<const MAX: usize> PartialSchema for FreeText<MAX> {
    fn schema() -> RefOr<Schema> {
        string_schema(NO_NUL, &Self::rule()).max_length(Some(MAX)).into()
    }
}

impl<const MAX: usize> ToSchema for FreeText<MAX> {
    fn name() -> Cow<'static, str> {
        format!("FreeText{MAX}").into()
    }
}

/// Strings of one fixed shape: the pattern is the whole rule.
macro_rules! patterned {
    ($(#[$doc:meta])* $name:ident, $pattern:ident, $regex:ident, $rule:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }

            /// Whether `text` has this shape.
            pub fn fits(text: &str) -> bool {
                text.chars().count() <= $max && $regex.is_match(text)
            }
        }

        impl Field for $name {
            fn check(&self, field: &str, problems: &mut Vec<FieldProblem>) {
                if !Self::fits(&self.0) {
                    problem(problems, field, $rule);
                }
            }
        }

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                string_schema($pattern, $rule).max_length(Some($max)).into()
            }
        }

        impl ToSchema for $name {}
    };
}

patterned!(
    /// An ISO 4217 currency code.
    Currency, CURRENCY, CURRENCY_RE, "must be an ISO 4217 code such as EUR", 3
);
patterned!(
    /// A SKU: upper-case letters, digits, `.`, `_`, `-`, starting with a letter or digit.
    Sku,
    SKU,
    SKU_RE,
    "must be 1 to 64 upper-case letters, digits, '.', '_' or '-', starting with a letter or digit",
    64
);
patterned!(
    /// An email address.
    Email, EMAIL, EMAIL_RE, "must be an email address (local part, @, a domain with a dot), at most 254 characters", 254
);
patterned!(
    /// An interval in whole units from seconds to weeks.
    Interval,
    DURATION,
    DURATION_RE,
    "must be a duration in whole seconds, minutes, hours, days or weeks, such as \"3 days\", \"1 week\" or \"12h\"",
    100
);

impl Interval {
    /// The interval; `None` only past what a clock can hold.
    pub fn duration(&self) -> Option<std::time::Duration> {
        humantime::parse_duration(self.0.trim_matches(' ')).ok()
    }
}

/// A whole number from `MIN` to `MAX`.
#[derive(Debug, Clone, Copy)]
pub struct Bounded<const MIN: i64, const MAX: i64>(i64);

impl<'de, const MIN: i64, const MAX: i64> Deserialize<'de> for Bounded<MIN, MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `i64`, not `any`: JSON text is then refused, and a query string's number is parsed.
        deserializer.deserialize_i64(WholeNumber).map(Self)
    }
}

/// A whole number as JSON Schema's `integer` means it: `3` and `3.0` alike.
struct WholeNumber;

impl serde::de::Visitor<'_> for WholeNumber {
    type Value = i64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<i64, E> {
        Ok(n)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<i64, E> {
        i64::try_from(n).map_err(|_| E::custom(format!("{n} is larger than any quantity or amount this API takes")))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<i64, E> {
        // i64::MAX as f64 rounds up to 2^63, which no i64 holds: hence `<`.
        if n.fract() == 0.0 && n >= i64::MIN as f64 && n < i64::MAX as f64 {
            Ok(n as i64)
        } else if n.fract() != 0.0 {
            Err(E::custom(format!("{n} is not a whole number")))
        } else {
            Err(E::custom(format!("{n} is larger than any quantity or amount this API takes")))
        }
    }
}

impl<const MIN: i64, const MAX: i64> Bounded<MIN, MAX> {
    fn rule() -> String {
        if MAX == i64::MAX && MIN == 0 {
            "must not be negative".into()
        } else if MAX == i64::MAX {
            format!("must be at least {MIN}")
        } else {
            format!("must be from {MIN} to {MAX}")
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl<const MIN: i64, const MAX: i64> Field for Bounded<MIN, MAX> {
    fn check(&self, field: &str, problems: &mut Vec<FieldProblem>) {
        if !(MIN..=MAX).contains(&self.0) {
            problem(problems, field, Self::rule());
        }
    }
}

fn integer_schema(min: i64, max: i64, rule: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Integer))
        .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(utoipa::openapi::KnownFormat::Int64)))
        .minimum(Some(min as f64))
        .maximum(Some(max as f64))
        .description(Some(rule))
}

impl<const MIN: i64, const MAX: i64> PartialSchema for Bounded<MIN, MAX> {
    fn schema() -> RefOr<Schema> {
        integer_schema(MIN, MAX, &Self::rule()).into()
    }
}

impl<const MIN: i64, const MAX: i64> ToSchema for Bounded<MIN, MAX> {
    fn name() -> Cow<'static, str> {
        format!("Integer{MIN}To{MAX}").into()
    }
}

/// The most stock one command moves.
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// A quantity of stock: 1 to [`MAX_QUANTITY`].
pub type Quantity = Bounded<1, MAX_QUANTITY>;
/// An amount of money in minor units (cents): not negative.
pub type MinorUnits = Bounded<0, { i64::MAX }>;

/// A change of stock: not zero, at most [`MAX_QUANTITY`] either way.
#[derive(Debug, Clone, Copy)]
pub struct Delta(i64);

impl<'de> Deserialize<'de> for Delta {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(WholeNumber).map(Self)
    }
}

impl Delta {
    const RULE: &'static str = "must be non-zero and at most 1000000000 either way";

    pub fn get(self) -> i64 {
        self.0
    }
}

impl Field for Delta {
    fn check(&self, field: &str, problems: &mut Vec<FieldProblem>) {
        if self.0 == 0 || self.0.abs() > MAX_QUANTITY {
            problem(problems, field, Self::RULE);
        }
    }
}

impl PartialSchema for Delta {
    fn schema() -> RefOr<Schema> {
        // Two ranges, as the OpenAPI builder has no `not`.
        utoipa::openapi::OneOfBuilder::new()
            .item(integer_schema(-MAX_QUANTITY, -1, "a decrease"))
            .item(integer_schema(1, MAX_QUANTITY, "an increase"))
            .description(Some(Self::RULE))
            .into()
    }
}

impl ToSchema for Delta {}

/// A list of 1 to `MAX` entries, each checked as `T` is.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct NonEmpty<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> NonEmpty<T, MAX> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

/// What each entry of a list checks about itself.
pub trait Entry {
    fn check_entry(&self, path: &str, problems: &mut Vec<FieldProblem>);
}

impl<T: Entry, const MAX: usize> Field for NonEmpty<T, MAX> {
    fn check(&self, field: &str, problems: &mut Vec<FieldProblem>) {
        if self.0.is_empty() || self.0.len() > MAX {
            problem(problems, field, format!("must hold 1 to {MAX} entries"));
        }
        for (n, entry) in self.0.iter().enumerate() {
            entry.check_entry(&format!("{field}[{n}]"), problems);
        }
    }
}

impl<T: ToSchema, const MAX: usize> PartialSchema for NonEmpty<T, MAX> {
    fn schema() -> RefOr<Schema> {
        let items = RefOr::Ref(utoipa::openapi::Ref::from_schema_name(T::name()));
        utoipa::openapi::ArrayBuilder::new()
            .items(items)
            .min_items(Some(1))
            .max_items(Some(MAX))
            .description(Some(format!("1 to {MAX} entries")))
            .into()
    }
}

impl<T: ToSchema, const MAX: usize> ToSchema for NonEmpty<T, MAX> {
    fn name() -> Cow<'static, str> {
        format!("{}List", T::name()).into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((T::name().into(), T::schema()));
        T::schemas(schemas);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems_of(field: &impl Field) -> Vec<FieldProblem> {
        let mut problems = Vec::new();
        field.check("f", &mut problems);
        problems
    }

    fn text<const MAX: usize>(s: &str) -> Text<MAX> {
        Text(s.into())
    }

    #[test]
    fn every_pattern_compiles() {
        for pattern in [NO_NUL, NOT_BLANK, CURRENCY, SKU, EMAIL, DURATION] {
            compiled(pattern);
        }
    }

    #[test]
    fn text_refuses_blank_long_and_nul_and_trims_only_blanks() {
        assert!(problems_of(&text::<5>("ab c")).is_empty());
        assert!(problems_of(&text::<5>("\u{3000}")).is_empty(), "only space, tab, CR and LF are blank");
        for refused in ["", " \t\r\n", "abcdef", "a\u{0}b"] {
            assert_eq!(problems_of(&text::<5>(refused)).len(), 1, "{refused:?}");
        }
        assert_eq!(text::<9>("\t a b \n").trimmed(), "a b");
        assert!(problems_of(&text::<3>("äöü")).is_empty(), "the limit counts characters, not bytes");
    }

    #[test]
    fn patterned_strings_check_their_shape() {
        assert!(problems_of(&Currency("EUR".into())).is_empty());
        assert!(!problems_of(&Currency("eur".into())).is_empty());
        assert!(problems_of(&Sku("HEX-M8.40_A".into())).is_empty());
        assert!(!problems_of(&Sku("-HEX".into())).is_empty());
        assert!(!problems_of(&Sku("A".repeat(65))).is_empty());
        assert!(problems_of(&Email("buyer@example.com".into())).is_empty());
        for refused in ["buyer@example", "@example.com", "a b@example.com", "a@@b.com", "a@b\u{b}.c", "a@b.c\u{3000}"] {
            assert!(!problems_of(&Email(refused.into())).is_empty(), "{refused:?}");
        }
        for interval in ["3 days", "1w 2d", "12h", " 90 minutes "] {
            let interval = Interval(interval.into());
            assert!(problems_of(&interval).is_empty() && interval.duration().is_some());
        }
        assert!(!problems_of(&Interval("1500ms".into())).is_empty(), "whole seconds only");
    }

    #[test]
    fn numbers_keep_to_their_bounds() {
        assert!(problems_of(&Quantity::from_json("1")).is_empty());
        assert!(!problems_of(&Quantity::from_json("0")).is_empty());
        assert!(!problems_of(&Quantity::from_json("1000000001")).is_empty());
        assert!(problems_of(&Delta(-5)).is_empty());
        assert_eq!(Quantity::from_json("12.0").get(), 12, "JSON Schema's integer includes 12.0");
        assert!(serde_json::from_str::<Quantity>("12.5").is_err());
        assert!(serde_json::from_str::<Quantity>("18446744073709551615").is_err());
        assert!(!problems_of(&Delta(0)).is_empty());
    }

    impl<const MIN: i64, const MAX: i64> Bounded<MIN, MAX> {
        fn from_json(text: &str) -> Self {
            serde_json::from_str(text).expect("a whole number")
        }
    }
}
