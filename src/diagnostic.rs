//! One diagnostics path for every definition file (`c360.toml`, `features/*.toml`,
//! `models/*/model.toml`, `jobs/*.toml`): a [`Diagnostic`] names the file, the key, the line
//! when it is known, and the reason (saying how to fix it); a [`Diagnostics`] collects every
//! problem of a file instead of stopping at the first. The TOML span → line arithmetic lives
//! here once ([`line_of_offset`], [`toml_error`], [`LineIndex`]).

use std::fmt;
use std::path::Path;

/// One problem in a definition file.
///
/// Displayed as `file: key: reason`, followed by ` (line N)` when the line is known and the
/// key does not already say it (a TOML syntax error's key is `line N (snippet)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the user named it (a path, or e.g. `c360.toml (defaults)`).
    pub file: String,
    /// The key path in the file (`risk_bands[1].below`), `(file)` for the file as a whole,
    /// or `line N (snippet)` for a TOML syntax error.
    pub key: String,
    /// The 1-based line the key is on, when known.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub reason: String,
}

impl Diagnostic {
    /// A problem at `key` of `file`, line unknown.
    pub fn new(file: impl Into<String>, key: impl Into<String>, reason: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            key: key.into(),
            line: None,
            reason: reason.into(),
        }
    }

    /// The same problem, on `line`.
    pub fn at_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.reason)?;
        match self.line {
            Some(n) if !self.key.starts_with(&format!("line {n}")) => write!(f, " (line {n})"),
            _ => Ok(()),
        }
    }
}

/// Every problem found in one or more files (never empty when returned as an error).
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// Collects the problems of one file: each is placed on its line when the file's text is
/// known. `finish` turns an empty collector into `Ok`.
#[derive(Debug)]
pub struct Collector<'t> {
    file: String,
    lines: Option<LineIndex<'t>>,
    found: Vec<Diagnostic>,
}

impl<'t> Collector<'t> {
    /// A collector for `file` whose text is `text` (`None` when there is no text, e.g. the
    /// built-in defaults): keys are then reported without lines.
    pub fn new(file: &Path, text: Option<&'t str>) -> Self {
        Collector::named(file.display().to_string(), text)
    }

    /// [`Collector::new`] for a file named by a string.
    pub fn named(file: impl Into<String>, text: Option<&'t str>) -> Self {
        Collector {
            file: file.into(),
            lines: text.map(LineIndex::new),
            found: Vec::new(),
        }
    }

    /// The file's name, as diagnostics show it.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Records a problem at `key` (the line is looked up).
    pub fn push(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        let key = key.into();
        let line = self.lines.as_ref().and_then(|l| l.line_of_key(&key));
        self.found.push(Diagnostic {
            file: self.file.clone(),
            key,
            line,
            reason: reason.into(),
        });
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The problems recorded, in order.
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.found
    }

    /// `Ok(value)` when nothing was recorded, else every problem.
    pub fn finish<T>(self, value: T) -> Result<T, Diagnostics> {
        if self.found.is_empty() {
            Ok(value)
        } else {
            Err(Diagnostics(self.found))
        }
    }
}

/// The 1-based line of byte `offset` in `text` (bytes, not a str slice: an offset inside a
/// character must not panic; past the end counts as the last line).
pub fn line_of_offset(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The reason of a TOML error. The parser gives no text for some (a carriage return not
/// followed by a newline, other control characters): say what to look for.
pub fn toml_reason(e: &toml::de::Error) -> String {
    match e.message().trim() {
        "" => "not valid TOML here: look for a control character (e.g. a carriage return \
               without a newline) and save the file as plain text"
            .into(),
        m => m.to_string(),
    }
}

/// A TOML syntax or shape error of `file` as a diagnostic: key `line N` (or `(document)`
/// when the parser gives no place), the line, and [`toml_reason`]. Used for `c360.toml`,
/// jobs and `model.toml`.
pub fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> Diagnostic {
    toml_error_at(file, text, e, false)
}

/// [`toml_error`] with the start of the line quoted in the key, `line N (snippet)` (the form
/// feature set files use).
pub fn toml_error_quoted(file: &str, text: &str, e: &toml::de::Error) -> Diagnostic {
    toml_error_at(file, text, e, true)
}

fn toml_error_at(file: &str, text: &str, e: &toml::de::Error, quote: bool) -> Diagnostic {
    let Some(span) = e.span() else {
        return Diagnostic::new(file, "(document)", toml_reason(e));
    };
    let line = line_of_offset(text, span.start);
    let key = if quote {
        let snippet = text
            .lines()
            .nth(line - 1)
            .unwrap_or("")
            .trim()
            .chars()
            .take(60)
            .collect::<String>();
        format!("line {line} ({snippet})")
    } else {
        format!("line {line}")
    };
    Diagnostic {
        file: file.to_string(),
        key,
        line: Some(line),
        reason: toml_reason(e),
    }
}

/// Finds the line of a key path (`objective`, `sagemaker.model_data`, `features[2]`,
/// `risk_bands[1].below`) in a TOML text. A key that is not written (a missing setting) is
/// placed on its nearest written parent (the `[table]` it belongs in), or nowhere.
#[derive(Debug)]
pub struct LineIndex<'t> {
    text: &'t str,
    doc: Option<toml_edit::ImDocument<&'t str>>,
}

impl<'t> LineIndex<'t> {
    /// Indexes `text` (a text that does not parse gives no lines).
    pub fn new(text: &'t str) -> Self {
        LineIndex {
            text,
            doc: toml_edit::ImDocument::parse(text).ok(),
        }
    }

    /// The 1-based line of `key`, if it (or a parent of it) is written in the text.
    pub fn line_of_key(&self, key: &str) -> Option<usize> {
        let doc = self.doc.as_ref()?;
        let mut item = doc.as_item();
        let mut best = None;
        for segment in key.split('.') {
            let (name, indexes) = match segment.find('[') {
                Some(i) => (&segment[..i], &segment[i..]),
                None => (segment, ""),
            };
            if !name.is_empty() {
                match item.get(name) {
                    Some(next) => item = next,
                    None => return best,
                }
                best = item
                    .span()
                    .map(|s| line_of_offset(self.text, s.start))
                    .or(best);
            }
            for index in indexes.split('[').filter(|s| !s.is_empty()) {
                let Some(i) = index.trim_end_matches(']').parse::<usize>().ok() else {
                    return best;
                };
                match item.get(i) {
                    Some(next) => item = next,
                    None => return best,
                }
                best = item
                    .span()
                    .map(|s| line_of_offset(self.text, s.start))
                    .or(best);
            }
        }
        best
    }
}

/// The entries of `dir` that `keep` accepts, sorted by path (a folder that cannot be read
/// has none: its absence is not a problem of any definition).
pub fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<std::path::PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| keep(p))
        .collect();
    out.sort();
    out
}

/// Loads every `*.{ext}` file of `dir` with `load`, in name order: what loaded, and every
/// problem of the files that did not.
pub fn load_folder<T>(
    dir: &Path,
    ext: &str,
    load: impl Fn(&Path) -> Result<T, Vec<Diagnostic>>,
) -> (Vec<T>, Vec<Diagnostic>) {
    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    for f in sorted_entries(dir, |p| p.extension().is_some_and(|e| e == ext)) {
        match load(&f) {
            Ok(t) => loaded.push(t),
            Err(e) => problems.extend(e),
        }
    }
    (loaded, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "objective = \"binary:logistic\"\nfeatures = [\n  \"a\",\n  \"b\",\n]\n\n[artifact]\npath = \"m.json\"\n\n[[risk_bands]]\nname = \"low\"\nbelow = 0.3\n[[risk_bands]]\nname = \"high\"\nbelow = 0.1\n";

    #[test]
    fn keys_are_found_on_their_lines() {
        let l = LineIndex::new(TEXT);
        assert_eq!(l.line_of_key("objective"), Some(1));
        assert_eq!(l.line_of_key("features[1]"), Some(4));
        assert_eq!(l.line_of_key("artifact.path"), Some(8));
        assert_eq!(l.line_of_key("risk_bands[1].below"), Some(15));
        assert_eq!(l.line_of_key("risk_bands[0].name"), Some(11));
        // Not written: the nearest parent, or nothing.
        assert_eq!(l.line_of_key("artifact.other"), Some(7));
        assert_eq!(l.line_of_key("feature_set"), None);
        assert_eq!(l.line_of_key("features[9]"), l.line_of_key("features"));
        assert_eq!(
            l.line_of_key("risk_bands[x].below"),
            l.line_of_key("risk_bands")
        );
        assert_eq!(LineIndex::new("not = = toml").line_of_key("not"), None);
    }

    #[test]
    fn offsets_never_panic() {
        assert_eq!(line_of_offset("a\nb", 0), 1);
        assert_eq!(line_of_offset("a\nb", 2), 2);
        assert_eq!(line_of_offset("a\nb", 99), 2);
        assert_eq!(line_of_offset("é\n", 1), 1);
    }

    #[test]
    fn display_adds_the_line_once() {
        let d = Diagnostic::new("m.toml", "objective", "bad").at_line(Some(3));
        assert_eq!(d.to_string(), "m.toml: objective: bad (line 3)");
        let d = Diagnostic::new("m.toml", "line 3 (x = )", "bad").at_line(Some(3));
        assert_eq!(d.to_string(), "m.toml: line 3 (x = ): bad");
        let d = Diagnostic::new("m.toml", "(file)", "not found");
        assert_eq!(d.to_string(), "m.toml: (file): not found");
    }

    #[test]
    fn a_collector_finds_lines_and_keeps_every_problem() {
        let mut c = Collector::named("m.toml", Some(TEXT));
        c.push("objective", "one");
        c.push("risk_bands[1].below", "two");
        let e = c.finish(()).unwrap_err();
        assert_eq!(e.0.len(), 2);
        assert_eq!(e.0[0].line, Some(1));
        assert_eq!(e.0[1].line, Some(15));
        assert!(Collector::named("m.toml", None).finish(7).is_ok());
    }
}
