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

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, ParseError> {
    let b = src.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    let err = |m: String, pos| Err(ParseError { message: m, pos });
    while i < b.len() {
        let c = b[i] as char;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == '.' && i + 1 < b.len() && b[i + 1].is_ascii_digit()) {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.' || b[i] == b'_') {
                i += 1;
            }
            if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
                i += 1;
                if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
                    i += 1;
                }
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push((Tok::Num(src[start..i].replace('_', "")), start));
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_string()), start));
            continue;
        }
        if c == '\'' || c == '"' {
            let q = b[i];
            i += 1;
            let mut s = String::new();
            loop {
                if i >= b.len() {
                    return err("unterminated string literal".into(), start);
                }
                if b[i] == q {
                    if i + 1 < b.len() && b[i + 1] == q {
                        s.push(q as char);
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                let ch = src[i..].chars().next().unwrap_or('?');
                s.push(ch);
                i += ch.len_utf8();
            }
            out.push((Tok::Str(s), start));
            continue;
        }
        let two = if i + 1 < b.len() { &src[i..i + 2] } else { "" };
        let op: Option<&'static str> = match two {
            "==" => Some("=="),
            "!=" => Some("!="),
            "<>" => Some("!="),
            "<=" => Some("<="),
            ">=" => Some(">="),
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
            _ => return err(format!("unexpected character {c:?}"), start),
        };
        out.push((tok, start));
        i += 1;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    i: usize,
    len: usize,
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

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.and()?;
        while self.eat_kw("or") {
            let r = self.and()?;
            l = Expr::Bin(BinOp::Or, Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.not()?;
        while self.eat_kw("and") {
            let r = self.not()?;
            l = Expr::Bin(BinOp::And, Box::new(l), Box::new(r));
        }
        Ok(l)
    }
    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.eat_kw("not") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.cmp()
    }
    fn cmp(&mut self) -> Result<Expr, ParseError> {
        let l = self.add()?;
        if self.eat_kw("is") {
            let negated = self.eat_kw("not");
            if !self.eat_kw("null") {
                return self.err("expected 'null' after 'is'");
            }
            return Ok(Expr::IsNull(Box::new(l), negated));
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
            loop {
                items.push(self.unary()?);
                if !self.eat(&Tok::Comma) {
                    break;
                }
            }
            self.expect(&Tok::RParen, "')' closing the 'in' list")?;
            return Ok(Expr::In(Box::new(l), items, negated_in));
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
        Ok(Expr::Bin(op, Box::new(l), Box::new(r)))
    }
    fn add(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.mul()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("+")) => BinOp::Add,
                Some(Tok::Op("-")) => BinOp::Sub,
                _ => return Ok(l),
            };
            self.i += 1;
            let r = self.mul()?;
            l = Expr::Bin(op, Box::new(l), Box::new(r));
        }
    }
    fn mul(&mut self) -> Result<Expr, ParseError> {
        let mut l = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Tok::Op("*")) => BinOp::Mul,
                Some(Tok::Op("/")) => BinOp::Div,
                _ => return Ok(l),
            };
            self.i += 1;
            let r = self.unary()?;
            l = Expr::Bin(op, Box::new(l), Box::new(r));
        }
    }
    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.eat(&Tok::Op("-")) {
            return Ok(match self.unary()? {
                Expr::Int(v) => Expr::Int(-v),
                Expr::Float(v) => Expr::Float(-v),
                e => Expr::Neg(Box::new(e)),
            });
        }
        self.primary()
    }
    fn primary(&mut self) -> Result<Expr, ParseError> {
        let pos = self.pos();
        let Some((tok, _)) = self.toks.get(self.i).cloned() else {
            return self.err("unexpected end of expression");
        };
        self.i += 1;
        match tok {
            Tok::Num(s) => {
                if s.contains(['.', 'e', 'E']) {
                    s.parse::<f64>().map(Expr::Float).map_err(|_| ParseError {
                        message: format!("bad number {s:?}"),
                        pos,
                    })
                } else {
                    s.parse::<i64>().map(Expr::Int).map_err(|_| ParseError {
                        message: format!("bad integer {s:?}"),
                        pos,
                    })
                }
            }
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::LParen => {
                let e = self.or()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::Ident(name) => {
                let lower = name.to_ascii_lowercase();
                match lower.as_str() {
                    "true" => return Ok(Expr::Bool(true)),
                    "false" => return Ok(Expr::Bool(false)),
                    "null" => return Ok(Expr::Null),
                    "and" | "or" | "not" | "in" | "is" => {
                        return Err(ParseError {
                            message: format!("unexpected keyword '{name}'"),
                            pos,
                        })
                    }
                    _ => {}
                }
                if self.eat(&Tok::LParen) {
                    let mut args = Vec::new();
                    if !self.eat(&Tok::RParen) {
                        loop {
                            args.push(self.or()?);
                            if !self.eat(&Tok::Comma) {
                                break;
                            }
                        }
                        self.expect(&Tok::RParen, "')' closing the call")?;
                    }
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
                    return Ok(Expr::Call(lower, args));
                }
                Ok(Expr::Name(name))
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

/// Parses an expression.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        i: 0,
        len: src.len(),
    };
    let e = p.or()?;
    if p.i < p.toks.len() {
        let t = p.toks[p.i].0.clone();
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
            let mut acc: Option<PlExpr> = None;
            for it in items {
                let (ti, ie) = compile(it, scope)?;
                if t.unify(ti).is_none() {
                    return Err(format!(
                        "'in' compares a {t} value with a {ti} literal {it}"
                    ));
                }
                let c = xe.clone().eq(ie);
                acc = Some(match acc {
                    None => c,
                    Some(a) => a.or(c),
                });
            }
            let e = acc.unwrap_or_else(|| lit(false));
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

fn compile_call(name: &str, args: &[Expr], scope: &dyn Scope) -> Result<(Ty, PlExpr), String> {
    if name == "days_ago" {
        let Expr::Name(col) = &args[0] else {
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
mod tests {
    use super::*;

    #[test]
    fn parses_precedence_and_keywords() {
        let e = parse("(a - b) / max(b, 1) > 2 and not c is null or d in ('x', 'y')").unwrap();
        assert_eq!(
            e.to_string(),
            "(((((a - b) / max(b, 1)) > 2) and not ((c) is null)) or (d) in ('x', 'y'))"
        );
        assert_eq!(e.names(), vec!["a", "b", "c", "d"]);
        assert_eq!(parse("-3").unwrap(), Expr::Int(-3));
        assert_eq!(
            parse("status = 'it''s'").unwrap().to_string(),
            "(status == 'it''s')"
        );
        assert_eq!(
            parse("x not in (1, 2)").unwrap().to_string(),
            "(x) not in (1, 2)"
        );
    }

    #[test]
    fn reports_position_and_reason() {
        let e = parse("a + ").unwrap_err();
        assert_eq!(e.message, "unexpected end of expression");
        assert_eq!(e.pos, 4);
        let e = parse("foo(a)").unwrap_err();
        assert!(e.message.starts_with("unknown function 'foo'"), "{e}");
        let e = parse("if(a, b)").unwrap_err();
        assert!(e.message.contains("takes 3 argument"), "{e}");
        assert!(parse("a b")
            .unwrap_err()
            .message
            .contains("after the expression"));
        assert!(parse("'abc").unwrap_err().message.contains("unterminated"));
    }
}
