//! Names and values that are parsed once, at the edge, into types that cannot hold a
//! bad value ("parse, don't validate"; style.md rule 4). Each rule lives here and only
//! here: feature-set, feature, job, product and model names, the names SageMaker accepts
//! ([`SageMakerName`]), store URIs ([`StoreUri`], the one place that knows `s3://`) and
//! the store-key rule ([`key_problem`]), as-of dates ([`AsOf`]) and the names an HTTP path
//! may carry ([`KeySegment`]).
//!
//! Every type is made by `FromStr` / `TryFrom<String>` (and `parse`), shows itself with
//! `Display`, lends its text through `AsRef<str>`/`Deref<Target = str>`, and
//! (de)serializes as the plain string it was parsed from, so JSON and TOML files keep
//! their format while a bad value fails when the file is read, naming the rule.

use std::fmt;

mod as_of;
mod sagemaker;
mod store_uri;

pub use as_of::{AsOf, AsOfError};
pub use sagemaker::SageMakerName;
pub use store_uri::{key_problem, StoreUri, UriError};

/// A refused name: the value, what kind of name it was meant to be, and the rule it
/// broke, e.g. `"Churn" is not a valid job name: 1-48 lowercase letters, ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {kind}: {rule}")]
pub struct NameError {
    /// What the value was meant to name ("job name", "feature set name", "run id", ...).
    pub kind: &'static str,
    /// The refused value, as given.
    pub value: String,
    /// The rule, written so that a user can follow it.
    pub rule: &'static str,
}

impl NameError {
    /// The same error for a more specific kind of name (e.g. a [`KeySegment`] that is a
    /// "run id" or a "product"), for messages.
    pub fn with_kind(mut self, kind: &'static str) -> NameError {
        self.kind = kind;
        self
    }
}

/// `s` is 1 to `max` bytes, starts with a character `first` accepts and has only
/// characters `rest` accepts.
fn fits(s: &str, max: usize, first: fn(char) -> bool, rest: fn(char) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.chars().next().is_some_and(first) && s.chars().all(rest)
}

fn lower_snake(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

fn lower_snake_or_dash(c: char) -> bool {
    lower_snake(c) || c == '-'
}

/// Defines a string newtype whose values all satisfy `check`, with the conversions,
/// comparisons and serde support every name type shares.
macro_rules! name_type {
    (
        $(#[$doc:meta])*
        $name:ident, kind = $kind:literal, rule = $rule:literal, check = $check:expr
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl $name {
            /// What this kind of name is called in messages.
            pub const KIND: &'static str = $kind;
            /// The rule every value follows, as messages state it.
            pub const RULE: &'static str = $rule;

            /// Parses `s`, or says which rule it breaks.
            pub fn parse(s: impl Into<String>) -> Result<Self, NameError> {
                let s = s.into();
                let check: fn(&str) -> bool = $check;
                if check(&s) {
                    Ok($name(s))
                } else {
                    Err(NameError {
                        kind: $kind,
                        value: s,
                        rule: $rule,
                    })
                }
            }

            /// The name's text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The name's text, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $name::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $name::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(s: &str) -> Result<Self, NameError> {
                $name::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> String {
                n.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

name_type! {
    /// A feature set's name (`name` in `features/<name>.toml`).
    ///
    /// Rule: 1 to 64 characters, lowercase ASCII letters, digits and `_`, starting with a
    /// letter. Why: the name is a store folder (`features/<name>/v<N>/...`), part of file
    /// names, and the prefix people read in column and product names, so it must be safe
    /// on every file system and in SQL without quoting. (Model files used to accept `-`
    /// and `.` in the names of the sets they read; no set can have such a name.)
    SetName,
    kind = "feature set name",
    rule = "1-64 lowercase letters, digits and '_', starting with a letter",
    check = |s| fits(s, 64, |c| c.is_ascii_lowercase(), lower_snake)
}

name_type! {
    /// A feature's (or label's) name: a column of the feature set's snapshot.
    ///
    /// Rule: 1 to 64 characters, ASCII letters, digits and `_`, not starting with a
    /// digit. Why: the name is a Parquet column and a name in feature expressions, which
    /// read `a-b` as a subtraction.
    FeatureName,
    kind = "feature name",
    rule = "1-64 letters, digits and '_', not starting with a digit",
    check = |s| fits(
        s,
        64,
        |c| c.is_ascii_alphabetic() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_'
    )
}

name_type! {
    /// A column a model reads (`features` in `model.toml`): a feature of its sets, or a
    /// column of the CSV it scores.
    ///
    /// Rule: 1 to 256 characters, ASCII letters, digits, `_`, `-` and `.`. Why: looser
    /// than [`FeatureName`] because the columns of files people score come from other
    /// tools; still plain enough to print in a header and a message.
    ColumnName,
    kind = "column name",
    rule = "1-256 letters, digits, '_', '-' and '.'",
    check = |s| fits(s, 256, |_| true, |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

name_type! {
    /// A job's name (`name` in `jobs/<name>.toml`).
    ///
    /// Rule: 1 to 48 characters, lowercase ASCII letters, digits, `_` and `-`, starting
    /// with a letter. Why: the name is the job's ledger folder in the store and part of
    /// the SageMaker names of its runs ([`SageMakerName::derive`]); 48 leaves room there
    /// for the run id before names are shortened.
    JobName,
    kind = "job name",
    rule = "1-48 lowercase letters, digits, '-' and '_', starting with a letter",
    check = |s| fits(s, 48, |c| c.is_ascii_lowercase(), lower_snake_or_dash)
}

name_type! {
    /// A data product's name (`[product] name` in a job file).
    ///
    /// Rule: the job-name rule (1 to 48 characters, lowercase ASCII letters, digits, `_`
    /// and `-`, starting with a letter). Why: the name is the product's store folder and
    /// what consumers type in URLs (`/products/<name>`).
    ProductName,
    kind = "product name",
    rule = "1-48 lowercase letters, digits, '-' and '_', starting with a letter",
    check = |s| fits(s, 48, |c| c.is_ascii_lowercase(), lower_snake_or_dash)
}

name_type! {
    /// A model's name: its folder under `models/` (`model` in a job file).
    ///
    /// Rule: 1 to 255 bytes, one folder name: not `.` or `..`, no `/` or `\`, no control
    /// characters. Why: the name is a directory under `models/` (whatever a file system
    /// allows there works, as it always has, e.g. `Churn XGB`), and it must not lead out of
    /// that folder. SageMaker model names made from it are sanitised by
    /// [`SageMakerName::derive`].
    ModelName,
    kind = "model name",
    rule = "one folder name under models/ (1-255 bytes; not '.' or '..'; no '/', '\\' or control characters)",
    check = |s| !s.is_empty()
        && s.len() <= 255
        && s != "."
        && s != ".."
        && !s.chars().any(|c| c == '/' || c == '\\' || c.is_control())
}

name_type! {
    /// A name taken from an HTTP path (a job, product or run id) before it is used in a
    /// store key.
    ///
    /// Rule: 1 to 128 characters, ASCII letters, digits, `_` and `-`, not starting with
    /// `-`. Why: it keeps path tricks (`..`, `/`, `%2F`) out of store keys while leaving
    /// "no such job" (404) to the lookup, so it is looser than [`JobName`] and
    /// [`ProductName`]. Give the kind with [`NameError::with_kind`].
    KeySegment,
    kind = "name",
    rule = "1-128 letters, digits, '_' and '-', not starting with '-'",
    check = |s| fits(
        s,
        128,
        |c| c.is_ascii_alphanumeric() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_' || c == '-'
    )
}

#[cfg(test)]
mod tests;
