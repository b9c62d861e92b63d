//! The protocol state machine against a real PostgreSQL (scripts/db.sh up), driven over
//! a blocking socket: SCRAM-SHA-256 and md5 start-ups, bad credentials, 500 pipelined
//! queries, an array-parameter UPDATE, an error in a batch.
//!
//! Needs the database: in CI (CI=true) its absence fails the test; elsewhere the test
//! says it skipped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use px_pg::proto::oid;
use px_pg::{ConnectParams, Event, Param, PgConn, PgError, Query, Rows, Statement};

const STMTS: &[Statement] = &[
    Statement { name: "w", sql: "SELECT id, randomnumber FROM world WHERE id = $1", types: &[oid::INT4] },
    Statement { name: "f", sql: "SELECT id, message FROM fortune", types: &[] },
    Statement {
        name: "u",
        sql:
            "UPDATE world SET randomnumber = v.r FROM (SELECT unnest($1::int4[]) AS id, unnest($2::int4[]) AS r) AS v \
              WHERE world.id = v.id",
        types: &[oid::INT4_ARRAY, oid::INT4_ARRAY],
    },
    Statement { name: "bad", sql: "SELECT 1 / $1", types: &[oid::INT4] },
];

fn addr() -> String {
    std::env::var("PX_DB_ADDR").unwrap_or_else(|_| "127.0.0.1:5432".into())
}

fn db() -> Option<TcpStream> {
    match TcpStream::connect(addr()) {
        Ok(s) => {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            Some(s)
        }
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("PostgreSQL is not reachable at {} ({e}): scripts/db.sh up starts it", addr())
        }
        Err(e) => {
            eprintln!("SKIPPED: PostgreSQL not reachable at {} ({e}); run scripts/db.sh up", addr());
            None
        }
    }
}

fn params(user: &str, password: &str) -> ConnectParams {
    ConnectParams {
        user: user.into(),
        password: password.into(),
        database: "hello_world".into(),
        application_name: "px-pg-test".into(),
    }
}

/// Sends what `pg` queued, reads until `done(pg)` or an error.
fn pump(s: &mut TcpStream, pg: &mut PgConn, mut done: impl FnMut(&mut PgConn) -> bool) -> Result<(), PgError> {
    let mut buf = vec![0u8; 65536];
    loop {
        let out = pg.take_output();
        s.write_all(&out).unwrap();
        if done(pg) {
            return Ok(());
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed the connection");
        pg.receive(&buf[..n])?;
    }
}

fn connect(s: &mut TcpStream, user: &str, password: &str) -> Result<PgConn, PgError> {
    let mut pg = PgConn::new(params(user, password), STMTS);
    pump(s, &mut pg, |pg| pg.is_ready())?;
    assert!(matches!(pg.poll_event(), Some(Event::Ready)));
    Ok(pg)
}

fn run(s: &mut TcpStream, pg: &mut PgConn, batches: &[Vec<Query>]) -> Vec<Result<Vec<Rows>, PgError>> {
    for b in batches {
        pg.submit(b).unwrap();
    }
    let mut out = Vec::new();
    pump(s, pg, |pg| {
        while let Some(Event::Done { result, .. }) = pg.poll_event() {
            out.push(result);
        }
        out.len() == batches.len()
    })
    .unwrap();
    out
}

#[test]
fn scram_and_md5_start_ups_and_bad_credentials() {
    let Some(mut s) = db() else { return };
    let pg = connect(&mut s, "benchmarkdbuser", "benchmarkdbpass").expect("SCRAM-SHA-256");
    assert!(pg.server_version().is_some_and(|v| v.starts_with("15")), "{:?}", pg.server_version());

    let mut s = db().unwrap();
    connect(&mut s, "md5user", "md5pass").expect("md5");

    let mut s = db().unwrap();
    let e = connect(&mut s, "benchmarkdbuser", "wrong").unwrap_err();
    assert!(matches!(&e, PgError::Auth(m) if m.contains("28P01")), "{e}");

    let mut s = db().unwrap();
    let e = connect(&mut s, "md5user", "wrong").unwrap_err();
    assert!(matches!(e, PgError::Auth(_)), "{e}");
}

#[test]
fn pipelined_batches_an_update_and_an_error() {
    let Some(mut s) = db() else { return };
    let mut pg = connect(&mut s, "benchmarkdbuser", "benchmarkdbpass").unwrap();
    // 500 single-query batches in flight before the first answer is read.
    let batches: Vec<Vec<Query>> = (1..=500).map(|id| vec![Query { stmt: 0, params: vec![Param::Int4(id)] }]).collect();
    let results = run(&mut s, &mut pg, &batches);
    for (i, r) in results.iter().enumerate() {
        let rows = r.as_ref().unwrap();
        assert_eq!(rows[0].get(0).unwrap().i32(0).unwrap(), i as i32 + 1, "answers in order");
    }
    // A batch of 20 reads, an update of their rows, and a read back.
    let ids: Vec<i32> = (9001..=9020).collect();
    let values: Vec<i32> = ids.iter().map(|id| id % 97 + 1).collect();
    let update = vec![Query { stmt: 2, params: vec![Param::Int4Array(ids.clone()), Param::Int4Array(values.clone())] }];
    run(&mut s, &mut pg, &[update]).pop().unwrap().unwrap();
    let reads: Vec<Query> = ids.iter().map(|&id| Query { stmt: 0, params: vec![Param::Int4(id)] }).collect();
    let rows = run(&mut s, &mut pg, &[reads]).pop().unwrap().unwrap();
    let got: Vec<i32> = rows.iter().map(|r| r.get(0).unwrap().i32(1).unwrap()).collect();
    assert_eq!(got, values, "the update is in the database");
    // Division by zero fails its batch; the next batch on the connection is served.
    let r = run(
        &mut s,
        &mut pg,
        &[vec![Query { stmt: 3, params: vec![Param::Int4(0)] }], vec![Query { stmt: 1, params: vec![] }]],
    );
    assert_eq!(r[0].as_ref().unwrap_err().code(), Some("22012"));
    let fortunes = &r[1].as_ref().unwrap()[0];
    assert_eq!(fortunes.len(), 12);
    assert!(fortunes.iter().any(|r| r.str(1).unwrap() == "フレームワークのベンチマーク"));
}
