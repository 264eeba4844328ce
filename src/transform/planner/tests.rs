use super::*;

fn prices() -> PriceTable {
    PriceTable::embedded().unwrap()
}

/// About 30 numeric features as CSV.
fn workload(rows: u64) -> Workload {
    Workload {
        rows,
        bytes: rows * 250,
        model_bytes: 0,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn assert_close(a: f64, b: f64) {
    assert!(close(a, b), "{a} != {b}");
}

#[test]
fn the_embedded_table_is_the_field_notes_prices() {
    let p = prices();
    assert_eq!(p.region, "us-east-1");
    assert_eq!(p.date, "2026-11-26");
    assert!(p.source.contains("unverified"), "{}", p.source);
    assert_eq!(p.instances.len(), 11);
    assert!(p.get("ml.c5.large").is_none());
    let m5 = p.get("ml.m5.xlarge").unwrap();
    assert_eq!((m5.vcpus, m5.memory_gib, m5.usd_per_hour), (4, 16.0, 0.23));
    let c5 = p.get("ml.c5.18xlarge").unwrap();
    assert_eq!(
        (c5.vcpus, c5.memory_gib, c5.usd_per_hour),
        (72, 144.0, 3.672)
    );
    assert_eq!(p.get("ml.m5.24xlarge").unwrap().usd_per_hour, 5.53);
}

#[test]
fn a_bad_price_table_names_the_field() {
    let field = |text: &str| {
        PriceTable::parse(text, "t.toml")
            .unwrap_err()
            .field()
            .map(String::from)
    };
    let head =
        "source = \"s\"\ndate = \"2026-11-26\"\nregion = \"us-east-1\"\ncurrency = \"USD\"\n";
    let entry = |ty: &str, price: &str| {
        format!(
            "[[instance]]\ntype = \"{ty}\"\nvcpus = 4\nmemory_gib = 16\nusd_per_hour = {price}\n"
        )
    };
    let ok = format!("{head}{}", entry("ml.m5.xlarge", "0.23"));
    assert_eq!(PriceTable::parse(&ok, "t.toml").unwrap().instances.len(), 1);
    assert_eq!(
        field(&format!("{head}{}", entry("ml.c5.large", "0.1"))).as_deref(),
        Some("instance[0].type")
    );
    assert_eq!(
        field(&format!(
            "{head}{}{}",
            entry("ml.m5.xlarge", "0.23"),
            entry("ml.m5.xlarge", "0.23")
        ))
        .as_deref(),
        Some("instance[1].type")
    );
    assert_eq!(
        field(&format!("{head}{}", entry("ml.m5.xlarge", "-1"))).as_deref(),
        Some("instance[0].usd_per_hour")
    );
    assert_eq!(
        field(&ok.replace("2026-11-26", "last week")).as_deref(),
        Some("date")
    );
    assert_eq!(
        field(&ok.replace("USD", "EUR")).as_deref(),
        Some("currency")
    );
    assert_eq!(
        field(&format!("{ok}colour = 1\n")).as_deref(),
        Some("(toml)")
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, ok.replace("0.23", "0.5")).unwrap();
    let loaded = load_prices(Some(&path)).unwrap();
    assert_eq!(loaded.get("ml.m5.xlarge").unwrap().usd_per_hour, 0.5);
    assert!(matches!(
        load_prices(Some(&dir.path().join("missing.toml"))),
        Err(PlanError::ReadPrices { .. })
    ));
    assert_eq!(load_prices(None).unwrap(), prices());
}

#[test]
fn ten_thousand_rows_pick_one_small_instance() {
    let p = plan(
        &workload(10_000),
        &PlannerSettings::default(),
        &Pins::default(),
        &prices(),
    )
    .unwrap();
    assert_eq!(p.instance_type, "ml.m5.large");
    assert_eq!((p.instance_count, p.vcpus, p.parts), (1, 2, 1));
    assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (2, 6));
    // 2.5 MB is one 6 MB mini-batch: one worker busy, 10,000 / 20,000 = 0.5 s.
    assert_close(p.est_seconds, 420.5);
    assert_close(p.est_cost_usd, 0.115 * 420.5 / 3600.0);
    assert!(p.meets_deadline);
    assert!(
        p.reasons[0].starts_with("ml.m5.large x 1: the cheapest"),
        "{:?}",
        p.reasons
    );
    assert!(
        p.reasons.iter().any(|r| r.contains("1 of 2 workers")),
        "{:?}",
        p.reasons
    );
}

#[test]
fn hundred_million_rows_at_the_default_throughput_fit_one_instance_in_an_hour() {
    // 100M rows / 20,000 rows/s = 5,000 vCPU-seconds: two vCPUs finish in 42 minutes.
    let p = plan(
        &workload(100_000_000),
        &PlannerSettings::default(),
        &Pins::default(),
        &prices(),
    )
    .unwrap();
    assert_eq!(
        (p.instance_type.as_str(), p.instance_count),
        ("ml.m5.large", 1)
    );
    // 25 GB / 64 MiB = 372.5 -> 373.
    assert_eq!(p.parts, 373);
    assert_close(p.est_seconds, 420.0 + 2_500.0);
    assert_close(p.est_cost_usd, 0.115 * 2_920.0 / 3600.0);
    assert!(p.meets_deadline);
}

#[test]
fn hundred_million_rows_of_a_heavy_model_in_an_hour_scale_out() {
    // A model 80x slower than the default figure: 400,000 vCPU-seconds need at least 126
    // vCPUs to finish in 3,600 - 420 s. c5 has the cheapest vCPU; 128 vCPUs as 32 x
    // xlarge, 16 x 2xlarge or 8 x 4xlarge cost the same, and fewer instances win.
    let s = PlannerSettings {
        rows_per_second_per_vcpu: 250.0,
        ..Default::default()
    };
    let p = plan(&workload(100_000_000), &s, &Pins::default(), &prices()).unwrap();
    assert_eq!(
        (p.instance_type.as_str(), p.instance_count),
        ("ml.c5.4xlarge", 8)
    );
    assert_eq!(p.parts, 376, "373 rounded up to a multiple of 8");
    assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (16, 6));
    assert_close(p.est_seconds, 420.0 + 12_500_000.0 / (250.0 * 16.0));
    assert_close(p.est_cost_usd, 8.0 * 0.816 * 3_545.0 / 3600.0);
    assert!(p.meets_deadline);
}

#[test]
fn hundred_million_rows_in_ten_minutes_scale_out() {
    // 5,000 vCPU-seconds in 180 s need 28 vCPUs: seven c5.xlarge.
    let s = PlannerSettings {
        deadline: Duration::from_secs(600),
        ..Default::default()
    };
    let p = plan(&workload(100_000_000), &s, &Pins::default(), &prices()).unwrap();
    assert_eq!(
        (p.instance_type.as_str(), p.instance_count),
        ("ml.c5.xlarge", 7)
    );
    assert_eq!(p.parts, 378);
    assert_eq!(p.parts % p.instance_count, 0);
    // Each instance: 54 of 378 parts = 14,285,714 rows on 4 vCPUs.
    let wall = 420.0 + 100_000_000.0 * 54.0 / 378.0 / 80_000.0;
    assert_close(p.est_seconds, wall);
    assert_close(p.est_cost_usd, 7.0 * 0.204 * wall / 3600.0);
    assert!(p.meets_deadline && p.est_seconds <= 600.0);
}

#[test]
fn concurrency_times_payload_never_exceeds_100() {
    let prices = prices();
    for rows in [1, 1_000, 1_000_000, 100_000_000, 5_000_000_000] {
        for model_bytes in [0, 10 << 20, 1 << 30, 3 << 30] {
            for payload in [
                None,
                Some(1),
                Some(3),
                Some(6),
                Some(7),
                Some(50),
                Some(100),
            ] {
                for rate in [250.0, 20_000.0] {
                    let w = Workload {
                        rows,
                        bytes: rows * 250,
                        model_bytes,
                    };
                    let s = PlannerSettings {
                        rows_per_second_per_vcpu: rate,
                        ..Default::default()
                    };
                    let pins = Pins {
                        max_payload_mb: payload,
                        ..Default::default()
                    };
                    let p = plan(&w, &s, &pins, &prices).unwrap();
                    let (c, mb) = (p.max_concurrent_transforms, p.max_payload_mb);
                    assert!(
                        c >= 1 && mb >= 1 && c * mb <= 100,
                        "{c} x {mb} for {rows} rows, {payload:?}"
                    );
                    assert!(c <= p.vcpus);
                    if payload.is_none() {
                        assert!(mb <= 6);
                    }
                    assert!(p.parts >= p.instance_count);
                    assert_eq!(p.parts % p.instance_count, 0);
                    assert!(p.est_cost_usd > 0.0 && p.est_seconds >= 420.0);
                }
            }
        }
    }
    // The largest types: one worker per vCPU leaves 1 or 2 MB.
    for (ty, c, mb) in [
        ("ml.m5.24xlarge", 96, 1),
        ("ml.m5.12xlarge", 48, 2),
        ("ml.c5.9xlarge", 36, 2),
        ("ml.c5.4xlarge", 16, 6),
    ] {
        let pins = Pins {
            instance_type: Some(ty.into()),
            ..Default::default()
        };
        let p = plan(
            &workload(1_000_000),
            &PlannerSettings::default(),
            &pins,
            &prices,
        )
        .unwrap();
        assert_eq!(
            (p.max_concurrent_transforms, p.max_payload_mb),
            (c, mb),
            "{ty}"
        );
    }
}

#[test]
fn pins_are_used_as_given() {
    let pins = Pins {
        instance_type: Some("ml.c5.2xlarge".into()),
        instance_count: Some(3),
        parts: Some(7),
        max_concurrent_transforms: Some(4),
        max_payload_mb: Some(20),
    };
    let p = plan(
        &workload(10_000_000),
        &PlannerSettings::default(),
        &pins,
        &prices(),
    )
    .unwrap();
    assert_eq!(p.instance_type, "ml.c5.2xlarge");
    assert_eq!(
        (
            p.instance_count,
            p.parts,
            p.max_concurrent_transforms,
            p.max_payload_mb
        ),
        (3, 7, 4, 20)
    );
    // 7 parts on 3 instances: the busiest gets 3 of them (3/7 of the rows), on 4 workers.
    let wall = 420.0 + 10_000_000.0 * 3.0 / 7.0 / (20_000.0 * 4.0);
    assert_close(p.est_seconds, wall);
    assert_close(p.est_cost_usd, 3.0 * 0.408 * wall / 3600.0);
    assert!(
        p.reasons
            .iter()
            .any(|r| r.contains("busiest instance gets 3 parts")),
        "{:?}",
        p.reasons
    );

    // Fewer parts than instances: the others idle, billed.
    let pins = Pins {
        instance_count: Some(4),
        parts: Some(1),
        ..Default::default()
    };
    let p = plan(
        &workload(10_000_000),
        &PlannerSettings::default(),
        &pins,
        &prices(),
    )
    .unwrap();
    assert_eq!((p.instance_count, p.parts), (4, 1));
    assert!(
        p.reasons
            .iter()
            .any(|r| r.contains("3 of 4 instances get none")),
        "{:?}",
        p.reasons
    );

    // A pinned payload bounds the chosen concurrency.
    let pins = Pins {
        instance_type: Some("ml.m5.4xlarge".into()),
        max_payload_mb: Some(20),
        ..Default::default()
    };
    let p = plan(
        &workload(10_000_000),
        &PlannerSettings::default(),
        &pins,
        &prices(),
    )
    .unwrap();
    assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (5, 20));
}

#[test]
fn bad_pins_name_the_field() {
    let field = |pins: Pins| match plan(
        &workload(1_000),
        &PlannerSettings::default(),
        &pins,
        &prices(),
    ) {
        Err(PlanError::Pin { field, reason }) => (field, reason),
        other => panic!("expected a pin error, got {other:?}"),
    };
    let (f, why) = field(Pins {
        instance_type: Some("ml.c5.large".into()),
        ..Default::default()
    });
    assert_eq!(f, "instance_type");
    assert!(
        why.contains("ml.m5.xlarge") && why.contains("ml.c5.18xlarge"),
        "{why}"
    );
    assert_eq!(
        field(Pins {
            instance_count: Some(0),
            ..Default::default()
        })
        .0,
        "instance_count"
    );
    assert_eq!(
        field(Pins {
            instance_count: Some(101),
            ..Default::default()
        })
        .0,
        "instance_count"
    );
    assert_eq!(
        field(Pins {
            max_payload_mb: Some(0),
            ..Default::default()
        })
        .0,
        "max_payload_mb"
    );
    assert_eq!(
        field(Pins {
            max_payload_mb: Some(101),
            ..Default::default()
        })
        .0,
        "max_payload_mb"
    );
    assert_eq!(
        field(Pins {
            parts: Some(0),
            ..Default::default()
        })
        .0,
        "parts"
    );
    assert_eq!(
        field(Pins {
            max_concurrent_transforms: Some(17),
            max_payload_mb: Some(6),
            ..Default::default()
        })
        .0,
        "max_concurrent_transforms"
    );
    assert_eq!(
        field(Pins {
            max_concurrent_transforms: Some(0),
            ..Default::default()
        })
        .0,
        "max_concurrent_transforms"
    );
    // A quota below the pinned count.
    let s = PlannerSettings {
        max_instances: 5,
        ..Default::default()
    };
    let pins = Pins {
        instance_count: Some(6),
        ..Default::default()
    };
    assert!(
        matches!(plan(&workload(1), &s, &pins, &prices()), Err(PlanError::Pin { field, .. }) if field == "instance_count")
    );
    // A type outside the allowed list.
    let s = PlannerSettings {
        allowed_types: Some(vec!["ml.c5.xlarge".into()]),
        ..Default::default()
    };
    let pins = Pins {
        instance_type: Some("ml.m5.large".into()),
        ..Default::default()
    };
    assert!(
        matches!(plan(&workload(1), &s, &pins, &prices()), Err(PlanError::Pin { field, .. }) if field == "instance_type")
    );
}

#[test]
fn bad_settings_name_the_field() {
    let field = |s: PlannerSettings| match plan(&workload(1_000), &s, &Pins::default(), &prices()) {
        Err(PlanError::Settings { field, .. }) => field,
        other => panic!("expected a settings error, got {other:?}"),
    };
    assert_eq!(
        field(PlannerSettings {
            rows_per_second_per_vcpu: 0.0,
            ..Default::default()
        }),
        "rows_per_second_per_vcpu"
    );
    assert_eq!(
        field(PlannerSettings {
            deadline: Duration::ZERO,
            ..Default::default()
        }),
        "deadline"
    );
    assert_eq!(
        field(PlannerSettings {
            max_instances: 0,
            ..Default::default()
        }),
        "max_instances"
    );
    assert_eq!(
        field(PlannerSettings {
            max_instances: 101,
            ..Default::default()
        }),
        "max_instances"
    );
    assert_eq!(
        field(PlannerSettings {
            allowed_types: Some(vec!["ml.x9.huge".into()]),
            ..Default::default()
        }),
        "allowed_types"
    );
    // An allowed list restricts the choice.
    let s = PlannerSettings {
        allowed_types: Some(vec!["ml.c5.xlarge".into(), "ml.c5.2xlarge".into()]),
        ..Default::default()
    };
    let p = plan(&workload(10_000), &s, &Pins::default(), &prices()).unwrap();
    assert_eq!(p.instance_type, "ml.c5.xlarge");
}

#[test]
fn a_big_model_refuses_small_types_and_lowers_concurrency() {
    // 5 GiB x 2 = 10 GiB per copy: the 8 GiB types cannot hold one.
    let w = Workload {
        model_bytes: 5 << 30,
        ..workload(10_000)
    };
    let p = plan(&w, &PlannerSettings::default(), &Pins::default(), &prices()).unwrap();
    assert_eq!(p.instance_type, "ml.m5.xlarge");
    assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (1, 6));
    let refused = p
        .reasons
        .iter()
        .find(|r| r.starts_with("Refused for memory"))
        .expect("a refusal reason");
    assert_eq!(
        refused,
        "Refused for memory: ml.m5.large (8 GiB) and ml.c5.xlarge (8 GiB) cannot hold 1 copy of the 5 GiB model x 2 (headroom) = 10 GiB."
    );
    assert!(
        p.reasons
            .iter()
            .any(|r| r.contains("MaxConcurrentTransforms 1, not 4")),
        "{:?}",
        p.reasons
    );

    // 3 GiB on 64 GiB: 10 copies fit, not one per vCPU (16); the payload stays at 6.
    let w = Workload {
        model_bytes: 3 << 30,
        ..workload(10_000)
    };
    let pins = Pins {
        instance_type: Some("ml.m5.4xlarge".into()),
        ..Default::default()
    };
    let p = plan(&w, &PlannerSettings::default(), &pins, &prices()).unwrap();
    assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (10, 6));

    // Pinning a type that cannot hold the model is an error on that pin.
    let w = Workload {
        model_bytes: 5 << 30,
        ..workload(10_000)
    };
    let pins = Pins {
        instance_type: Some("ml.m5.large".into()),
        ..Default::default()
    };
    assert!(
        matches!(plan(&w, &PlannerSettings::default(), &pins, &prices()), Err(PlanError::Pin { field, .. }) if field == "instance_type")
    );
    // A pinned concurrency that does not fit refuses the type rather than lowering it.
    let pins = Pins {
        max_concurrent_transforms: Some(4),
        ..Default::default()
    };
    let p = plan(&w, &PlannerSettings::default(), &pins, &prices()).unwrap();
    // 4 x 10 GiB: the cheapest type with 40 GiB or more.
    assert_eq!(
        (p.instance_type.as_str(), p.max_concurrent_transforms),
        ("ml.m5.4xlarge", 4)
    );

    // Bigger than any type.
    let w = Workload {
        model_bytes: 200 << 30,
        ..workload(10_000)
    };
    match plan(&w, &PlannerSettings::default(), &Pins::default(), &prices()) {
        Err(PlanError::NoFeasibleType { reason }) => {
            assert!(
                reason.contains("ml.m5.24xlarge (384 GiB), ml.c5.xlarge (8 GiB), "),
                "{reason}"
            );
            assert!(
                reason.contains("and ml.c5.18xlarge (144 GiB) cannot hold 1 copy"),
                "{reason}"
            );
            assert!(reason.ends_with("= 400 GiB"), "{reason}");
        }
        other => panic!("expected NoFeasibleType, got {other:?}"),
    }
}

#[test]
fn baseline_vs_plan_at_ten_million_rows() {
    let w = workload(10_000_000);
    let s = PlannerSettings::default();
    let b = baseline(&w, &s, &prices());
    assert_eq!(
        (b.instance_type.as_str(), b.instance_count, b.parts),
        ("ml.m5.xlarge", 1, 1)
    );
    assert_eq!((b.max_concurrent_transforms, b.max_payload_mb), (1, 6));
    assert_close(b.est_seconds, 420.0 + 500.0);
    assert_close(b.est_cost_usd, 0.23 * 920.0 / 3600.0);
    let p = plan(&w, &s, &Pins::default(), &prices()).unwrap();
    assert_eq!(
        (p.instance_type.as_str(), p.instance_count, p.parts),
        ("ml.m5.large", 1, 38)
    );
    assert_close(p.est_seconds, 420.0 + 250.0);
    assert_close(p.est_cost_usd, 0.115 * 670.0 / 3600.0);
    assert!(p.est_seconds < b.est_seconds && p.est_cost_usd < b.est_cost_usd);

    // Without ml.m5.xlarge in the table, the embedded price stands in, and says so.
    let mut other = prices();
    other
        .instances
        .retain(|i| i.instance_type != "ml.m5.xlarge");
    let b2 = baseline(&w, &s, &other);
    assert_close(b2.est_cost_usd, b.est_cost_usd);
    assert!(b2.reasons.iter().any(|r| r.contains("has no ml.m5.xlarge")));
}

#[test]
fn when_no_plan_meets_the_deadline_the_fastest_is_chosen() {
    // 1e9 rows at 250 rows/s per vCPU = 4,000,000 vCPU-seconds; two instances at most.
    let s = PlannerSettings {
        rows_per_second_per_vcpu: 250.0,
        max_instances: 2,
        ..Default::default()
    };
    let p = plan(&workload(1_000_000_000), &s, &Pins::default(), &prices()).unwrap();
    assert_eq!(
        (p.instance_type.as_str(), p.instance_count),
        ("ml.m5.24xlarge", 2)
    );
    assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (96, 1));
    assert!(!p.meets_deadline);
    // 3726 parts rounded up to 3726 (even): 1863 each.
    assert_eq!(p.parts, 3726);
    assert_close(p.est_seconds, 420.0 + 500_000_000.0 / (250.0 * 96.0));
    assert!(
        p.reasons[0].contains("no plan finishes within the 1h deadline"),
        "{:?}",
        p.reasons
    );
    assert!(
        p.reasons.iter().any(|r| r.contains("over the 1h deadline")),
        "{:?}",
        p.reasons
    );
}

#[test]
fn to_json_carries_every_field() {
    let p = plan(
        &workload(10_000),
        &PlannerSettings::default(),
        &Pins::default(),
        &prices(),
    )
    .unwrap();
    let j = p.to_json();
    assert_eq!(j["instance_type"], "ml.m5.large");
    assert_eq!(j["instance_count"], 1);
    assert_eq!(j["max_payload_mb"], 6);
    assert_eq!(j["meets_deadline"], true);
    assert_eq!(j["est_seconds"].as_f64().unwrap(), p.est_seconds);
    assert_eq!(j["reasons"].as_array().unwrap().len(), p.reasons.len());
}

#[test]
fn formats() {
    assert_eq!(format_duration(0.5), "0.5s");
    assert_eq!(format_duration(42.4), "42s");
    assert_eq!(format_duration(420.0), "7m");
    assert_eq!(format_duration(3_600.0), "1h");
    assert_eq!(format_duration(3_605.0), "1h 0m 5s");
    assert_eq!(format_duration(2_920.0), "48m 40s");
    assert_eq!(format_duration(5_420.0), "1h 30m 20s");
    assert_eq!(format_usd(0.0134326), "$0.0134");
    assert_eq!(format_usd(6.42828), "$6.43");
    assert_eq!(format_bytes(250), "250 B");
    assert_eq!(format_bytes(64 << 20), "64 MiB");
    assert_eq!(format_bytes(25_000_000_000), "23.3 GiB");
    assert_eq!(format_count(100_000_000), "100,000,000");
    assert_eq!(format_count(999), "999");
}
