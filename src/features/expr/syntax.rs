//! The expression language's syntax: the lexer (characters to tokens) and the
//! recursive-descent parser (tokens to an [`Expr`] tree), with the size limits checked as
//! it reads ([`MAX_CHARS`], [`MAX_NESTING`], [`MAX_HEIGHT`], [`MAX_NODES`]).

use super::*;

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
