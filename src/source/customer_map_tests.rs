//! Unit tests of the customer map.

use polars::prelude::*;

use super::*;

#[test]
fn customer_map_finds_every_id_in_any_order() {
    // Short (inline) and long ids, a null row; enough rows that the table probes wrap.
    let mut ids: Vec<Option<String>> = (0..5000).map(|i| Some(format!("C{i}"))).collect();
    ids[7] = None;
    ids[9] = Some("a-customer-id-longer-than-twelve".into());
    ids[10] = Some(String::new());
    let ca = StringChunked::from_iter_options("customer_id".into(), ids.iter().cloned());
    let map = CustomerMap::build(&ca);
    // Events in the customers' order (the next-row path), reversed and strided (the
    // table), with repeats (the run path).
    let mut events: Vec<(String, u32)> = Vec::new();
    for (row, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            events.push((id.clone(), row as u32));
            events.push((id.clone(), row as u32));
        }
    }
    let forward = events.clone();
    events.reverse();
    let strided: Vec<_> = (0..events.len())
        .map(|i| events[(i * 7919) % events.len()].clone())
        .collect();
    for order in [forward, events, strided] {
        let col = StringChunked::from_iter_values(
            "customer_id".into(),
            order.iter().map(|(id, _)| id.as_str()),
        )
        .into_column();
        let keys = customer_keys(&col, &map).unwrap().expect("all known");
        let want: Vec<u32> = order.iter().map(|(_, r)| *r).collect();
        assert_eq!(keys.into_no_null_iter().collect::<Vec<_>>(), want);
    }
    // Unknown ids (short, long, and one that differs from a known id in its last
    // byte) and nulls are not found.
    for unknown in ["C5000", "C05", "a-customer-id-longer-than-twelvX", "D1"] {
        let col =
            StringChunked::from_iter_values("customer_id".into(), ["C1", unknown].into_iter())
                .into_column();
        assert!(customer_keys(&col, &map).unwrap().is_none(), "{unknown}");
    }
    let col =
        StringChunked::from_iter_options("customer_id".into(), [Some("C1"), None].into_iter())
            .into_column();
    assert!(customer_keys(&col, &map).unwrap().is_none());
}
