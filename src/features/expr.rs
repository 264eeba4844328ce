//! The small, engine-neutral expression language of feature sets.
//!
//! Used for row filters (`where = "status == 'completed'"`), aggregated columns, and
//! features computed from other features (`expr = "a / max(b, 1)"`). It maps one to one
//! onto SQL (so a set can later compile to Athena/Spark) and here onto polars expressions.
//!
//! Grammar (lowest precedence first):
//! `or` · `and` · `not` · comparison (`== = != <> < <= > >=`, `is [not] null`,
//! `[not] in (lit, ...)`) · `+ -` · `* /` · unary `-` · literal, name, call, `( )`.
//!
//! Null semantics follow SQL: arithmetic with a null is null; `a / b` is null when `b` is 0
//! (SQL `a / NULLIF(b, 0)`); `if(c, a, b)` gives `b` when `c` is false or null.
//!
//! Any input is safe: text is read by character (names and operators are ASCII, quoted
//! strings any script), and size is bounded while parsing ([`MAX_CHARS`], [`MAX_NESTING`],
//! [`MAX_HEIGHT`], [`MAX_NODES`]), so every later recursive pass has a bounded depth.

use std::fmt;

use polars::prelude::{lit, when, DataType as PlType, Expr as PlExpr, NULL};

/// The value types the language knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    Int,
    Float,
    Bool,
    Str,
    /// A timestamp column: only `is null` and comparisons with timestamps; use
    /// `days_ago(col)` for arithmetic.
    Time,
    /// The type of a bare `null` literal: fits anywhere.
    Null,
}

impl Ty {
    pub fn is_numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Float | Ty::Null)
    }

    /// The common type of two branches or operands, if any.
    pub fn unify(self, other: Ty) -> Option<Ty> {
        match (self, other) {
            (a, b) if a == b => Some(a),
            (Ty::Null, b) => Some(b),
            (a, Ty::Null) => Some(a),
            (Ty::Int, Ty::Float) | (Ty::Float, Ty::Int) => Some(Ty::Float),
            _ => None,
        }
    }

    pub fn polars(self) -> PlType {
        match self {
            Ty::Int => PlType::Int64,
            Ty::Float | Ty::Null => PlType::Float64,
            Ty::Bool => PlType::Boolean,
            Ty::Str => PlType::String,
            Ty::Time => PlType::Int32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Ty::Int => "integer",
            Ty::Float => "float",
            Ty::Bool => "boolean",
            Ty::Str => "string",
            Ty::Time => "timestamp",
            Ty::Null => "null",
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Name(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    IsNull(Box<Expr>, bool),
    In(Box<Expr>, Vec<Expr>, bool),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

/// The functions the language offers, with their arity (None = one or more).
pub const FUNCTIONS: &[(&str, Option<usize>, &str)] = &[
    ("max", None, "largest non-null argument (SQL GREATEST)"),
    ("min", None, "smallest non-null argument (SQL LEAST)"),
    ("abs", Some(1), "absolute value"),
    ("coalesce", None, "first non-null argument"),
    ("if", Some(3), "if(cond, a, b): a when cond is true, else b"),
    ("is_null", Some(1), "true when the argument is null"),
    (
        "days_ago",
        Some(1),
        "in row filters: as-of date minus the date of a timestamp column",
    ),
];

/// The longest expression accepted, in characters.
pub const MAX_CHARS: usize = 10_000;
/// How deeply parentheses, calls, `not` and unary minus may nest inside one another.
pub const MAX_NESTING: u32 = 64;
/// The height of the parsed tree: how many operators may chain (`a + b + ... ` with more
/// terms than this is refused). Every later pass over the tree (names, type check, compile
/// to polars, printing) recurses at most this deep, so no input can overflow the stack.
pub const MAX_HEIGHT: u32 = 128;
/// The most nodes (names, literals, operators, calls) one expression may have.
pub const MAX_NODES: usize = 2_000;
/// With less stack than this left, recursion continues on a new segment of STACK_SEGMENT.
const RED_ZONE: usize = 128 * 1024;
const STACK_SEGMENT: usize = 2 * 1024 * 1024;

/// Why an expression could not be parsed; `pos` counts characters (not bytes) from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {pos})")]
pub struct ParseError {
    pub message: String,
    pub pos: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Str(String),
    Ident(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

/// What to say about a character the language does not know.
fn unexpected_char(c: char) -> String {
    let hint = match c {
        '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}' | '\u{201C}' | '\u{201D}'
        | '\u{201E}' | '\u{201F}' | '\u{00AB}' | '\u{00BB}' | '\u{2039}' | '\u{203A}'
        | '\u{00B4}' | '`' => ", a typographic quote: write strings in straight quotes ' or \"",
        _ if !c.is_ascii() => ", outside the expression language (names and operators are ASCII; other text belongs in quoted strings)",
        _ => "",
    };
    format!("unexpected character {c:?} (U+{:04X}{hint})", c as u32)
}

/// Splits `src` into tokens; positions are character indexes, so text in any script is
/// handled whole (no byte slicing).
fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let n = src.chars().count();
    if n > MAX_CHARS {
        return Err(ParseError {
            message: format!(
                "expression too long: {n} characters, at most {MAX_CHARS}; split it into several features"
            ),
            pos: MAX_CHARS,
        });
    }
    let b: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |m: String, pos| Err(ParseError { message: m, pos });
    let text = |from: usize, to: usize| b[from..to].iter().collect::<String>();
    while i < b.len() {
        let c = b[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let next = b.get(i + 1).copied();
        if c.is_ascii_digit() || (c == '.' && next.is_some_and(|n| n.is_ascii_digit())) {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == '.' || b[i] == '_') {
                i += 1;
            }
            if i < b.len() && (b[i] == 'e' || b[i] == 'E') {
                i += 1;
                if i < b.len() && (b[i] == '+' || b[i] == '-') {
                    i += 1;
                }
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push((Tok::Num(text(start, i).replace('_', "")), start));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(text(start, i)), start));
            continue;
        }
        if c == '\'' || c == '"' {
            let q = c;
            i += 1;
            let mut s = String::new();
            loop {
                let Some(&ch) = b.get(i) else {
                    return err(
                        format!("unterminated string literal (no closing {q})"),
                        start,
                    );
                };
                if ch == q {
                    if b.get(i + 1) == Some(&q) {
                        s.push(q);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                s.push(ch);
                i += 1;
            }
            out.push((Tok::Str(s), start));
            continue;
        }
        let op: Option<&'static str> = match (c, next) {
            ('=', Some('=')) => Some("=="),
            ('!', Some('=')) => Some("!="),
            ('<', Some('>')) => Some("!="),
            ('<', Some('=')) => Some("<="),
            ('>', Some('=')) => Some(">="),
            _ => None,
        };
        if let Some(op) = op {
            out.push((Tok::Op(op), start));
            i += 2;
            continue;
        }
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            ',' => Tok::Comma,
            '+' => Tok::Op("+"),
            '-' => Tok::Op("-"),
            '*' => Tok::Op("*"),
            '/' => Tok::Op("/"),
            '<' => Tok::Op("<"),
            '>' => Tok::Op(">"),
            '=' => Tok::Op("=="),
            _ => return err(unexpected_char(c), start),
        };
        out.push((tok, start));
        i += 1;
    }
    Ok(out)
}

/// A parsed subtree and its height (a leaf is 1).
type Parsed = Result<(Expr, u32), ParseError>;

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
    len: usize,
    nesting: u32,
    nodes: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.0)
    }
    fn pos(&self) -> usize {
        self.toks.get(self.i).map(|t| t.1).unwrap_or(self.len)
    }
    fn err<T>(&self, m: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            message: m.into(),
            pos: self.pos(),
        })
    }
    fn kw(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(s)) if s.eq_ignore_ascii_case(k))
    }
    fn eat_kw(&mut self, k: &str) -> bool {
        if self.kw(k) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn eat(&mut self, t: &Tok) -> bool {
        if self.peek() == Some(t) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, t: &Tok, what: &str) -> Result<(), ParseError> {
        if self.eat(t) {
            Ok(())
        } else {
            self.err(format!("expected {what}"))
        }
    }

    /// Counts a new node of height `h`, refusing trees past the limits before they grow.
    fn node(&mut self, e: Expr, h: u32) -> Parsed {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return self.err(format!(
                "expression too large: more than {MAX_NODES} terms and operators; split it into several features"
            ));
        }
        if h > MAX_HEIGHT {
            return self.err(format!(
                "expression too deep: more than {MAX_HEIGHT} chained operators; split it into several features"
            ));
        }
        Ok((e, h))
    }
    fn bin(&mut self, op: BinOp, l: (Expr, u32), r: (Expr, u32)) -> Parsed {
        let h = l.1.max(r.1) + 1;
        self.node(Expr::Bin(op, Box::new(l.0), Box::new(r.0)), h)
    }
    /// Enters one level of nesting (parentheses, a call, `not`, unary minus).
    fn enter(&mut self) -> Result<(), ParseError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            // The token that opened the level (just consumed) is the one to point at.
            let pos = self
                .i
                .checked_sub(1)
                .and_then(|j| self.toks.get(j))
                .map_or(self.len, |t| t.1);
            return Err(ParseError { pos, message: format!(
                "expression nested too deeply: more than {MAX_NESTING} levels of parentheses, calls, 'not' or '-'"
            )});
        }
        Ok(())
    }
    fn leave(&mut self) {
        self.nesting -= 1;
    }

    /// Every nested level (parentheses, call arguments) starts here: the stack grows on
    /// demand, so the bounded depth fits any thread (2 MiB async workers, debug builds).
    fn or(&mut self) -> Parsed {
        stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || self.or_chain())
    }
    fn or_chain(&mut self) -> Parsed {
        let mut l = self.and()?;
        while self.eat_kw("or") {
            let r = self.and()?;
            l = self.bin(BinOp::Or, l, r)?;
        }
        Ok(l)
    }
    fn and(&mut self) -> Parsed {
        let mut l = self.not()?;
        while self.eat_kw("and") {
            let r = self.not()?;
            l = self.bin(BinOp::And, l, r)?;
        }
        Ok(l)
    }
    fn not(&mut self) -> Parsed {
        if self.eat_kw("not") {
            self.enter()?;
            let (e, h) = stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || self.not())?;
            self.leave();
            return self.node(Expr::Not(Box::new(e)), h + 1);
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Parsed {
        let l = self.add()?;
        if self.eat_kw("is") {
            let negated = self.eat_kw("not");
            if !self.eat_kw("null") {
                return self.err("expected 'null' after 'is'");
            }
            let h = l.1 + 1;
            return self.node(Expr::IsNull(Box::new(l.0), negated), h);
        }
        let negated_in = if self.kw("not") {
            // `x not in (...)`
            self.i += 1;
            if !self.kw("in") {
                return self.err("expected 'in' after 'not'");
            }
            true
        } else {
            false
        };
        if self.eat_kw("in") {
            self.expect(&Tok::LParen, "'(' after 'in'")?;
            let mut items = Vec::new();
            let mut h = l.1;
            loop {
                let (it, ih) = self.unary()?;
                h = h.max(ih);
                items.push(it);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen, "')' closing the 'in' list")?;
            // Compiled as a balanced `or` of comparisons: log2(items) levels.
            let h = h + 1 + usize::BITS - items.len().leading_zeros();
            return self.node(Expr::In(Box::new(l.0), items, negated_in), h);
        }
        let op = match self.peek() {
            Some(Tok::Op("==")) => BinOp::Eq,
            Some(Tok::Op("!=")) => BinOp::Ne,
            Some(Tok::Op("<")) => BinOp::Lt,
            Some(Tok::Op("<=")) => BinOp::Le,
            Some(Tok::Op(">")) => BinOp::Gt,
            Some(Tok::Op(">=")) => BinOp::Ge,
            _ => return Ok(l),
        };
        self.i += 1;
        let r = self.add()?;
        self.bin(op, l, r)
    }
    fn add(&mut self) -> Parsed {
        let mut l = self.mul()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("+")) => BinOp::Add,
                Some(Tok::Op("-")) => BinOp::Sub,
                _ => return Ok(l),
            };
            self.i += 1;
            let r = self.mul()?;
            l = self.bin(op, l, r)?;
        }
    }
    fn mul(&mut self) -> Parsed {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("*")) => BinOp::Mul,
                Some(Tok::Op("/")) => BinOp::Div,
                _ => return Ok(l),
            };
            self.i += 1;
            let r = self.unary()?;
            l = self.bin(op, l, r)?;
        }
    }
    fn unary(&mut self) -> Parsed {
        if self.eat(&Tok::Op("-")) {
            self.enter()?;
            let (e, h) = stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || self.unary())?;
            self.leave();
            return match e {
                Expr::Int(v) if v.checked_neg().is_some() => Ok((Expr::Int(-v), h)),
                Expr::Float(v) => Ok((Expr::Float(-v), h)),
                e => self.node(Expr::Neg(Box::new(e)), h + 1),
            };
        }
        self.primary()
    }
    fn primary(&mut self) -> Parsed {
        let pos = self.pos();
        let Some((tok, _)) = self.toks.get(self.i).cloned() else {
            return self.err("unexpected end of expression");
        };
        self.i += 1;
        match tok {
            Tok::Num(s) => {
                let e = if s.contains(['.', 'e', 'E']) {
                    s.parse::<f64>().map(Expr::Float).map_err(|_| ParseError {
                        message: format!("bad number {s:?}"),
                        pos,
                    })?
                } else {
                    s.parse::<i64>().map(Expr::Int).map_err(|_| ParseError {
                        message: format!(
                            "bad integer {s:?} (integers lie between -9223372036854775808 and 9223372036854775807)"
                        ),
                        pos,
                    })?
                };
                self.node(e, 1)
            }
            Tok::Str(s) => self.node(Expr::Str(s), 1),
            Tok::LParen => {
                self.enter()?;
                let e = self.or()?;
                self.expect(&Tok::RParen, "')'")?;
                self.leave();
                Ok(e)
            }
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                match lower.as_str() {
                    "true" => return self.node(Expr::Bool(true), 1),
                    "false" => return self.node(Expr::Bool(false), 1),
                    "null" => return self.node(Expr::Null, 1),
                    "and" | "or" | "not" | "in" | "is" => {
                        return Err(ParseError {
                            message: format!("unexpected keyword '{name}'"),
                            pos,
                        })
                    }
                    _ => {}
                }
                if self.eat(&Tok::LParen) {
                    self.enter()?;
                    let mut args = Vec::new();
                    let mut h = 0;
                    if !self.eat(&Tok::RParen) {
                        loop {
                            let (a, ah) = self.or()?;
                            h = h.max(ah);
                            args.push(a);
                            if !self.eat(&Tok::Comma) {
                                break;
                            }
                        }
                        self.expect(&Tok::RParen, "')' closing the call")?;
                    }
                    self.leave();
                    let Some((_, arity, _)) = FUNCTIONS.iter().find(|f| f.0 == lower) else {
                        let names: Vec<_> = FUNCTIONS.iter().map(|f| f.0).collect();
                        return Err(ParseError {
                            message: format!(
                                "unknown function '{name}' (known: {})",
                                names.join(", ")
                            ),
                            pos,
                        });
                    };
                    match arity {
                        Some(n) if args.len() != *n => {
                            return Err(ParseError {
                                message: format!(
                                    "{lower}() takes {n} argument(s), got {}",
                                    args.len()
                                ),
                                pos,
                            })
                        }
                        None if args.is_empty() => {
                            return Err(ParseError {
                                message: format!("{lower}() needs at least one argument"),
                                pos,
                            })
                        }
                        _ => {}
                    }
                    // coalesce() compiles to a chain as long as its argument list.
                    let h = if lower == "coalesce" {
                        h.saturating_add(u32::try_from(args.len()).unwrap_or(u32::MAX))
                    } else {
                        h + 1
                    };
                    return self.node(Expr::Call(lower, args), h);
                }
                self.node(Expr::Name(name), 1)
            }
            other => Err(ParseError {
                message: format!("unexpected {}", describe(&other)),
                pos,
            }),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(s) | Tok::Ident(s) => format!("'{s}'"),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Op(o) => format!("'{o}'"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
    }
}

/// Parses an expression. Text in any script is safe; sizes are bounded by [`MAX_CHARS`],
/// [`MAX_NESTING`], [`MAX_HEIGHT`] and [`MAX_NODES`] (an error names the limit).
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        len: src.chars().count(),
        nesting: 0,
        nodes: 0,
    };
    let (e, _) = p.or()?;
    if let Some((t, _)) = p.toks.get(p.i) {
        let t = t.clone();
        return p.err(format!("unexpected {} after the expression", describe(&t)));
    }
    Ok(e)
}

impl Expr {
    /// Every name the expression refers to (columns or features), in order of appearance.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Name(n) = e {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        });
        out
    }

    fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Neg(e) | Expr::Not(e) | Expr::IsNull(e, _) => e.walk(f),
            Expr::In(e, items, _) => {
                e.walk(f);
                items.iter().for_each(|i| i.walk(f));
            }
            Expr::Bin(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.walk(f)),
            _ => {}
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Int(v) => write!(f, "{v}"),
            Expr::Float(v) => write!(f, "{v:?}"),
            Expr::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Expr::Bool(b) => write!(f, "{b}"),
            Expr::Null => f.write_str("null"),
            Expr::Name(n) => f.write_str(n),
            Expr::Neg(e) => write!(f, "-({e})"),
            Expr::Not(e) => write!(f, "not ({e})"),
            Expr::IsNull(e, neg) => write!(f, "({e}) is {}null", if *neg { "not " } else { "" }),
            Expr::In(e, items, neg) => {
                write!(f, "({e}) {}in (", if *neg { "not " } else { "" })?;
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{it}")?;
                }
                f.write_str(")")
            }
            Expr::Bin(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
            Expr::Call(n, args) => {
                write!(f, "{n}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// What names mean where an expression is compiled.
pub trait Scope {
    /// The type and polars expression of a name, or an error message.
    fn resolve(&self, name: &str) -> Result<(Ty, PlExpr), String>;
    /// `days_ago(column)`: only row scopes offer it.
    fn days_ago(&self, _column: &str) -> Result<PlExpr, String> {
        Err("days_ago() is only available in row filters and aggregated columns".into())
    }
}

/// Type-checks and compiles an expression to a polars expression.
pub fn compile(e: &Expr, scope: &dyn Scope) -> Result<(Ty, PlExpr), String> {
    // A compile step takes several KiB of stack in a debug build; the tree is at most
    // MAX_HEIGHT deep, and the stack grows on demand below RED_ZONE.
    stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || compile_node(e, scope))
}

fn compile_node(e: &Expr, scope: &dyn Scope) -> Result<(Ty, PlExpr), String> {
    Ok(match e {
        Expr::Int(v) => (Ty::Int, lit(*v)),
        Expr::Float(v) => (Ty::Float, lit(*v)),
        Expr::Str(s) => (Ty::Str, lit(s.clone())),
        Expr::Bool(b) => (Ty::Bool, lit(*b)),
        Expr::Null => (Ty::Null, lit(NULL)),
        Expr::Name(n) => scope.resolve(n)?,
        Expr::Neg(x) => {
            let (t, x) = compile(x, scope)?;
            if !t.is_numeric() {
                return Err(format!("cannot negate a {t} value"));
            }
            (t, lit(0).cast(t.polars()) - x)
        }
        Expr::Not(x) => {
            let (t, x) = compile(x, scope)?;
            if t != Ty::Bool && t != Ty::Null {
                return Err(format!("'not' needs a boolean, got {t}"));
            }
            (Ty::Bool, x.not())
        }
        Expr::IsNull(x, neg) => {
            let (_, x) = compile(x, scope)?;
            (Ty::Bool, if *neg { x.is_not_null() } else { x.is_null() })
        }
        Expr::In(x, items, neg) => {
            let (t, mut xe) = compile(x, scope)?;
            if t == Ty::Str
                && items
                    .iter()
                    .any(|i| !matches!(i, Expr::Str(_) | Expr::Null))
            {
                xe = xe.cast(PlType::String);
            }
            let mut tests = Vec::with_capacity(items.len());
            for it in items {
                let (ti, ie) = compile(it, scope)?;
                if t.unify(ti).is_none() {
                    return Err(format!(
                        "'in' compares a {t} value with a {ti} literal {it}"
                    ));
                }
                tests.push(xe.clone().eq(ie));
            }
            let e = balanced_or(tests);
            (Ty::Bool, if *neg { e.not() } else { e })
        }
        Expr::Bin(op, a, b) => {
            let (ta, ea) = compile(a, scope)?;
            let (tb, eb) = compile(b, scope)?;
            match op {
                BinOp::And | BinOp::Or => {
                    for (t, side) in [(ta, a), (tb, b)] {
                        if t != Ty::Bool && t != Ty::Null {
                            return Err(format!(
                                "'{}' needs booleans, but {side} is {t}",
                                op.symbol()
                            ));
                        }
                    }
                    let e = if *op == BinOp::And {
                        ea.and(eb)
                    } else {
                        ea.or(eb)
                    };
                    (Ty::Bool, e)
                }
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    if ta.unify(tb).is_none() {
                        return Err(format!(
                            "cannot compare {a} ({ta}) with {b} ({tb}) using '{}'",
                            op.symbol()
                        ));
                    }
                    // Text columns may be Enums (see source::load_trimmed): equality with a
                    // literal compares codes; anything else compares the text itself.
                    let literal = |x: &Expr| matches!(x, Expr::Str(_) | Expr::Null);
                    let by_code = matches!(op, BinOp::Eq | BinOp::Ne) && (literal(a) || literal(b));
                    let (ea, eb) = if (ta == Ty::Str || tb == Ty::Str) && !by_code {
                        (ea.cast(PlType::String), eb.cast(PlType::String))
                    } else {
                        (ea, eb)
                    };
                    let e = match op {
                        BinOp::Eq => ea.eq(eb),
                        BinOp::Ne => ea.neq(eb),
                        BinOp::Lt => ea.lt(eb),
                        BinOp::Le => ea.lt_eq(eb),
                        BinOp::Gt => ea.gt(eb),
                        _ => ea.gt_eq(eb),
                    };
                    (Ty::Bool, e)
                }
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                    for (t, side) in [(ta, a), (tb, b)] {
                        if !t.is_numeric() {
                            return Err(format!(
                                "'{}' needs numbers, but {side} is {t}",
                                op.symbol()
                            ));
                        }
                    }
                    if *op == BinOp::Div {
                        let num = ea.cast(PlType::Float64);
                        let den = eb.cast(PlType::Float64);
                        let e = when(den.clone().eq(lit(0.0)))
                            .then(lit(NULL).cast(PlType::Float64))
                            .otherwise(num / den);
                        (Ty::Float, e)
                    } else {
                        let t = ta.unify(tb).unwrap_or(Ty::Float);
                        let t = if t == Ty::Null { Ty::Float } else { t };
                        let (ea, eb) = (ea.cast(t.polars()), eb.cast(t.polars()));
                        let e = match op {
                            BinOp::Add => ea + eb,
                            BinOp::Sub => ea - eb,
                            _ => ea * eb,
                        };
                        (t, e)
                    }
                }
            }
        }
        Expr::Call(name, args) => compile_call(name, args, scope)?,
    })
}

/// `a or b or ...` as a balanced tree (log2(n) deep, not n), same value.
fn balanced_or(mut v: Vec<PlExpr>) -> PlExpr {
    while v.len() > 1 {
        let mut next = Vec::with_capacity(v.len().div_ceil(2));
        let mut it = v.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => a.or(b),
                None => a,
            });
        }
        v = next;
    }
    v.pop().unwrap_or_else(|| lit(false))
}

fn compile_call(name: &str, args: &[Expr], scope: &dyn Scope) -> Result<(Ty, PlExpr), String> {
    if name == "days_ago" {
        let Some(Expr::Name(col)) = args.first() else {
            return Err("days_ago() takes a timestamp column name".into());
        };
        return Ok((Ty::Int, scope.days_ago(col)?));
    }
    let mut compiled = Vec::with_capacity(args.len());
    for a in args {
        compiled.push(compile(a, scope)?);
    }
    let unify_all = |items: &[(Ty, PlExpr)]| -> Result<Ty, String> {
        let mut t = Ty::Null;
        for (ti, _) in items {
            t = t
                .unify(*ti)
                .ok_or_else(|| format!("{name}() mixes {t} and {ti} arguments"))?;
        }
        Ok(t)
    };
    Ok(match name {
        "max" | "min" => {
            let t = unify_all(&compiled)?;
            if !t.is_numeric() {
                return Err(format!("{name}() needs numbers, got {t}"));
            }
            let t = if t == Ty::Null { Ty::Float } else { t };
            let es: Vec<_> = compiled.into_iter().map(|c| c.1.cast(t.polars())).collect();
            let e = if name == "max" {
                polars::lazy::dsl::max_horizontal(es)
            } else {
                polars::lazy::dsl::min_horizontal(es)
            }
            .map_err(|e| e.to_string())?;
            (t, e)
        }
        "abs" => {
            let (t, e) = compiled
                .into_iter()
                .next()
                .ok_or("abs() takes one argument")?;
            if !t.is_numeric() {
                return Err(format!("abs() needs a number, got {t}"));
            }
            (t, e.abs())
        }
        "coalesce" => {
            let t = unify_all(&compiled)?;
            let mut it = compiled.into_iter().rev();
            let (_, mut acc) = it.next().ok_or("coalesce() needs arguments")?;
            acc = acc.cast(t.polars());
            for (_, e) in it {
                let e = e.cast(t.polars());
                acc = when(e.clone().is_not_null()).then(e).otherwise(acc);
            }
            (t, acc)
        }
        "if" => {
            let mut it = compiled.into_iter();
            let (tc, c) = it.next().ok_or("if() takes three arguments")?;
            let (ta, a) = it.next().ok_or("if() takes three arguments")?;
            let (tb, b) = it.next().ok_or("if() takes three arguments")?;
            if tc != Ty::Bool && tc != Ty::Null {
                return Err(format!("if() needs a boolean condition, got {tc}"));
            }
            let t = ta
                .unify(tb)
                .ok_or_else(|| format!("if() branches have different types: {ta} and {tb}"))?;
            let t = if t == Ty::Null { Ty::Float } else { t };
            (
                t,
                when(c.fill_null(lit(false)))
                    .then(a.cast(t.polars()))
                    .otherwise(b.cast(t.polars())),
            )
        }
        "is_null" => {
            let (_, e) = compiled
                .into_iter()
                .next()
                .ok_or("is_null() takes one argument")?;
            (Ty::Bool, e.is_null())
        }
        other => return Err(format!("unknown function '{other}'")),
    })
}

#[cfg(test)]
mod tests;
