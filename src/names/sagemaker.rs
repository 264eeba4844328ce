//! [`SageMakerName`]: a name SageMaker accepts for a transform job or a model, either
//! given by the user (an existing model's name) or derived from c360's own names.

use std::fmt;

use sha2::{Digest, Sha256};

use super::NameError;

/// The longest name SageMaker accepts for jobs and models.
const MAX: usize = 63;
/// Where a too-long derived name is cut before its hash is appended (54 + '-' + 8 = 63).
const CUT: usize = 54;

/// A SageMaker resource name (transform job, model): SageMaker's rule
/// `^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$`, i.e. 1 to 63 ASCII letters, digits and `-`,
/// starting and ending with a letter or digit.
///
/// Made by [`SageMakerName::derive`] from c360's names (deterministic, so a resumed run
/// finds the SageMaker job its first attempt started), or parsed from a name the user
/// gives (`[sagemaker] model_name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct SageMakerName(String);

impl SageMakerName {
    /// What this kind of name is called in messages.
    pub const KIND: &'static str = "SageMaker name";
    /// The rule every value follows, as messages state it.
    pub const RULE: &'static str =
        "1-63 letters, digits and hyphens, starting and ending with a letter or digit";

    /// Parses a name given by the user, or says which rule it breaks.
    pub fn parse(s: impl Into<String>) -> Result<SageMakerName, NameError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= MAX
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-');
        if ok {
            Ok(SageMakerName(s))
        } else {
            Err(NameError {
                kind: Self::KIND,
                value: s,
                rule: Self::RULE,
            })
        }
    }

    /// The name for `prefix` and `parts` (e.g. `("c360", [job, run_id])` for a run's
    /// transform job, `("c360", [model, content_hash])` for a model): the pieces joined
    /// with `-`, every character SageMaker refuses replaced by `-`, runs of `-` collapsed
    /// and `-` trimmed from both ends. A name over 63 characters keeps its first 54 and
    /// ends with 8 hex digits of the SHA-256 of the joined pieces, so different long
    /// inputs stay different. Deterministic: the same pieces always give the same name
    /// (this is the name c360 has always used, which resumed runs rely on).
    pub fn derive(prefix: &str, parts: &[&str]) -> SageMakerName {
        let mut raw = prefix.to_string();
        for p in parts {
            raw.push('-');
            raw.push_str(p);
        }
        let mut s = String::with_capacity(raw.len());
        for c in raw.chars() {
            let c = if c.is_ascii_alphanumeric() { c } else { '-' };
            if !(c == '-' && s.ends_with('-')) {
                s.push(c);
            }
        }
        // Only ASCII is left, so byte offsets are character offsets.
        let mut s = s.trim_start_matches('-').to_string();
        if s.len() > MAX {
            s = format!("{}-{}", s[..CUT].trim_end_matches('-'), hash8(&raw));
        }
        let s = s.trim_end_matches('-');
        if s.is_empty() {
            // Nothing SageMaker accepts was given: the hash alone still names it.
            return SageMakerName(hash8(&raw));
        }
        SageMakerName(s.to_string())
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

/// 8 hex digits of the SHA-256 of `raw` and a 0 byte (the form c360's run hashes take).
fn hash8(raw: &str) -> String {
    let mut h = Sha256::new();
    h.update(raw.as_bytes());
    h.update([0]);
    hex::encode(&h.finalize()[..4])
}

impl std::str::FromStr for SageMakerName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<SageMakerName, NameError> {
        SageMakerName::parse(s)
    }
}

impl TryFrom<String> for SageMakerName {
    type Error = NameError;
    fn try_from(s: String) -> Result<SageMakerName, NameError> {
        SageMakerName::parse(s)
    }
}

impl From<SageMakerName> for String {
    fn from(n: SageMakerName) -> String {
        n.0
    }
}

impl fmt::Display for SageMakerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl AsRef<str> for SageMakerName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SageMakerName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for SageMakerName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SageMakerName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for SageMakerName {
    fn eq(&self, other: &String) -> bool {
        self.0 == *other
    }
}

impl serde::Serialize for SageMakerName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pipeline::job_name_for` as it was released before this type replaced it, kept to show that
    /// `derive` names every SageMaker job and model exactly as before.
    fn released_job_name(job: &str, run_id: &str) -> String {
        let raw = format!("c360-{job}-{run_id}");
        let mut s: String = raw
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        while s.contains("--") {
            s = s.replace("--", "-");
        }
        if s.len() > 63 {
            let h = hash8(&raw);
            s = format!("{}-{h}", &s[..54].trim_end_matches('-'));
        }
        s.trim_end_matches('-').to_string()
    }

    #[test]
    fn derive_gives_the_names_runs_already_use() {
        // Golden values from the released `job_name_for`: resumed runs look these up.
        let cases = [
            (
                "churn_weekly",
                "2024-06-30-1a2b3c4d",
                "c360-churn-weekly-2024-06-30-1a2b3c4d",
            ),
            ("churn_xgb", "0badcafe", "c360-churn-xgb-0badcafe"),
            (
                "a_very_long_job_name_that_goes_on_and_on_x",
                "2024-06-30-1a2b3c4d",
                "c360-a-very-long-job-name-that-goes-on-and-on-x-2024-0-337361a5",
            ),
            ("job__", "--run--", "c360-job-run"),
            ("naïve job", "r", "c360-na-ve-job-r"),
        ];
        for (job, run, want) in cases {
            let got = SageMakerName::derive("c360", &[job, run]);
            assert_eq!(got, want, "{job} {run}");
            assert_eq!(got.as_str(), released_job_name(job, run), "{job} {run}");
        }
    }

    #[test]
    fn derive_matches_the_old_rule_for_many_inputs() {
        let pieces = [
            "",
            "-",
            "_",
            "a",
            "churn_weekly",
            "2024-06-30-1a2b3c4d",
            "x--y__z..w",
            "Ünïcode-ñame",
            "a/b\\c d",
            &"long_name_".repeat(7),
            &"q".repeat(54),
            &"z".repeat(53),
            &"-".repeat(70),
        ];
        for job in pieces {
            for run in pieces {
                let got = SageMakerName::derive("c360", &[job, run]);
                assert_eq!(got.as_str(), released_job_name(job, run), "{job:?} {run:?}");
                assert!(
                    SageMakerName::parse(got.as_str()).is_ok(),
                    "{got} breaks SageMaker's rule"
                );
            }
        }
    }

    #[test]
    fn derived_names_always_follow_sagemakers_rule() {
        for (prefix, parts) in [
            ("", vec![]),
            ("", vec!["", ""]),
            ("-", vec!["--", "é"]),
            ("_x_", vec!["..."]),
            ("", vec![&*"é-".repeat(100)]),
            ("c360", vec![&*"a".repeat(200), "r"]),
            ("c360", vec![&*"a".repeat(53), "-b"]),
        ] {
            let got = SageMakerName::derive(prefix, &parts);
            assert!(
                SageMakerName::parse(got.as_str()).is_ok(),
                "{prefix:?} {parts:?} gave {got:?}"
            );
        }
        assert_eq!(SageMakerName::derive("", &[]).len(), 8, "the hash alone");
        assert_eq!(SageMakerName::derive("-", &["_x_"]), "x");
        let a = SageMakerName::derive("c360", &[&"a".repeat(60), "run1"]);
        let b = SageMakerName::derive("c360", &[&"a".repeat(60), "run2"]);
        assert_eq!(a.len(), 63);
        assert_ne!(a, b, "long names differ by their hash");
    }

    #[test]
    fn parse_takes_sagemakers_names_only() {
        for ok in ["a", "churn-model-1", "A1", "x--y", &"m".repeat(63)] {
            assert_eq!(SageMakerName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "-a", "a-", "a_b", "a.b", "a b", "é", &"m".repeat(64)] {
            let e = SageMakerName::parse(bad).unwrap_err();
            assert_eq!(e.value, bad);
            assert_eq!(
                e.to_string(),
                format!(
                    "{bad:?} is not a valid SageMaker name: 1-63 letters, digits and hyphens, starting and ending with a letter or digit"
                )
            );
        }
    }

    #[test]
    fn serde_keeps_the_plain_string_and_validates() {
        let n: SageMakerName = serde_json::from_str("\"churn-1\"").unwrap();
        assert_eq!(serde_json::to_string(&n).unwrap(), "\"churn-1\"");
        let e = serde_json::from_str::<SageMakerName>("\"churn_1\"").unwrap_err();
        assert!(e.to_string().contains("not a valid SageMaker name"), "{e}");
    }
}
