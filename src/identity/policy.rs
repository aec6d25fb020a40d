//! Password policy: minimum length and minimum counts per character class,
//! configured as JSON (admin API, Connectware's shape) or as a TOML table in
//! broker.toml. Classes go by Unicode general category so that "ÄÖÜ" count
//! as uppercase and "١٢" as digits — passwords are not ASCII-only.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use unicode_general_category::{GeneralCategory, get_general_category};

/// Minimum requirements for a new password; 0 disables a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PasswordPolicy {
    /// Length in characters (not bytes).
    pub min: u32,
    /// Lowercase letters (Ll).
    pub lower: u32,
    /// Uppercase letters (Lu).
    pub upper: u32,
    /// Decimal digits (Nd), in any script.
    pub numeric: u32,
    /// Punctuation or symbols (any P* or S* category).
    pub symbol: u32,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy {
            min: 5,
            lower: 0,
            upper: 0,
            numeric: 0,
            symbol: 0,
        }
    }
}

/// A policy that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("password policy is not valid JSON: {0}")]
    Syntax(#[source] serde_json::Error),
    #[error("invalid password policy: {0}")]
    Invalid(#[source] serde_json::Error),
}

/// The rules a password failed, one human sentence each.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", failed.join("; "))]
pub struct PolicyViolation {
    pub failed: Vec<String>,
}

impl PasswordPolicy {
    /// Parses e.g. `{"min": 8, "upper": 2}`; missing keys take the
    /// default. Unknown keys, negative or non-integer values are errors
    /// naming the key.
    pub fn from_json(text: &str) -> Result<PasswordPolicy, PolicyError> {
        serde_json::from_str(text).map_err(|e| {
            if e.is_data() {
                PolicyError::Invalid(e)
            } else {
                PolicyError::Syntax(e)
            }
        })
    }

    /// Checks every rule and reports all that failed, so the user can fix
    /// the password in one go.
    pub fn check(&self, password: &str) -> Result<(), PolicyViolation> {
        let mut counts = Counts::default();
        for c in password.chars() {
            counts.length += 1;
            let category = get_general_category(c);
            match category {
                GeneralCategory::LowercaseLetter => counts.lower += 1,
                GeneralCategory::UppercaseLetter => counts.upper += 1,
                GeneralCategory::DecimalNumber => counts.numeric += 1,
                _ if matches!(
                    category.abbreviation().as_bytes().first(),
                    Some(b'P' | b'S')
                ) =>
                {
                    counts.symbol += 1
                }
                _ => {}
            }
        }
        let rules = [
            (self.min, counts.length, "character", "characters"),
            (
                self.lower,
                counts.lower,
                "lowercase letter",
                "lowercase letters",
            ),
            (
                self.upper,
                counts.upper,
                "uppercase letter",
                "uppercase letters",
            ),
            (self.numeric, counts.numeric, "digit", "digits"),
            (
                self.symbol,
                counts.symbol,
                "symbol or punctuation character",
                "symbols or punctuation characters",
            ),
        ];
        let failed: Vec<String> = rules
            .into_iter()
            .filter(|&(need, have, _, _)| u64::from(need) > have)
            .map(|(need, _, one, many)| {
                format!("at least {need} {}", if need == 1 { one } else { many })
            })
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(PolicyViolation { failed })
        }
    }
}

#[derive(Default)]
struct Counts {
    length: u64,
    lower: u64,
    upper: u64,
    numeric: u64,
    symbol: u64,
}

const KEYS: [&str; 5] = ["min", "lower", "upper", "numeric", "symbol"];

/// Hand-written so that every error names its key: derived code would say
/// "expected u32" for `-1` without saying where.
impl<'de> Deserialize<'de> for PasswordPolicy {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(PolicyVisitor)
    }
}

struct PolicyVisitor;

impl<'de> Visitor<'de> for PolicyVisitor {
    type Value = PasswordPolicy;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a password policy table with keys min, lower, upper, numeric, symbol")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PasswordPolicy, A::Error> {
        let mut policy = PasswordPolicy::default();
        let mut seen = [false; KEYS.len()];
        while let Some(key) = map.next_key::<String>()? {
            let Some(index) = KEYS.iter().position(|k| *k == key) else {
                return Err(de::Error::custom(format_args!(
                    "unknown password policy key `{key}` (expected one of min, lower, upper, numeric, symbol)"
                )));
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(de::Error::custom(format_args!(
                    "duplicate password policy key `{key}`"
                )));
            }
            let Int(value) = map
                .next_value()
                .map_err(|e| de::Error::custom(format_args!("password policy `{key}`: {e}")))?;
            let value = u32::try_from(value).map_err(|_| {
                de::Error::custom(format_args!(
                    "password policy `{key}` must be an integer from 0 to {}, got {value}",
                    u32::MAX
                ))
            })?;
            match index {
                0 => policy.min = value,
                1 => policy.lower = value,
                2 => policy.upper = value,
                3 => policy.numeric = value,
                _ => policy.symbol = value,
            }
        }
        Ok(policy)
    }
}

/// Any integer, range-checked by the caller so the message can name the key.
struct Int(i128);

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_i64(IntVisitor)
    }
}

struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = Int;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
        Ok(Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
        Ok(Int(v.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(min: u32, lower: u32, upper: u32, numeric: u32, symbol: u32) -> PasswordPolicy {
        PasswordPolicy {
            min,
            lower,
            upper,
            numeric,
            symbol,
        }
    }

    #[test]
    fn default_is_five_chars() {
        let p = PasswordPolicy::default();
        assert_eq!(p, policy(5, 0, 0, 0, 0));
        assert!(p.check("abcde").is_ok());
        assert_eq!(
            p.check("abcd").unwrap_err().failed,
            ["at least 5 characters"]
        );
    }

    #[test]
    fn ascii_all_rules_pass() {
        assert!(policy(8, 2, 2, 1, 1).check("abCD1!xy").is_ok());
    }

    #[test]
    fn each_rule_fails_individually() {
        let p = policy(8, 2, 2, 2, 2);
        assert!(p.check("abCD12!?").is_ok());
        let cases = [
            ("abCD12!", policy(8, 0, 0, 0, 0), "at least 8 characters"),
            ("aCD12!?X", p, "at least 2 lowercase letters"),
            ("abC12!?x", p, "at least 2 uppercase letters"),
            ("abCD1!?x", p, "at least 2 digits"),
            (
                "abCD12!x",
                p,
                "at least 2 symbols or punctuation characters",
            ),
        ];
        for (pw, p, msg) in cases {
            assert_eq!(p.check(pw).unwrap_err().failed, [msg], "{pw}");
        }
    }

    #[test]
    fn toml_table() {
        #[derive(Debug, Deserialize)]
        struct Config {
            password_policy: PasswordPolicy,
        }
        let c: Config = toml::from_str("password_policy = { min = 5, upper = 1 }").unwrap();
        assert_eq!(c.password_policy, policy(5, 0, 1, 0, 0));
        let e = toml::from_str::<Config>("password_policy = { min = -3 }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`min`") && e.contains("-3"), "{e}");
        let e = toml::from_str::<Config>("password_policy = { lenght = 3 }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`lenght`"), "{e}");
        let e = toml::from_str::<Config>("password_policy = { upper = 1.0 }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`upper`"), "{e}");
        let e = toml::from_str::<Config>("password_policy = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("password policy"), "{e}");
    }

    #[test]
    fn singular_messages() {
        let err = policy(1, 1, 1, 1, 1).check("").unwrap_err();
        assert_eq!(
            err.failed,
            [
                "at least 1 character",
                "at least 1 lowercase letter",
                "at least 1 uppercase letter",
                "at least 1 digit",
                "at least 1 symbol or punctuation character"
            ]
        );
    }

    #[test]
    fn several_fail_at_once_and_display_joins() {
        let err = policy(8, 0, 2, 1, 0).check("abc").unwrap_err();
        assert_eq!(err.failed.len(), 3);
        assert_eq!(
            err.to_string(),
            "at least 8 characters; at least 2 uppercase letters; at least 1 digit"
        );
    }

    #[test]
    fn non_ascii_classes() {
        // Three uppercase letters, six bytes: length counts characters.
        let upper = policy(3, 0, 3, 0, 0);
        assert!(upper.check("ÄÖÜ").is_ok());
        assert!(policy(4, 0, 0, 0, 0).check("ÄÖÜ").is_err());
        assert!(policy(0, 3, 0, 0, 0).check("äöß").is_ok());
        // Arabic-Indic digits are Nd.
        assert!(policy(0, 0, 0, 2, 0).check("١٢").is_ok());
        // Currency and other symbols, punctuation of other scripts.
        assert!(policy(0, 0, 0, 0, 3).check("€©、").is_ok());
        // Letters without case are neither upper nor lower.
        assert!(policy(0, 1, 0, 0, 0).check("漢字").is_err());
        // Superscript two is No, not Nd.
        assert!(policy(0, 0, 0, 1, 0).check("²").is_err());
    }

    #[test]
    fn zero_disables() {
        assert!(policy(0, 0, 0, 0, 0).check("").is_ok());
    }

    #[test]
    fn json_roundtrip_and_defaults() {
        let p = PasswordPolicy::from_json(r#"{"min": 8, "upper": 2, "lower": 2, "numeric": 1}"#)
            .unwrap();
        assert_eq!(p, policy(8, 2, 2, 1, 0));
        assert_eq!(
            PasswordPolicy::from_json("{}").unwrap(),
            PasswordPolicy::default()
        );
        assert_eq!(
            PasswordPolicy::from_json(r#"{"symbol": 1}"#).unwrap(),
            policy(5, 0, 0, 0, 1)
        );
        let text = serde_json::to_string(&p).unwrap();
        assert_eq!(PasswordPolicy::from_json(&text).unwrap(), p);
    }

    fn json_err(text: &str) -> String {
        PasswordPolicy::from_json(text).unwrap_err().to_string()
    }

    #[test]
    fn json_errors_name_the_problem() {
        let e = json_err(r#"{"min": 8, "colour": 1}"#);
        assert!(e.contains("`colour`"), "{e}");
        let e = json_err(r#"{"upper": -1}"#);
        assert!(e.contains("`upper`") && e.contains("-1"), "{e}");
        let e = json_err(r#"{"numeric": 1.5}"#);
        assert!(e.contains("`numeric`"), "{e}");
        let e = json_err(r#"{"symbol": "2"}"#);
        assert!(e.contains("`symbol`"), "{e}");
        let e = json_err(r#"{"min": 99999999999}"#);
        assert!(e.contains("`min`"), "{e}");
        let e = json_err(r#"{"min": 1, "min": 2}"#);
        assert!(e.contains("duplicate"), "{e}");
        let e = json_err(r#"{"min": 8"#);
        assert!(e.starts_with("password policy is not valid JSON"), "{e}");
        assert!(matches!(
            PasswordPolicy::from_json("{min: 8}"),
            Err(PolicyError::Syntax(_))
        ));
        assert!(matches!(
            PasswordPolicy::from_json("[1]"),
            Err(PolicyError::Invalid(_))
        ));
        assert!(PasswordPolicy::from_json("").is_err());
    }
}
