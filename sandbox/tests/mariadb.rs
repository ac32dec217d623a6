//! The MariaDB sandbox: a server of its own with a row-based binlog that
//! records every row change (what a MySQL CDC source reads).

use strangler_sandbox::MariaDb;

#[test]
fn a_throw_away_server_logs_row_changes_in_its_binlog() {
    let db = MariaDb::start().expect("mariadb");
    let url = db.create_database("shop").expect("database");
    assert_eq!(url, format!("mysql://root@127.0.0.1:{}/shop", db.port()));
    assert_eq!(
        db.sql(
            "shop",
            "SELECT @@log_bin, @@binlog_format, @@binlog_row_image"
        )
        .expect("settings"),
        "1\tROW\tFULL"
    );
    db.sql(
        "shop",
        "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT); \
         INSERT INTO items VALUES (1, 'kettle'), (2, 'teapot'); \
         UPDATE items SET name = 'mug' WHERE id = 2; DELETE FROM items WHERE id = 1",
    )
    .expect("writes");
    let file = db
        .sql("shop", "SHOW MASTER STATUS")
        .expect("status")
        .split('\t')
        .next()
        .unwrap_or_default()
        .to_string();
    let events = db
        .sql("shop", &format!("SHOW BINLOG EVENTS IN '{file}'"))
        .expect("binlog");
    let kinds = |kind: &str| events.lines().filter(|l| l.contains(kind)).count();
    assert_eq!(
        (
            kinds("Write_rows"),
            kinds("Update_rows"),
            kinds("Delete_rows")
        ),
        (1, 1, 1),
        "{events}"
    );
    assert_eq!(
        db.sql("shop", "SELECT name FROM items").expect("rows"),
        "mug"
    );
}
