use super::*;

#[test]
fn calendar_round_trips_across_eras() {
    for days in [-2_440_588 - 1_000, -719_528, -1, 0, 1, 19_724, 2_932_897] {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
        assert_eq!(parse_date(&write_date(days)), Some(Infinite::Finite(days)));
    }
    assert_eq!(write_date(0), "1970-01-01");
    assert_eq!(write_date(days_from_civil(0, 1, 1)), "0001-01-01 BC");
    assert_eq!(write_date(days_from_civil(10_000, 1, 1)), "10000-01-01");
    assert_eq!(parse_date("infinity"), Some(Infinite::Plus));
    assert_eq!(parse_date("2024-13-01"), None);
}

#[test]
fn timestamps_keep_microseconds_and_eras() {
    let t = "0001-01-01 00:00:00.000001 BC";
    let Some(Infinite::Finite(us)) = parse_timestamp(t) else {
        panic!()
    };
    assert_eq!(write_timestamp(us), t);
    let tz = "2024-03-01 12:30:00.5+00";
    let Some(Infinite::Finite(us)) = parse_timestamptz(tz) else {
        panic!()
    };
    assert_eq!(write_timestamptz(us), tz);
    assert_eq!(write_iso_timestamp(us), "2024-03-01T12:30:00.5Z");
    assert_eq!(parse_iso_timestamp("2024-03-01T12:30:00.5Z"), Some(us));
    let bc = parse_iso_timestamp("-0001-01-01T00:00:00Z").expect("iso");
    assert_eq!(write_timestamptz(bc), "0002-01-01 00:00:00+00 BC");
    assert_eq!(write_iso_timestamp(bc), "-0001-01-01T00:00:00Z");
    let far = parse_iso_timestamp("+10000-01-01T00:00:00Z").expect("iso");
    assert_eq!(write_iso_timestamp(far), "+10000-01-01T00:00:00Z");
    assert_eq!(
        parse_timestamptz("2024-01-01 02:00:00+02:00"),
        parse_timestamptz("2024-01-01 00:00:00+00")
    );
    assert_eq!(write_time(parse_time("24:00:00").expect("t")), "24:00:00");
}

#[test]
fn intervals_as_postgres_writes_them() {
    let iv = parse_interval("1 year 2 mons -3 days -04:05:06.78").expect("iv");
    assert_eq!(
        iv,
        Interval {
            months: 14,
            days: -3,
            micros: -(4 * 3600 + 5 * 60 + 6) * 1_000_000 - 780_000
        }
    );
    assert_eq!(write_iso_interval(iv), "P1Y2M-3DT-4H-5M-6.78S");
    assert_eq!(
        write_iso_interval(parse_interval("00:00:00").expect("zero")),
        "P0Y0M0DT0H0M0S"
    );
    assert_eq!(
        interval_micros(parse_interval("1 day").expect("d")),
        DAY_MICROS
    );
}

#[test]
fn arrays_round_trip_with_quotes_and_nulls() {
    let lit = r#"{{"a \"q\"",NULL},{"back\\slash",""}}"#;
    let items = parse_array(lit).expect("array");
    assert_eq!(
        items,
        vec![
            Element::Array(vec![Element::Value("a \"q\"".into()), Element::Null]),
            Element::Array(vec![
                Element::Value("back\\slash".into()),
                Element::Value(String::new())
            ]),
        ]
    );
    assert_eq!(parse_array(&write_array(&items)), Some(items));
    assert_eq!(parse_array("{}"), Some(vec![]));
    assert_eq!(parse_array("[0:1]={1,2}"), None);
    assert_eq!(
        parse_array("{1, 2,NULL}"),
        Some(vec![
            Element::Value("1".into()),
            Element::Value("2".into()),
            Element::Null
        ])
    );
}

#[test]
fn copy_lines_unescape() {
    assert_eq!(
        parse_copy_line(b"1\t\\N\ta\\tb\\nc\\\\d\t\\101"),
        Some(vec![
            Some("1".into()),
            None,
            Some("a\tb\nc\\d".into()),
            Some("A".into())
        ])
    );
    assert_eq!(
        parse_bytea(&write_bytea(&[0, 255, 10])),
        Some(vec![0, 255, 10])
    );
}
