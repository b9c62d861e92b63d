//! The state machine against scripted server messages (no database needed).

use super::*;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}
fn auth_ok() -> Vec<u8> {
    msg(b'R', &0u32.to_be_bytes())
}
fn ready() -> Vec<u8> {
    msg(b'Z', b"I")
}
fn data_row(cols: &[&[u8]]) -> Vec<u8> {
    let mut b = (cols.len() as u16).to_be_bytes().to_vec();
    for c in cols {
        b.extend_from_slice(&(c.len() as i32).to_be_bytes());
        b.extend_from_slice(c);
    }
    msg(b'D', &b)
}
fn complete(tag: &str) -> Vec<u8> {
    let mut b = tag.as_bytes().to_vec();
    b.push(0);
    msg(b'C', &b)
}
fn error(severity: &str, code: &str, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (t, v) in [(b'S', severity), (b'V', severity), (b'C', code), (b'M', text)] {
        b.push(t);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b.push(0);
    msg(b'E', &b)
}

const STMTS: &[Statement] = &[
    Statement { name: "w", sql: "SELECT id, randomnumber FROM world WHERE id = $1", types: &[oid::INT4] },
    Statement { name: "f", sql: "SELECT id, message FROM fortune", types: &[] },
];

fn params() -> ConnectParams {
    ConnectParams { user: "u".into(), password: "p".into(), database: "d".into(), application_name: "t".into() }
}

/// Tags of the frontend messages in `out` (the startup message has none).
fn tags(out: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    let mut i = 0;
    while i + 5 <= out.len() {
        t.push(out[i]);
        i += 1 + u32::from_be_bytes(out[i + 1..i + 5].try_into().unwrap()) as usize;
    }
    t
}

fn ready_conn() -> PgConn {
    let mut c = PgConn::new(params(), STMTS);
    let startup = c.take_output();
    assert!(startup.windows(2).any(|w| w == b"u\0"), "the startup names the user");
    c.receive(&[auth_ok(), ready()].concat()).unwrap();
    assert_eq!(tags(&c.take_output()), b"PPS", "both statements parsed behind one Sync");
    assert!(!c.is_ready());
    c.receive(&[msg(b'1', b""), msg(b'1', b""), ready()].concat()).unwrap();
    assert!(matches!(c.poll_event(), Some(Event::Ready)));
    assert!(c.is_ready());
    c
}

#[test]
fn startup_prepares_then_pipelined_batches_complete_in_order() {
    let mut c = ready_conn();
    let q = |id| Query { stmt: 0, params: vec![Param::Int4(id)] };
    let a = c.submit(&[q(1), q(2)]).unwrap();
    let b = c.submit(&[Query { stmt: 1, params: vec![] }]).unwrap();
    assert_eq!(tags(&c.take_output()), b"BEBESBES", "two batches, one Sync each, sent before any answer");
    assert_eq!(c.in_flight(), 2);
    // The answers arrive split at awkward places.
    let bytes = [
        msg(b'2', b""),
        data_row(&[&1i32.to_be_bytes(), &77i32.to_be_bytes()]),
        complete("SELECT 1"),
        msg(b'2', b""),
        data_row(&[&2i32.to_be_bytes(), &88i32.to_be_bytes()]),
        complete("SELECT 1"),
        ready(),
        msg(b'2', b""),
        data_row(&[&1i32.to_be_bytes(), "héllo".as_bytes()]),
        data_row(&[&2i32.to_be_bytes(), b"<b>"]),
        complete("SELECT 2"),
        ready(),
    ]
    .concat();
    for chunk in bytes.chunks(7) {
        c.receive(chunk).unwrap();
    }
    let Some(Event::Done { id, result: Ok(rows) }) = c.poll_event() else { panic!("first batch") };
    assert_eq!(id, a);
    assert_eq!(rows.len(), 2);
    assert_eq!((rows[0].get(0).unwrap().i32(0).unwrap(), rows[0].get(0).unwrap().i32(1).unwrap()), (1, 77));
    assert_eq!(rows[1].get(0).unwrap().i32(1).unwrap(), 88);
    let Some(Event::Done { id, result: Ok(rows) }) = c.poll_event() else { panic!("second batch") };
    assert_eq!(id, b);
    let msgs: Vec<&str> = rows[0].iter().map(|r| r.str(1).unwrap()).collect();
    assert_eq!(msgs, ["héllo", "<b>"]);
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn an_error_fails_its_batch_only() {
    let mut c = ready_conn();
    let q = Query { stmt: 0, params: vec![Param::Int4(1)] };
    let a = c.submit(std::slice::from_ref(&q)).unwrap();
    let b = c.submit(std::slice::from_ref(&q)).unwrap();
    c.take_output();
    let bytes = [
        error("ERROR", "40P01", "deadlock detected"),
        ready(),
        msg(b'2', b""),
        data_row(&[&1i32.to_be_bytes(), &5i32.to_be_bytes()]),
        complete("SELECT 1"),
        ready(),
    ]
    .concat();
    c.receive(&bytes).unwrap();
    let Some(Event::Done { id, result: Err(e) }) = c.poll_event() else { panic!("the first fails") };
    assert_eq!((id, e.code()), (a, Some("40P01")));
    let Some(Event::Done { id, result: Ok(_) }) = c.poll_event() else { panic!("the second succeeds") };
    assert_eq!(id, b);
}

#[test]
fn fatal_errors_and_protocol_violations_end_the_connection() {
    let mut c = ready_conn();
    c.submit(&[Query { stmt: 1, params: vec![] }]).unwrap();
    let e = c.receive(&error("FATAL", "57P01", "terminating connection due to administrator command")).unwrap_err();
    assert_eq!(e.code(), Some("57P01"));
    assert_eq!(c.receive(&ready()).unwrap_err(), PgError::Closed, "nothing more is taken");

    let mut c = ready_conn();
    let e = c.receive(&data_row(&[b"x"])).unwrap_err();
    assert!(matches!(e, PgError::Protocol(_)), "a row with no batch in flight: {e}");
}

#[test]
fn startup_errors_are_typed() {
    let mut c = PgConn::new(params(), STMTS);
    let e = c.receive(&error("FATAL", "28P01", "password authentication failed for user \"u\"")).unwrap_err();
    assert!(matches!(&e, PgError::Auth(m) if m.contains("28P01")), "{e}");
    assert!(e.is_config());

    let mut c = PgConn::new(params(), STMTS);
    let e = c.receive(&error("FATAL", "3D000", "database \"d\" does not exist")).unwrap_err();
    assert_eq!(e.code(), Some("3D000"));
    assert!(e.is_config());

    let mut c = PgConn::new(params(), STMTS);
    let gss = msg(b'R', &7u32.to_be_bytes());
    assert!(matches!(c.receive(&gss).unwrap_err(), PgError::Auth(_)), "GSSAPI is not spoken");

    let mut c = PgConn::new(params(), STMTS);
    c.take_output();
    c.receive(&[auth_ok(), ready()].concat()).unwrap();
    let e = c.receive(&error("ERROR", "42P01", "relation \"world\" does not exist")).unwrap_err();
    assert!(e.is_config(), "a statement that does not prepare is a set-up error: {e}");
}

#[test]
fn md5_answers_with_the_salted_hash() {
    let mut c = PgConn::new(params(), STMTS);
    c.take_output();
    let mut body = 5u32.to_be_bytes().to_vec();
    body.extend_from_slice(&[1, 2, 3, 4]);
    c.receive(&msg(b'R', &body)).unwrap();
    let out = c.take_output();
    assert_eq!(out[0], b'p');
    let expect = postgres_protocol::authentication::md5_hash(b"u", b"p", [1, 2, 3, 4]);
    assert_eq!(&out[5..out.len() - 1], expect.as_bytes());
}

#[test]
fn submitting_before_ready_or_with_bad_parameters_queues_nothing() {
    let mut c = PgConn::new(params(), STMTS);
    c.take_output();
    assert!(matches!(c.submit(&[]), Err(PgError::Unavailable(_))));
    let mut c = ready_conn();
    assert!(c.submit(&[Query { stmt: 0, params: vec![] }]).is_err(), "w takes one parameter");
    assert!(c.submit(&[Query { stmt: 9, params: vec![] }]).is_err());
    assert!(c.take_output().is_empty());
    assert_eq!(c.in_flight(), 0);
}
