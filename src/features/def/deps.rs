//! Dependencies between the features of a set: what each feature reads, their
//! dependency order (reporting cycles), and the bound on the longest chain.

use std::collections::{BTreeSet, HashMap};

use super::{Ctx, DefErrors, Kind, SetFile, MAX_CHAIN};

/// The features a feature of this kind reads, each once, in order of first use.
pub(super) fn kind_deps(kind: &Kind) -> Vec<String> {
    match kind {
        Kind::Derived(e) => e.names(),
        Kind::Quantile { of, among, .. } => {
            let mut d = vec![of.clone()];
            if let Some(a) = among {
                d.extend(a.names());
            }
            d
        }
        Kind::Case { cases, .. } => {
            let mut d = Vec::new();
            for (w, _) in cases {
                for n in w.names() {
                    if !d.contains(&n) {
                        d.push(n);
                    }
                }
            }
            d
        }
        Kind::Agg(_) | Kind::Entity { .. } => Vec::new(),
    }
}

/// What every feature reads, by name (a feature whose kind is unreadable reads nothing).
pub(super) fn feature_deps(set: &SetFile, kinds: &[Option<Kind>]) -> HashMap<String, Vec<String>> {
    let mut deps = HashMap::new();
    for (f, k) in set.features.iter().zip(kinds) {
        deps.insert(
            f.name.clone(),
            k.as_ref().map(kind_deps).unwrap_or_default(),
        );
    }
    deps
}

/// Each link of a dependency chain is one step of the compiled plan, and polars runs the
/// steps recursively: bounds the longest chain (at most [`MAX_CHAIN`]). `order` is the
/// dependency order.
pub(super) fn check_chains(
    cx: &mut Ctx,
    set: &SetFile,
    order: &[String],
    deps: &HashMap<String, Vec<String>>,
) -> Result<(), DefErrors> {
    let mut chain: HashMap<&str, usize> = HashMap::new();
    for name in order {
        let d = deps.get(name).map_or(0, |ds| {
            ds.iter()
                .filter_map(|x| chain.get(x.as_str()).map(|v| v + 1))
                .max()
                .unwrap_or(0)
        });
        chain.insert(name.as_str(), d);
        if d > MAX_CHAIN {
            let idx = set
                .features
                .iter()
                .position(|f| &f.name == name)
                .unwrap_or(0);
            cx.err(
                format!("feature[{idx}] ({name})"),
                format!(
                    "ends a chain of {d} features computed from one another; at most {MAX_CHAIN}"
                ),
            );
            return Err(DefErrors(std::mem::take(&mut cx.errors)));
        }
    }
    Ok(())
}

/// Dependency order of all features; reports cycles.
pub(super) fn topo_order(
    cx: &mut Ctx,
    set: &SetFile,
    deps: &HashMap<String, Vec<String>>,
) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        New,
        Active,
        Done,
    }
    let mut st: HashMap<&str, St> = set
        .features
        .iter()
        .map(|f| (f.name.as_str(), St::New))
        .collect();
    let mut order = Vec::new();
    let mut reported = BTreeSet::new();
    fn visit<'a>(
        n: &'a str,
        deps: &'a HashMap<String, Vec<String>>,
        st: &mut HashMap<&'a str, St>,
        stack: &mut Vec<&'a str>,
        order: &mut Vec<String>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        match st.get(n) {
            Some(St::Done) | None => return,
            Some(St::Active) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cyc: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cyc.push(n.to_string());
                cycles.push(cyc);
                return;
            }
            Some(St::New) => {}
        }
        st.insert(n, St::Active);
        stack.push(n);
        if let Some(ds) = deps.get(n) {
            for d in ds {
                visit(d.as_str(), deps, st, stack, order, cycles);
            }
        }
        stack.pop();
        st.insert(n, St::Done);
        order.push(n.to_string());
    }
    let mut cycles = Vec::new();
    for f in &set.features {
        let mut stack = Vec::new();
        visit(
            f.name.as_str(),
            deps,
            &mut st,
            &mut stack,
            &mut order,
            &mut cycles,
        );
    }
    for cyc in cycles {
        let mut key = cyc.clone();
        key.sort();
        if reported.insert(key) {
            let first = &cyc[0];
            let idx = set
                .features
                .iter()
                .position(|f| &f.name == first)
                .unwrap_or(0);
            // Break the cycle so that validation can go on: its members get no type.
            order.retain(|n| !cyc.contains(n));
            cx.err(
                format!("feature[{idx}] ({first})"),
                format!("dependency cycle: {}", cyc.join(" -> ")),
            );
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::expr;

    fn set(features: &[&str]) -> SetFile {
        let mut text = String::from("name = \"s\"\nversion = 1\n");
        for f in features {
            text.push_str(&format!("[[feature]]\nname = \"{f}\"\nexpr = \"1\"\n"));
        }
        toml::from_str(&text).expect("test set parses")
    }

    fn deps(pairs: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(n, ds)| (n.to_string(), ds.iter().map(|d| d.to_string()).collect()))
            .collect()
    }

    fn cx() -> Ctx {
        Ctx {
            file: "s.toml".into(),
            errors: Vec::new(),
        }
    }

    #[test]
    fn orders_dependencies_first_in_definition_order() {
        let s = set(&["c", "a", "b", "d"]);
        let d = deps(&[("c", &["b", "a"]), ("a", &[]), ("b", &["a"]), ("d", &[])]);
        let mut cx = cx();
        assert_eq!(topo_order(&mut cx, &s, &d), ["a", "b", "c", "d"]);
        assert!(cx.errors.is_empty());
    }

    #[test]
    fn reports_each_cycle_once_and_leaves_its_members_out() {
        let s = set(&["a", "b", "c", "d"]);
        let d = deps(&[("a", &["b"]), ("b", &["a"]), ("c", &["c"]), ("d", &["a"])]);
        let mut cx = cx();
        let order = topo_order(&mut cx, &s, &d);
        assert_eq!(order, ["d"]);
        let reasons: Vec<_> = cx
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.key, e.reason))
            .collect();
        assert_eq!(
            reasons,
            [
                "feature[0] (a): dependency cycle: a -> b -> a",
                "feature[2] (c): dependency cycle: c -> c",
            ]
        );
    }

    #[test]
    fn unknown_names_are_left_to_the_typed_pass() {
        let s = set(&["a"]);
        let d = deps(&[("a", &["nope"])]);
        let mut cx = cx();
        assert_eq!(topo_order(&mut cx, &s, &d), ["a"]);
        assert!(cx.errors.is_empty());
    }

    #[test]
    fn bounds_the_longest_chain() {
        let names: Vec<String> = (0..=MAX_CHAIN + 1).map(|i| format!("f{i}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let s = set(&refs);
        let mut d = HashMap::new();
        d.insert(names[0].clone(), Vec::new());
        for w in names.windows(2) {
            d.insert(w[1].clone(), vec![w[0].clone()]);
        }
        let mut cx = cx();
        let order = topo_order(&mut cx, &s, &d);
        // A chain of exactly MAX_CHAIN links passes.
        assert!(check_chains(&mut cx, &s, &order[..=MAX_CHAIN], &d).is_ok());
        let err = check_chains(&mut cx, &s, &order, &d).unwrap_err();
        let last = MAX_CHAIN + 1;
        assert_eq!(err.0.len(), 1);
        assert_eq!(err.0[0].key, format!("feature[{last}] (f{last})"));
        assert_eq!(
            err.0[0].reason,
            format!(
                "ends a chain of {last} features computed from one another; at most {MAX_CHAIN}"
            )
        );
    }

    #[test]
    fn kinds_name_what_they_read() {
        let e = |s: &str| expr::parse(s).expect("test expression parses");
        assert_eq!(kind_deps(&Kind::Derived(e("a + b * a"))), ["a", "b"]);
        let q = Kind::Quantile {
            of: "spend".into(),
            bins: 5,
            higher_is_better: true,
            among: Some(e("active and spend > 0")),
        };
        assert_eq!(kind_deps(&q), ["spend", "active", "spend"]);
        let c = Kind::Case {
            cases: vec![(e("a > 1"), None), (e("b or a"), Some("x".into()))],
            otherwise: None,
        };
        assert_eq!(kind_deps(&c), ["a", "b"]);
    }
}
