//! Unit tests of the admin API's types: the JSON a fault reads and writes, its
//! validation, and the list of fault kinds (flags, descriptions, random faults, the
//! docs' table).

use super::*;

#[test]
fn a_spec_reads_both_latency_forms_and_rejects_unknown_fields() {
    let fixed: FaultSpec = serde_json::from_str(r#"{"latency_ms": 300}"#).expect("fixed");
    assert_eq!(fixed.latency_ms, Some(Latency::Fixed(300)));
    let range: FaultSpec = serde_json::from_str(r#"{"latency_ms": [100, 500]}"#).expect("range");
    assert_eq!(range.latency_ms, Some(Latency::Between([100, 500])));
    assert!(serde_json::from_str::<FaultSpec>(r#"{"latency": 300}"#).is_err());
}

#[test]
fn validation_names_the_field_at_fault() {
    let spec = |json: &str| serde_json::from_str::<FaultSpec>(json).expect("a spec");
    let deps = ["inventory-service".to_owned()];
    for (json, field) in [
        ("{}", "latency_ms"),
        (r#"{"latency_ms": 60001}"#, "latency_ms"),
        (r#"{"latency_ms": [9, 3]}"#, "latency_ms"),
        (r#"{"error_rate": 1.5}"#, "error_rate"),
        (
            r#"{"error_rate": 0.5, "error_status": 302}"#,
            "error_status",
        ),
        (r#"{"latency_ms": 5, "error_status": 503}"#, "error_status"),
        (r#"{"unreachable": "user-service"}"#, "unreachable"),
        (r#"{"latency_ms": 5, "route": "/health"}"#, "route"),
        (r#"{"latency_ms": 5, "for_seconds": 0}"#, "for_seconds"),
    ] {
        let error = spec(json).validate(&deps).expect_err(json);
        assert_eq!(error.field, field, "{json}: {error}");
    }
    let good = spec(r#"{"unreachable": "inventory-service", "route": "/api/data"}"#);
    assert_eq!(good.validate(&deps), Ok(()));
    assert!(good.applies_to("/api/data") && !good.applies_to("/api/action"));
}

#[test]
fn an_empty_spec_is_told_every_kind_it_may_set() {
    let error = FaultSpec::default().validate(&[]).expect_err("no kind");
    assert_eq!(
        error.reason,
        "set at least one of latency_ms, error_rate, unreachable"
    );
}

#[test]
fn a_rejection_says_which_field_or_none() {
    let json = serde_json::to_value(FaultRejection::from(Invalid {
        field: "route",
        reason: "no".into(),
    }))
    .expect("json");
    assert_eq!(
        json,
        serde_json::json!({"error": "invalid fault", "field": "route", "reason": "no"})
    );
    let unreadable = serde_json::to_value(FaultRejection::unreadable("eof".into()));
    assert_eq!(unreadable.expect("json")["field"], serde_json::Value::Null);
}

#[test]
fn parse_latency_reads_a_duration_or_a_range() {
    for (text, latency) in [
        ("300ms", Latency::Fixed(300)),
        ("2s", Latency::Fixed(2000)),
        (" 0ms ", Latency::Fixed(0)),
        ("1m", Latency::Fixed(60_000)),
        ("100ms..800ms", Latency::Between([100, 800])),
        ("1s..1s", Latency::Between([1000, 1000])),
        ("250ms .. 1s", Latency::Between([250, 1000])),
    ] {
        assert_eq!(text.parse::<Latency>(), Ok(latency), "{text}");
    }
}

#[test]
fn parse_latency_says_what_is_wrong() {
    for (text, message) in [
        ("soon", "`soon` is not a duration like 250ms, 2s or 1m"),
        ("300", "`300` is not a duration like 250ms, 2s or 1m"),
        ("", "`` is not a duration like 250ms, 2s or 1m"),
        ("100ms..", "`` is not a duration like 250ms, 2s or 1m"),
        ("100ms..fast", "`fast` is not a duration"),
        ("61s", "61000 ms is over 60000"),
        (
            "800ms..100ms",
            "[800, 100] must be [min, max] with max at most 60000",
        ),
        (
            "1s..2m",
            "[1000, 120000] must be [min, max] with max at most 60000",
        ),
    ] {
        let error = text.parse::<Latency>().expect_err(text);
        assert!(error.contains(message), "{text}: {error}");
    }
}

#[test]
fn every_kind_has_its_own_names_and_a_field_of_the_spec() {
    for kind in FaultKind::ALL {
        let about = kind.about();
        for other in FaultKind::ALL.into_iter().filter(|other| *other != kind) {
            let theirs = other.about();
            assert_ne!(about.name, theirs.name);
            assert_ne!(about.field, theirs.field);
            assert_ne!(about.flag, theirs.flag);
        }
        assert_eq!(FaultKind::from_field(about.field), Some(kind));
        // The example, set from the flag, is the field the list names, and nothing else.
        let mut spec = FaultSpec::default();
        kind.set_from_flag(&mut spec, about.example)
            .unwrap_or_else(|e| panic!("{}: {e}", about.flag));
        assert_eq!(spec.kinds().collect::<Vec<_>>(), [kind]);
        let json = serde_json::to_value(&spec).expect("json");
        let fields: Vec<&String> = json.as_object().expect("an object").keys().collect();
        assert_eq!(fields, [about.field], "{}", about.flag);
        assert!(kind.describe(&spec).is_some(), "{}", about.flag);
    }
    assert_eq!(FaultKind::from_field("route"), None);
}

#[test]
fn flag_values_are_checked_as_the_admin_api_checks_them() {
    let set = |kind: FaultKind, value: &str| kind.set_from_flag(&mut FaultSpec::default(), value);
    assert_eq!(
        set(FaultKind::Error, "2"),
        Err("2 is not between 0 and 1 (0.2 means 20% of requests)".into())
    );
    assert_eq!(
        set(FaultKind::Error, "half"),
        Err("`half` is not a number".into())
    );
    assert!(set(FaultKind::Unreachable, " ").is_err());
    assert_eq!(set(FaultKind::Error, "0.5"), Ok(()));
}

#[test]
fn a_fault_in_force_is_described_kind_by_kind() {
    let spec = FaultSpec {
        latency_ms: Some(Latency::Between([100, 800])),
        error_rate: Some(0.25),
        error_status: Some(503),
        unreachable: Some("inventory-service".into()),
        ..FaultSpec::default()
    };
    let described = FaultKind::ALL.map(|kind| kind.describe(&spec));
    assert_eq!(
        described,
        [
            Some("latency 100..800 ms".to_owned()),
            Some("errors 25% (503)".to_owned()),
            Some("inventory-service unreachable".to_owned()),
        ]
    );
    let fixed = FaultSpec {
        latency_ms: Some(Latency::Fixed(300)),
        error_rate: Some(0.2),
        ..FaultSpec::default()
    };
    assert_eq!(
        FaultKind::ALL.map(|kind| kind.describe(&fixed)),
        [
            Some("latency 300 ms".to_owned()),
            Some("errors 20% (500)".to_owned()),
            None
        ]
    );
}

#[test]
fn a_random_fault_of_any_kind_is_valid_or_none() {
    let deps = ["inventory-service".to_owned(), "audit-service".to_owned()];
    for kind in FaultKind::ALL {
        for (low, dependencies) in [(true, &deps[..]), (false, &deps[..]), (true, &[][..])] {
            // The lowest, then the highest value of every range.
            let mut draw =
                |range: RangeInclusive<u64>| if low { *range.start() } else { *range.end() };
            let random = kind.random(dependencies, &mut draw);
            assert_eq!(random.is_some(), kind.can_apply(dependencies), "{kind:?}");
            if let Some(spec) = random {
                assert_eq!(spec.kinds().collect::<Vec<_>>(), [kind]);
                assert_eq!(spec.validate(dependencies), Ok(()), "{spec:?}");
            }
        }
    }
}

/// docs/faults.md's table of the kinds, as the list writes it.
fn docs_table() -> String {
    let mut table = String::from("| Kind | `chaos` flag | Admin API field | What it does |\n");
    table.push_str("|---|---|---|---|\n");
    for kind in FaultKind::ALL {
        let about = kind.about();
        table.push_str(&format!(
            "| {} | `--{} {}`: {} | `{}`: {} | {} |\n",
            about.name,
            about.flag,
            about.value_name,
            about.syntax,
            about.field,
            about.json_value,
            about.description
        ));
    }
    table
}

#[test]
fn the_docs_table_of_fault_kinds_is_the_list() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/faults.md");
    let docs = std::fs::read_to_string(&path).expect("read docs/faults.md");
    let expected = docs_table();
    let header = expected.lines().next().expect("a header");
    let written: String = docs
        .lines()
        .skip_while(|line| *line != header)
        .take_while(|line| line.starts_with('|'))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        written, expected,
        "docs/faults.md's table of fault kinds is not the list in \
         services/contract/src/admin.rs (FaultKind); write it as:\n\n{expected}"
    );
}
