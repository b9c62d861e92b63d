//! The TechEmpower database routes checked by their rules, over any transport: the
//! checks take a `fetch(path) -> Resp`; the database is read back with psql.
#![allow(dead_code)]

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use super::Resp;

/// The test database (scripts/db.sh up) seen from this namespace.
pub const DB_ADDR: &str = "127.0.0.1:5432";

/// True when the database answers. In CI its absence fails the test (.ci/run starts
/// it); elsewhere the test says it skipped.
pub fn available() -> bool {
    match TcpStream::connect_timeout(&DB_ADDR.parse().unwrap(), Duration::from_secs(2)) {
        Ok(_) => true,
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL is not reachable at {DB_ADDR} ({e}): scripts/db.sh up starts it (and .ci/run runs it)")
        }
        Err(e) => {
            eprintln!("SKIPPED: PostgreSQL not reachable at {DB_ADDR} ({e}); run scripts/db.sh up");
            false
        }
    }
}

/// psql as `user` (password `password`) on hello_world; the output's lines.
pub fn psql_as(user: &str, password: &str, sql: &str) -> Vec<String> {
    let out = Command::new("psql")
        .env("PGPASSWORD", password)
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            user,
            "-d",
            "hello_world",
            "-c",
            sql,
        ])
        .output()
        .expect("psql (scripts/db.sh installs the client)");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect()
}

/// psql as the benchmark's role.
pub fn psql(sql: &str) -> Vec<String> {
    psql_as("benchmarkdbuser", "benchmarkdbpass", sql)
}

fn json(r: &Resp, what: &str) -> serde_json::Value {
    assert_eq!(r.status, 200, "{what}: {}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/json"), "{what}");
    assert_eq!(r.header("server"), Some("px-appliance"), "{what}");
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")), "{what}: Date");
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&r.body)))
}

/// A World object: exactly `id` and `randomNumber`, both in 1..=10000.
fn world(v: &serde_json::Value, what: &str) -> (i64, i64) {
    let o = v.as_object().unwrap_or_else(|| panic!("{what}: not an object: {v}"));
    assert_eq!(o.len(), 2, "{what}: {v}");
    let id = o["id"].as_i64().unwrap_or_else(|| panic!("{what}: id: {v}"));
    let n = o["randomNumber"].as_i64().unwrap_or_else(|| panic!("{what}: randomNumber: {v}"));
    assert!((1..=10_000).contains(&id) && (1..=10_000).contains(&n), "{what}: {v}");
    (id, n)
}

fn worlds(r: &Resp, what: &str) -> Vec<(i64, i64)> {
    let v = json(r, what);
    v.as_array().unwrap_or_else(|| panic!("{what}: not an array: {v}")).iter().map(|w| world(w, what)).collect()
}

/// Waits (at most `limit`) until 20 requests in a row on fresh connections answer 200:
/// after the database comes back, each core's pool reconnects on its own backoff, and a
/// fresh connection may land on any core.
pub fn wait_until_every_core_serves(fetch: &dyn Fn(&str) -> Resp, limit: Duration) {
    let end = std::time::Instant::now() + limit;
    let mut in_a_row = 0;
    while in_a_row < 20 {
        assert!(std::time::Instant::now() < end, "every core serves the database routes again within {limit:?}");
        let r = fetch("/db");
        if r.status == 200 {
            in_a_row += 1;
        } else {
            assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
            in_a_row = 0;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Every database route answers by the rules.
pub fn check_routes(fetch: &dyn Fn(&str) -> Resp) {
    check_routes_with(fetch, true)
}

/// As [`check_routes`]; `cache_fresh` false when this appliance has already run
/// `/updates` (an earlier check): its world cache, filled before them, may hold values
/// they replaced (TechEmpower's cached-queries allows that), so cached rows are then
/// checked for shape only, not against the database.
pub fn check_routes_with(fetch: &dyn Fn(&str) -> Resp, cache_fresh: bool) {
    let (id, n) = world(&json(&fetch("/db"), "/db"), "/db");
    let stored = psql(&format!("SELECT randomnumber FROM world WHERE id = {id}"));
    assert_eq!(stored, [n.to_string()], "/db answers the row in the database");

    for (route, param) in [("/queries", "queries"), ("/cached-queries", "count")] {
        for (q, rows) in [
            ("", 1),
            ("?{p}=0", 1),
            ("?{p}=foo", 1),
            ("?{p}=", 1),
            ("?{p}=1", 1),
            ("?{p}=20", 20),
            ("?{p}=500", 500),
            ("?{p}=501", 500),
        ] {
            let path = format!("{route}{}", q.replace("{p}", param));
            let w = worlds(&fetch(&path), &path);
            assert_eq!(w.len(), rows, "{path}");
        }
    }
    // cached-queries answers what the database holds (its cache is filled from it).
    let w = worlds(&fetch("/cached-queries?count=20"), "cached");
    let ids: Vec<String> = w.iter().map(|(id, _)| id.to_string()).collect();
    let stored = psql(&format!("SELECT id || ' ' || randomnumber FROM world WHERE id IN ({})", ids.join(",")));
    for (id, n) in &w {
        if cache_fresh {
            assert!(stored.contains(&format!("{id} {n}")), "cached row {id}={n} not in the database {stored:?}");
        } else {
            assert!(
                stored.iter().any(|r| r.starts_with(&format!("{id} "))),
                "cached row {id} is a row of the database"
            );
        }
    }

    // Updates are in the database afterwards.
    for q in ["", "?queries=0", "?queries=foo", "?queries=20", "?queries=501"] {
        let path = format!("/updates{q}");
        let w = worlds(&fetch(&path), &path);
        let expect = match q {
            "?queries=20" => 20,
            "?queries=501" => 500,
            _ => 1,
        };
        assert_eq!(w.len(), expect, "{path}");
        let ids: Vec<String> = w.iter().map(|(id, _)| id.to_string()).collect();
        let stored = psql(&format!("SELECT id || ' ' || randomnumber FROM world WHERE id IN ({})", ids.join(",")));
        for (id, n) in &w {
            assert!(
                stored.contains(&format!("{id} {n}")),
                "{path}: row {id} should now be {n}; database has {stored:?}"
            );
        }
    }

    check_fortunes(&fetch("/fortunes"));
}

fn unescape(s: &str) -> String {
    s.replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// The fortunes page: every row plus the added one, sorted by message, escaped.
pub fn check_fortunes(r: &Resp) {
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.header("server").is_some() && r.header("date").is_some());
    let html = std::str::from_utf8(&r.body).expect("UTF-8");
    assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<title>Fortunes</title>"), "{html}");
    assert!(!html.contains("<script>"), "the <script> row is escaped: {html}");
    assert!(html.contains("フレームワークのベンチマーク"), "the Japanese row, in UTF-8");
    let rows: Vec<(i64, String)> = html
        .split("<tr><td>")
        .skip(1)
        .map(|row| {
            let (id, rest) = row.split_once("</td><td>").expect("two cells");
            let msg = rest.split("</td></tr>").next().unwrap();
            (id.parse().expect("id"), unescape(msg))
        })
        .collect();
    assert_eq!(rows.len(), 13, "12 rows and the added one: {html}");
    assert!(rows.iter().any(|(id, m)| *id == 0 && m == "Additional fortune added at request time."));
    assert!(rows.iter().any(|(id, m)| *id == 11 && m.starts_with("<script>alert(\"This should not")));
    let msgs: Vec<&String> = rows.iter().map(|(_, m)| m).collect();
    let mut sorted = msgs.clone();
    sorted.sort();
    assert_eq!(msgs, sorted, "sorted by message");
    let stored = psql("SELECT count(*) FROM fortune");
    assert_eq!(stored, ["12"]);
}

/// Executions per statement kind run by `user` since `reset_counts(user)`:
/// (world selects, fortune selects, updates).
pub fn statement_counts(user: &str) -> (u64, u64, u64) {
    let lines = psql(&format!(
        "SELECT s.query, s.calls FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid \
         WHERE r.rolname = '{user}' AND s.dbid = (SELECT oid FROM pg_database WHERE datname = 'hello_world')"
    ));
    let (mut w, mut f, mut u) = (0, 0, 0);
    for l in lines {
        let (q, calls) = l.rsplit_once('|').unwrap();
        let calls: u64 = calls.parse().unwrap();
        let q = q.to_lowercase();
        if q.starts_with("select id, randomnumber from world where id = $1") {
            w += calls;
        } else if q.starts_with("select id, message from fortune") {
            f += calls;
        } else if q.starts_with("update world set randomnumber") {
            u += calls;
        }
    }
    (w, f, u)
}

/// Forgets `user`'s statement counts.
pub fn reset_counts(user: &str) {
    psql(&format!("SELECT pg_stat_statements_reset((SELECT oid FROM pg_roles WHERE rolname = '{user}'))"));
}

/// The number of statements the server ran matches the rows asked for. Run against an
/// appliance that connects as `md5user` (no other test does), with its md5 password.
pub fn check_statement_counts(fetch: &dyn Fn(&str) -> Resp) {
    let user = "md5user";
    reset_counts(user);
    assert_eq!(statement_counts(user), (0, 0, 0));
    for _ in 0..5 {
        assert_eq!(worlds(&fetch("/queries?queries=20"), "queries").len(), 20);
    }
    for _ in 0..3 {
        world(&json(&fetch("/db"), "/db"), "/db");
    }
    assert_eq!(statement_counts(user), (103, 0, 0), "one SELECT per row asked for: 5 × 20 + 3");
    for _ in 0..2 {
        check_fortunes(&fetch("/fortunes"));
    }
    assert_eq!(worlds(&fetch("/updates?queries=7"), "updates").len(), 7);
    assert_eq!(worlds(&fetch("/updates?queries=600"), "updates").len(), 500);
    assert_eq!(statement_counts(user), (103 + 7 + 500, 2, 2), "one SELECT per row and one UPDATE per request");
    // The cache: asking for rows runs at most one query per row, and rows once cached
    // cost none (10,000 asked for: far more than the cache misses left).
    for _ in 0..20 {
        assert_eq!(worlds(&fetch("/cached-queries?count=500"), "cached").len(), 500);
    }
    let (w, _, _) = statement_counts(user);
    let cached = w - 610;
    assert!(cached <= 10_000, "at most one query per row asked: {cached}");
    assert!(cached < 9_000, "rows already cached are not queried again: {cached} queries for 10,000 rows asked");
}
