//! [`StoreUri`]: where a store or a source lives, a local folder or an S3 bucket and
//! prefix. This is the one place in c360 that knows the `s3://` scheme.

use std::fmt;
use std::path::{Path, PathBuf};

/// The scheme of S3 URIs.
const S3: &str = "s3://";
/// The scheme of local folders given as URIs.
const FILE: &str = "file://";

/// What is wrong with `key` as a store key, if anything: keys are relative, use `/`, and
/// have no empty, `.` or `..` parts (so no key can leave its store). Both stores and the
/// prefixes of S3 URIs follow this rule.
pub fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        Some("empty key")
    } else if key.starts_with('/') || key.contains('\\') {
        Some("keys are relative and use '/'")
    } else if key
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty())
    {
        Some("'.', '..' and empty components are not allowed")
    } else {
        None
    }
}

/// A refused store or source URI: the URI as given and why, e.g. `invalid store URI
/// "s3://My_Bucket": the bucket name must be 3-63 lowercase letters, digits, '-' or '.'`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid store URI {uri:?}: {reason}")]
pub struct UriError {
    /// The URI as given.
    pub uri: String,
    /// What is wrong and how to write it instead.
    pub reason: String,
}

/// A store's (or a source's) location, parsed once: `s3://bucket/prefix`, `file://path`
/// or a bare path.
///
/// Rules:
/// - `s3://bucket[/prefix]`: the bucket is 3 to 63 lowercase letters, digits, `-` and
///   `.`, neither starting nor ending with `-` or `.` (S3's rule); the prefix loses its
///   leading and trailing `/` and may be empty; it is a store key prefix, so it follows
///   [`key_problem`]'s rule.
/// - `file://path` or a bare path: a local folder; the path may not be empty. Relative
///   paths are resolved by [`StoreUri::resolve`] (the project root, for c360.toml).
/// - Any other `scheme://` is refused, and so is a blank URI.
///
/// `Display` gives `s3://bucket/prefix` (`s3://bucket` for an empty prefix) or the bare
/// path; that text parses back to the same value, and (de)serialization uses it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum StoreUri {
    /// A folder on local disk.
    File(PathBuf),
    /// A bucket and a key prefix (without leading or trailing `/`; empty for the root).
    S3 { bucket: String, prefix: String },
}

impl StoreUri {
    /// Whether `uri` is written with the `s3://` scheme (the only test for it in c360).
    pub fn is_s3_uri(uri: &str) -> bool {
        uri.starts_with("s3://")
    }

    /// Parses `uri`, or says what is wrong with it.
    pub fn parse(uri: &str) -> Result<StoreUri, UriError> {
        let bad = |reason: String| UriError {
            uri: uri.to_string(),
            reason,
        };
        if uri.trim().is_empty() {
            return Err(bad("may not be empty".into()));
        }
        if let Some(rest) = uri.strip_prefix(S3) {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let ok_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !ok_bucket {
                return Err(bad(
                    "the bucket name must be 3-63 lowercase letters, digits, '-' or '.'".into(),
                ));
            }
            let prefix = prefix.trim_matches('/');
            if let Some(problem) = key_problem(prefix).filter(|_| !prefix.is_empty()) {
                return Err(bad(format!("the prefix {prefix:?}: {problem}")));
            }
            return Ok(StoreUri::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some((scheme, _)) = uri.split_once("://") {
            if scheme != "file" {
                return Err(bad(format!(
                    "unknown scheme {scheme}:// (use a path, file:// or s3://)"
                )));
            }
        }
        let path = uri.strip_prefix(FILE).unwrap_or(uri);
        if path.is_empty() {
            return Err(bad("empty path".into()));
        }
        Ok(StoreUri::File(PathBuf::from(path)))
    }

    /// Whether this is an S3 location.
    pub fn is_s3(&self) -> bool {
        matches!(self, StoreUri::S3 { .. })
    }

    /// The local folder, for a [`StoreUri::File`].
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            StoreUri::File(p) => Some(p),
            StoreUri::S3 { .. } => None,
        }
    }

    /// The bucket and prefix, for a [`StoreUri::S3`].
    pub fn as_s3(&self) -> Option<(&str, &str)> {
        match self {
            StoreUri::S3 { bucket, prefix } => Some((bucket, prefix)),
            StoreUri::File(_) => None,
        }
    }

    /// A relative local path taken as relative to `root` (how c360.toml's URIs are
    /// read); absolute paths and S3 locations are unchanged.
    pub fn resolve(self, root: &Path) -> StoreUri {
        match self {
            StoreUri::File(p) if p.is_relative() => StoreUri::File(root.join(p)),
            other => other,
        }
    }
}

impl fmt::Display for StoreUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Built first, then padded: a width in `{:<30}` applies to the whole URI.
        let text = match self {
            StoreUri::S3 { bucket, prefix } if prefix.is_empty() => format!("{S3}{bucket}"),
            StoreUri::S3 { bucket, prefix } => format!("{S3}{bucket}/{prefix}"),
            StoreUri::File(p) => {
                let p = p.display().to_string();
                // A bare path that looks like a URI would not parse back.
                if p.contains("://") {
                    format!("{FILE}{p}")
                } else {
                    p
                }
            }
        };
        f.pad(&text)
    }
}

impl std::str::FromStr for StoreUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<StoreUri, UriError> {
        StoreUri::parse(s)
    }
}

impl TryFrom<String> for StoreUri {
    type Error = UriError;
    fn try_from(s: String) -> Result<StoreUri, UriError> {
        StoreUri::parse(&s)
    }
}

impl TryFrom<&str> for StoreUri {
    type Error = UriError;
    fn try_from(s: &str) -> Result<StoreUri, UriError> {
        StoreUri::parse(s)
    }
}

impl serde::Serialize for StoreUri {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(bucket: &str, prefix: &str) -> StoreUri {
        StoreUri::S3 {
            bucket: bucket.into(),
            prefix: prefix.into(),
        }
    }

    #[test]
    fn s3_uris_split_into_bucket_and_prefix() {
        // The cases of store::s3::parse_uri's tests, and more.
        assert_eq!(
            StoreUri::parse("s3://my-bucket/a/b/").unwrap(),
            s3("my-bucket", "a/b")
        );
        assert_eq!(
            StoreUri::parse("s3://my-bucket").unwrap(),
            s3("my-bucket", "")
        );
        assert_eq!(
            StoreUri::parse("s3://my-bucket/").unwrap(),
            s3("my-bucket", "")
        );
        assert_eq!(
            StoreUri::parse("s3://b.c-1//c360/runs//").unwrap(),
            s3("b.c-1", "c360/runs")
        );
        let u = StoreUri::parse("s3://artifacts/churn/model.tar.gz").unwrap();
        assert_eq!(u.as_s3(), Some(("artifacts", "churn/model.tar.gz")));
        assert!(u.is_s3() && u.as_path().is_none());
    }

    #[test]
    fn bad_buckets_and_prefixes_are_refused_with_the_rule() {
        let bucket_rule = "the bucket name must be 3-63 lowercase letters, digits, '-' or '.'";
        for bad in [
            "s3://My_Bucket/x",
            "s3://",
            "s3:///x",
            "s3://ab",
            "s3://-ab/x",
            "s3://ab./x",
            &format!("s3://{}", "b".repeat(64)),
        ] {
            let e = StoreUri::parse(bad).unwrap_err();
            assert_eq!(e.uri, bad);
            assert_eq!(e.reason, bucket_rule, "{bad}");
            assert_eq!(
                e.to_string(),
                format!("invalid store URI {bad:?}: {bucket_rule}")
            );
        }
        for (bad, reason) in [
            (
                "s3://b12/../x",
                "the prefix \"../x\": '.', '..' and empty components are not allowed",
            ),
            (
                "s3://b12/a/./x",
                "the prefix \"a/./x\": '.', '..' and empty components are not allowed",
            ),
            (
                "s3://b12/a//x",
                "the prefix \"a//x\": '.', '..' and empty components are not allowed",
            ),
            (
                "s3://b12/a\\x",
                "the prefix \"a\\\\x\": keys are relative and use '/'",
            ),
        ] {
            assert_eq!(StoreUri::parse(bad).unwrap_err().reason, reason, "{bad}");
        }
    }

    #[test]
    fn store_keys_stay_inside_their_store() {
        for ok in [
            "a",
            "a/b.json",
            "runs/j/2024-06-30-ab/run.json",
            ".hidden/x",
        ] {
            assert_eq!(key_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("", "empty key"),
            ("/abs", "keys are relative and use '/'"),
            ("a\\b", "keys are relative and use '/'"),
            ("a/../b", "'.', '..' and empty components are not allowed"),
            ("./a", "'.', '..' and empty components are not allowed"),
            ("a//b", "'.', '..' and empty components are not allowed"),
            ("a/", "'.', '..' and empty components are not allowed"),
        ] {
            assert_eq!(key_problem(bad), Some(why), "{bad:?}");
        }
    }

    #[test]
    fn paths_and_file_uris_are_local_folders() {
        assert_eq!(
            StoreUri::parse("file:///data/store").unwrap(),
            StoreUri::File("/data/store".into())
        );
        assert_eq!(
            StoreUri::parse("store").unwrap(),
            StoreUri::File("store".into())
        );
        assert_eq!(
            StoreUri::parse("./a b/ü").unwrap().as_path(),
            Some(Path::new("./a b/ü"))
        );
        for (bad, reason) in [
            ("", "may not be empty"),
            ("   ", "may not be empty"),
            ("file://", "empty path"),
            (
                "http://x/y",
                "unknown scheme http:// (use a path, file:// or s3://)",
            ),
            (
                "S3://b12/x",
                "unknown scheme S3:// (use a path, file:// or s3://)",
            ),
        ] {
            assert_eq!(StoreUri::parse(bad).unwrap_err().reason, reason, "{bad:?}");
        }
    }

    #[test]
    fn resolve_anchors_relative_paths_only() {
        let root = Path::new("/proj");
        let r = |s: &str| StoreUri::parse(s).unwrap().resolve(root).to_string();
        assert_eq!(r("store"), "/proj/store");
        assert_eq!(r("file://data/src"), "/proj/data/src");
        assert_eq!(r("/abs/store"), "/abs/store");
        assert_eq!(r("file:///abs/store"), "/abs/store");
        assert_eq!(r("s3://bucket/p/"), "s3://bucket/p");
    }

    #[test]
    fn display_parses_back() {
        for s in [
            "s3://bucket",
            "s3://bucket/a/b",
            "/abs/x",
            "rel/x",
            "file:///odd://path",
        ] {
            let u = StoreUri::parse(s).unwrap();
            assert_eq!(StoreUri::parse(&u.to_string()).unwrap(), u, "{s}");
        }
        assert_eq!(
            StoreUri::parse("file:///odd://path").unwrap().to_string(),
            "file:///odd://path"
        );
        assert!(StoreUri::is_s3_uri("s3://b/x") && !StoreUri::is_s3_uri("/s3://"));
    }

    #[test]
    fn serde_uses_the_uri_text() {
        let u: StoreUri = serde_json::from_str("\"s3://bucket/p/\"").unwrap();
        assert_eq!(u, s3("bucket", "p"));
        assert_eq!(serde_json::to_string(&u).unwrap(), "\"s3://bucket/p\"");
        let e = serde_json::from_str::<StoreUri>("\"ftp://x\"").unwrap_err();
        assert!(e.to_string().contains("unknown scheme ftp://"), "{e}");
    }
}
