//! `strangler demo --non-interactive` runs the whole story to the end, on
//! a PostgreSQL monolith and (`--mysql`) on a MariaDB one.

#[test]
fn the_demo_runs_to_the_end_with_a_clean_board() {
    demo_runs_to_the_end(&[]);
}

#[test]
fn the_demo_runs_to_the_end_with_a_mysql_monolith() {
    let stdout = demo_runs_to_the_end(&["--mysql"]);
    assert!(
        stdout.contains("the monolith's MariaDB database: 2000 products"),
        "{stdout}"
    );
    assert!(stdout.contains("reverse sync into MariaDB"), "{stdout}");
    assert!(
        stdout.contains("shop.products → public.catalog_items: 2000 rows"),
        "{stdout}"
    );
}

/// Runs the demo with `extra` arguments and checks its story; returns
/// what it printed.
fn demo_runs_to_the_end(extra: &[&str]) -> String {
    let out = std::process::Command::new(crate::support::strangler_bin())
        .args(["demo", "--non-interactive"])
        .args(extra)
        .output()
        .expect("run the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("product endpoints migrated, CDC verify clean"),
        "{stdout}"
    );
    // The measured line of the deliberate difference: a field, a count of
    // mismatches above zero, and the verdict REAL (not noise).
    let measured = stdout.lines().any(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        words.first() == Some(&"/description")
            && words
                .get(1)
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0)
            && words.get(2) == Some(&"mismatches")
            && l.trim_end().ends_with("REAL")
    });
    assert!(
        measured,
        "the report finds the deliberate difference: {stdout}"
    );
    let board: Vec<&str> = stdout
        .lines()
        .rev()
        .take_while(|l| !l.contains("The board at the end"))
        .collect();
    assert!(
        board
            .iter()
            .any(|l| l.contains("get-product") && l.contains("migrated")),
        "{stdout}"
    );
    assert!(
        board
            .iter()
            .any(|l| l.contains("list-products") && l.contains("migrated")),
        "{stdout}"
    );
    // Day one: the inventory of what the monolith serves, as templates,
    // with the route that covers each.
    let day_one: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("as the router saw them"))
        .take(12)
        .collect();
    assert!(
        day_one.iter().any(|l| l.contains("GET")
            && l.contains("/products/{id}")
            && l.contains("get-product")),
        "{stdout}"
    );
    assert!(
        day_one.iter().any(|l| l.contains("/customers/{id}/orders")),
        "{stdout}"
    );
    // At the end: progress, with the product routes on the service.
    let progress: Vec<&str> = board
        .iter()
        .rev()
        .copied()
        .skip_while(|l| !l.contains("HOUR (UTC)"))
        .collect();
    let last_hour = progress
        .iter()
        .rev()
        .find(|l| l.trim_start().starts_with("20"))
        .unwrap_or_else(|| panic!("a progress row: {stdout}"));
    let on: u64 = last_hour
        .split_whitespace()
        .last()
        .and_then(|f| f.split('/').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("routes on services in {last_hour:?}"));
    assert!(on >= 2, "{last_hour}");
    stdout.into_owned()
}
