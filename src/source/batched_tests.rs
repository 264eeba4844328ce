//! Unit tests of the batched loader's helpers: enum codes and the batch plan.

use polars::prelude::*;

use super::*;

#[test]
fn enum_codes_are_indexes_and_reject_other_values() {
    let allowed = ["web_visit", "app_login", "a_value_longer_than_12"];
    let values: Vec<&str> = (0..300).map(|i| allowed[(i * 5) % 3]).collect();
    let ca = StringChunked::from_iter_values("event_type".into(), values.iter().copied());
    let codes = enum_codes(&ca, &allowed).expect("all allowed");
    let want: Vec<u8> = (0..300).map(|i| ((i * 5) % 3) as u8).collect();
    assert_eq!(codes.into_no_null_iter().collect::<Vec<_>>(), want);
    for bad in ["web_visiT", "", "a_value_longer_than_13"] {
        let ca = StringChunked::from_iter_values(
            "event_type".into(),
            ["web_visit", bad, "app_login"].into_iter(),
        );
        assert!(enum_codes(&ca, &allowed).is_none(), "{bad}");
    }
    let ca = StringChunked::from_iter_options(
        "event_type".into(),
        [Some("web_visit"), None].into_iter(),
    );
    assert!(enum_codes(&ca, &allowed).is_none());
}

#[test]
fn batches_follow_row_groups() {
    // Whole groups; small neighbours merged up to the size.
    assert_eq!(
        batch_plan(vec![40, 50, 30, 100], 220, 100),
        vec![(0, 90), (90, 30), (120, 100)]
    );
    // A group a little over the size stays whole; a large one is cut in equal parts
    // and nothing joins a cut part.
    assert_eq!(
        batch_plan(vec![120, 250, 10], 380, 100),
        vec![(0, 120), (120, 84), (204, 84), (288, 82), (370, 10)]
    );
    // Metadata that does not add up (e.g. a filtered scan): fixed batches.
    assert_eq!(
        batch_plan(vec![10, 10], 250, 100),
        vec![(0, 84), (84, 84), (168, 82)]
    );
    assert_eq!(batch_plan(vec![], 0, 100), vec![]);
    assert_eq!(batch_plan(vec![0, 5, 0], 5, 100), vec![(0, 5)]);
}
