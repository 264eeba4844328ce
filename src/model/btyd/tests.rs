use super::*;

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-300)
}

#[test]
fn hyp2f1_matches_closed_forms_and_scipy() {
    // 2F1(1,1;2;z) = -ln(1-z)/z; 2F1(1/2,1/2;3/2;z^2) = asin(z)/z.
    assert!(close(hyp2f1(1.0, 1.0, 2.0, 0.5), 4f64.ln(), 1e-14));
    assert!(close(
        hyp2f1(0.5, 0.5, 1.5, 0.25),
        std::f64::consts::PI / 3.0,
        1e-14
    ));
    // scipy.special.hyp2f1 (scipy 1.17.1).
    for (a, b, c, z, want) in [
        (2.3, 4.1, 0.8, 0.6, 912.3995067108131),
        (100.27, 102.1, 101.6, 0.9, 5.853569392285962e+100),
        (0.3, -0.5, 2.5, 0.7, 0.9545849177742342),
        (1.5, 2.5, 3.5, 0.99, 39.959919938974366),
    ] {
        let got = hyp2f1(a, b, c, z);
        assert!(
            close(got, want, 1e-12),
            "2F1({a},{b};{c};{z}) = {got}, scipy {want}"
        );
    }
    assert_eq!(hyp2f1(1.0, 2.0, 3.0, 0.0), 1.0);
    // A polynomial: b = -2.
    assert!(close(hyp2f1(1.0, -2.0, 1.0, 0.5), 0.25, 1e-15));
    assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_nan());
    assert!(hyp2f1(1.0, 1.0, -2.0, 0.5).is_nan());
    assert!(hyp2f1(f64::NAN, 1.0, 2.0, 0.5).is_nan());
}

// A small data set with lifetimes' objective values at a known point (computed with
// lifetimes 0.11.3: BetaGeoFitter._negative_log_likelihood / GammaGammaFitter's).
const X: [f64; 6] = [0.0, 1.0, 2.0, 5.0, 0.0, 3.0];
const R: [f64; 6] = [0.0, 10.0, 30.0, 40.0, 0.0, 20.0];
const T: [f64; 6] = [50.0, 40.0, 60.0, 45.0, 30.0, 25.0];
const M: [f64; 6] = [0.0, 10.0, 20.0, 5.0, 0.0, 7.5];

#[test]
fn bg_nbd_likelihood_at_a_known_point() {
    let lp: Vec<f64> = [0.5f64, 3.0, 0.8, 2.5].iter().map(|v| v.ln()).collect();
    let (v, _) = bg_nbd_objective(&lp, &X, &R, &T, 0.0);
    assert!(close(v, 7.720001282127676, 1e-13), "{v}");
    let (v, _) = bg_nbd_objective(&lp, &X, &R, &T, 0.1);
    assert!(close(v, 9.334001282127677, 1e-13), "{v}");
}

#[test]
fn gamma_gamma_likelihood_at_a_known_point() {
    let keep: Vec<usize> = (0..6).filter(|&i| X[i] > 0.0).collect();
    let x: Vec<f64> = keep.iter().map(|&i| X[i]).collect();
    let m: Vec<f64> = keep.iter().map(|&i| M[i]).collect();
    let lp: Vec<f64> = [2.0f64, 3.0, 15.0].iter().map(|v| v.ln()).collect();
    let (v, _) = gamma_gamma_objective(&lp, &x, &m, 0.0);
    assert!(close(v, 3.1800688686781786, 1e-13), "{v}");
    let (v, _) = gamma_gamma_objective(&lp, &x, &m, 0.05);
    assert!(close(v, 15.080068868678179, 1e-13), "{v}");
}

#[test]
fn analytic_gradients_match_finite_differences() {
    let lp = [-0.3f64, 1.1, -0.2, 0.9];
    let (_, g) = bg_nbd_objective(&lp, &X, &R, &T, 0.01);
    for j in 0..4 {
        let h = 1e-6;
        let (mut up, mut dn) = (lp.to_vec(), lp.to_vec());
        up[j] += h;
        dn[j] -= h;
        let fd = (bg_nbd_objective(&up, &X, &R, &T, 0.01).0
            - bg_nbd_objective(&dn, &X, &R, &T, 0.01).0)
            / (2.0 * h);
        assert!((fd - g[j]).abs() < 1e-7, "bg_nbd d/dθ{j}: {} vs {fd}", g[j]);
    }
    let x = [1.0, 2.0, 5.0, 3.0];
    let m = [10.0, 20.0, 5.0, 7.5];
    let lp = [0.7f64, 1.2, 2.5];
    let (_, g) = gamma_gamma_objective(&lp, &x, &m, 0.02);
    for j in 0..3 {
        let h = 1e-6;
        let (mut up, mut dn) = (lp.to_vec(), lp.to_vec());
        up[j] += h;
        dn[j] -= h;
        let fd = (gamma_gamma_objective(&up, &x, &m, 0.02).0
            - gamma_gamma_objective(&dn, &x, &m, 0.02).0)
            / (2.0 * h);
        assert!(
            (fd - g[j]).abs() < 1e-6,
            "gamma_gamma d/dθ{j}: {} vs {fd}",
            g[j]
        );
    }
}

#[test]
fn months_follow_numpy_arange() {
    assert_eq!(clv_months(30.0), 1);
    assert_eq!(clv_months(90.0), 3);
    assert_eq!(clv_months(365.0), 13);
    assert_eq!(clv_months(360.0), 12);
    assert_eq!(clv_months(1.0), 1);
}

#[test]
fn frequency_zero_gets_the_population_mean_and_p_alive_one() {
    let gg = GammaGammaParams {
        p: 6.0,
        q: 4.0,
        v: 15.0,
    };
    assert_eq!(gg.expected_average_profit(0.0, 0.0), 30.0);
    let bg = BgNbdParams {
        r: 0.25,
        alpha: 4.0,
        a: 0.8,
        b: 2.4,
    };
    assert_eq!(bg.p_alive(0.0, 0.0, 10.0), 1.0);
    assert_eq!(bg.expected_purchases(0.0, 3.0, 5.0, 10.0), 0.0);
}

fn data(rows: &[(f64, f64, f64, f64)]) -> BtydData {
    BtydData {
        customer_id: (0..rows.len()).map(|i| format!("C{i}")).collect(),
        frequency: rows.iter().map(|r| r.0).collect(),
        recency: rows.iter().map(|r| r.1).collect(),
        t: rows.iter().map(|r| r.2).collect(),
        monetary_value: rows.iter().map(|r| r.3).collect(),
    }
}

#[test]
fn bad_input_is_refused_naming_column_and_customer() {
    let mut rows = vec![(1.0, 5.0, 10.0, 3.0); 12];
    let cases = [
        (
            (f64::NAN, 0.0, 10.0, 0.0),
            "frequency of customer C3 is NaN",
        ),
        ((1.5, 1.0, 10.0, 1.0), "frequency of customer C3 is 1.5"),
        ((-1.0, 0.0, 10.0, 1.0), "frequency of customer C3 is -1"),
        (
            (1.0, 12.0, 10.0, 1.0),
            "recency of customer C3 is 12: must not exceed T (10)",
        ),
        (
            (0.0, 2.0, 10.0, 0.0),
            "recency of customer C3 is 2: must be 0 when frequency is 0",
        ),
        (
            (1.0, 2.0, 10.0, -4.0),
            "monetary_value of customer C3 is -4",
        ),
        ((1.0, 2.0, f64::INFINITY, 4.0), "T of customer C3 is inf"),
    ];
    for (row, want) in cases {
        rows[3] = row;
        let d = data(&rows);
        for e in [
            fit_bg_nbd(&d, &FitOptions::default()).unwrap_err(),
            fit_gamma_gamma(&d, &FitOptions::default()).unwrap_err(),
        ] {
            assert!(e.to_string().starts_with(want), "{e}");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(48))]
    /// Any summary, however odd, gives finite positive parameters or an error: never a
    /// panic, never a NaN parameter.
    #[test]
    fn fits_never_panic(
        rows in proptest::collection::vec(
            (0u32..40, 0.0f64..1.0, 0.0f64..2000.0, 0.0f64..1e4),
            0..40,
        ),
        penalizer in proptest::sample::select(vec![0.0, 0.001, 1.0]),
    ) {
        let rows: Vec<(f64, f64, f64, f64)> = rows
            .into_iter()
            .map(|(x, rf, t, m)| {
                let x = x as f64;
                let rec = if x == 0.0 { 0.0 } else { (rf * t).floor() };
                (x, rec, t.floor(), if x == 0.0 { 0.0 } else { m })
            })
            .collect();
        let d = data(&rows);
        let opts = FitOptions { penalizer };
        if let Ok(f) = fit_bg_nbd(&d, &opts) {
            let p = f.params;
            for v in [p.r, p.alpha, p.a, p.b] {
                proptest::prop_assert!(v.is_finite() && v > 0.0);
            }
            for i in 0..d.len() {
                let pa = p.p_alive(d.frequency[i], d.recency[i], d.t[i]);
                proptest::prop_assert!((0.0..=1.0).contains(&pa), "{pa}");
                let _ = p.expected_purchases(90.0, d.frequency[i], d.recency[i], d.t[i]);
            }
        }
        if let Ok(f) = fit_gamma_gamma(&d, &opts) {
            let p = f.params;
            for v in [p.p, p.q, p.v] {
                proptest::prop_assert!(v.is_finite() && v > 0.0);
            }
        }
    }
}

#[test]
fn objectives_refuse_wrong_shapes_without_panicking() {
    assert!(bg_nbd_objective(&[0.0; 3], &X, &R, &T, 0.0).0.is_nan());
    assert!(bg_nbd_objective(&[0.0; 4], &X, &R[..2], &T, 0.0).0.is_nan());
    assert!(gamma_gamma_objective(&[0.0; 4], &X, &M, 0.0).0.is_nan());
}

#[test]
fn degenerate_data_is_refused() {
    let few = data(&[(1.0, 5.0, 10.0, 3.0); 5]);
    let e = fit_bg_nbd(&few, &FitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("5 customer(s)") && e.contains("at least 10"),
        "{e}"
    );
    let none = data(&[(0.0, 0.0, 10.0, 0.0); 20]);
    let e = fit_bg_nbd(&none, &FitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("repeat purchase"), "{e}");
    let e = fit_gamma_gamma(&none, &FitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("0 of the 20 customers"), "{e}");
    let e = fit_bg_nbd(
        &data(&[(1.0, 5.0, 10.0, 3.0); 20]),
        &FitOptions { penalizer: -1.0 },
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("penalizer = -1"), "{e}");
}
