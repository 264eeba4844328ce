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
