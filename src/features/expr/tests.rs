//! Unit tests of the expression language: parsing, limits, typing and compilation.

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

#[test]
fn non_ascii_text_never_splits_a_character() {
    // Inside quotes any script is text; positions count characters.
    let e = parse("status == 'complété ✓' and x > 1").unwrap();
    assert_eq!(e.to_string(), "((status == 'complété ✓') and (x > 1))");
    let e = parse("status == ‘completed’").unwrap_err();
    assert_eq!(e.pos, 10);
    assert!(e.message.contains("typographic quote"), "{e}");
    assert!(e.message.contains("U+2018"), "{e}");
    let e = parse("amount > 5€").unwrap_err();
    assert_eq!(e.pos, 10);
    assert!(e.message.contains("'€'"), "{e}");
    let e = parse("é").unwrap_err();
    assert_eq!(e.pos, 0);
    assert_eq!(parse("a\u{a0}+\u{2003}b").unwrap().to_string(), "(a + b)");
    let e = parse("'naïve").unwrap_err();
    assert!(e.message.contains("unterminated"), "{e}");
    let e = parse("x ≥ 1").unwrap_err();
    assert_eq!(e.pos, 2);
}

#[test]
fn depth_and_size_are_bounded() {
    let ok = format!("{}x{}", "(".repeat(64), ")".repeat(64));
    assert_eq!(parse(&ok).unwrap(), Expr::Name("x".into()));
    let deep = format!("{}x{}", "(".repeat(1_000), ")".repeat(1_000));
    let e = parse(&deep).unwrap_err();
    assert!(e.message.contains("nested too deeply"), "{e}");
    assert_eq!(e.pos, 64);
    let nots = "not ".repeat(2_000) + "x";
    assert!(parse(&nots)
        .unwrap_err()
        .message
        .contains("nested too deeply"));
    let negs = "-".repeat(9_000) + "x";
    assert!(parse(&negs)
        .unwrap_err()
        .message
        .contains("nested too deeply"));
    let calls = "abs(".repeat(1_000) + "x" + &")".repeat(1_000);
    assert!(parse(&calls)
        .unwrap_err()
        .message
        .contains("nested too deeply"));
    // A chain of 128 terms is fine; 129 is refused; 100,000 hits the length limit.
    let sum = |n: usize| {
        (0..n)
            .map(|i| format!("a{i}"))
            .collect::<Vec<_>>()
            .join("+")
    };
    let e = parse(&sum(128)).unwrap();
    assert_eq!(e.names().len(), 128);
    assert!(e.to_string().starts_with("((((("));
    let e = parse(&sum(129)).unwrap_err();
    assert!(e.message.contains("too deep"), "{e}");
    let flat = vec!["1"; 100_000].join("+");
    assert!(parse(&flat).unwrap_err().message.contains("too long"));
    let deep = format!("{}x{}", "(".repeat(20_000), ")".repeat(20_000));
    assert!(parse(&deep).unwrap_err().message.contains("too long"));
    // Wide but shallow: the node limit.
    let wide = format!("max({})", vec!["1"; 2_500].join(","));
    let e = parse(&wide).unwrap_err();
    assert!(e.message.contains("too large"), "{e}");
    let wide_in = format!("x in ({})", vec!["1"; 2_500].join(","));
    assert!(parse(&wide_in).unwrap_err().message.contains("too large"));
}

#[test]
fn trees_at_the_limits_compile_on_a_small_stack() {
    struct AnyFloat;
    impl Scope for AnyFloat {
        fn resolve(&self, name: &str) -> Result<(Ty, PlExpr), String> {
            Ok((Ty::Float, polars::prelude::col(name)))
        }
    }
    let chain = (0..128)
        .map(|i| format!("a{i}"))
        .collect::<Vec<_>>()
        .join("+");
    let nest = format!("{}x{}", "abs(".repeat(64), ")".repeat(64));
    let ok = std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(move || {
            for src in [chain, nest] {
                let e = parse(&src).unwrap();
                let (t, _) = compile(&e, &AnyFloat).unwrap();
                assert_eq!(t, Ty::Float);
                assert!(!e.to_string().is_empty());
            }
        })
        .unwrap()
        .join();
    assert!(ok.is_ok());
}
