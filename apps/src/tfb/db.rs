//! The TechEmpower database tests, on the core's PostgreSQL pool ([`px_pg::Pool`]).
//!
//! Each core has its own pool (made by the core-start hook [`core_init`], kept as a
//! core-local value) and, for cached-queries, its own cache of `World`. A request's
//! queries go out as one pipelined batch: N Bind/Execute of the prepared statement, one
//! Sync; an update is a second batch with one `UPDATE … FROM unnest(…)` of every row,
//! ids sorted so that concurrent updates take row locks in the same order (no
//! deadlocks). Database trouble answers 503 (down, not answering in time); a server
//! error in a query answers 500.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use px_dataplane::app::{CoreInit, Cx, HandlerError, HandlerFuture, OwnedRequest};
use px_dataplane::config::DbConfig;
use px_dataplane::http::{Body, Response};
use px_pg::proto::oid;
use px_pg::{ConnectParams, Health, Param, PgError, Pool, PoolConfig, Query, Rows, Statement};
use serde::Serialize;

/// Rows in `World`.
pub const WORLD_ROWS: i32 = 10_000;
/// Most rows one request may ask for.
pub const MAX_QUERIES: usize = 500;

/// The statements every connection prepares (indices below).
pub const STATEMENTS: &[Statement] = &[
    Statement { name: "world", sql: "SELECT id, randomnumber FROM world WHERE id = $1", types: &[oid::INT4] },
    Statement { name: "fortune", sql: "SELECT id, message FROM fortune", types: &[] },
    Statement {
        name: "update",
        sql:
            "UPDATE world SET randomnumber = v.r FROM (SELECT unnest($1::int4[]) AS id, unnest($2::int4[]) AS r) AS v \
              WHERE world.id = v.id",
        types: &[oid::INT4_ARRAY, oid::INT4_ARRAY],
    },
];
const WORLD: usize = 0;
const FORTUNE: usize = 1;
const UPDATE: usize = 2;

/// The database as the app's shared state knows it.
pub struct TfbDb {
    /// How each core's pool connects (None: no `db.address`).
    pub pool: Option<PoolConfig>,
    /// What every core reports of its connections.
    pub health: Arc<Health>,
}

impl TfbDb {
    /// From `[db]`.
    pub fn from_config(cfg: &DbConfig) -> TfbDb {
        let pool = cfg.address.parse::<SocketAddr>().ok().map(|addr| PoolConfig {
            addr,
            params: ConnectParams {
                user: cfg.user.clone(),
                password: cfg.password.clone(),
                database: cfg.name.clone(),
                application_name: "px-appliance".into(),
            },
            statements: STATEMENTS,
            connections: cfg.connections_per_core,
            connect_timeout: Duration::from_millis(cfg.connect_timeout_ms),
            query_timeout: Duration::from_millis(cfg.query_timeout_ms),
            reconnect_min: Duration::from_millis(cfg.reconnect_min_ms),
            reconnect_max: Duration::from_millis(cfg.reconnect_max_ms),
            max_pipeline: cfg.max_pipeline,
        });
        TfbDb { pool, health: Arc::default() }
    }
}

/// The hook that opens each core's pool as the core starts (so connections are up
/// before the first request, and the start-up learns whether they can be).
pub fn core_init() -> CoreInit {
    Arc::new(|cx: &Cx| {
        let _ = pool(cx);
    })
}

fn pool(cx: &Cx) -> Result<Rc<Pool>, HandlerError> {
    let db = cx.shared::<TfbDb>().ok_or_else(|| HandlerError::status(500, "tfb not initialised\n"))?;
    let cfg = db.pool.as_ref().ok_or_else(|| HandlerError::status(503, "no database configured (db.address)\n"))?;
    Ok(cx.local(|| Pool::start(cx, cfg.clone(), db.health.clone())))
}

/// A database failure as the client sees it.
fn failed(e: PgError) -> HandlerError {
    match e {
        PgError::Server { severity, code, message } if severity == "ERROR" => {
            tracing::warn!("db: query failed: {code} {message}");
            HandlerError::status(500, format!("database error {code}\n"))
        }
        e => HandlerError::status(503, format!("{e}\n")),
    }
}

/// `queries` / `count` by the rules: 1..=500, anything unparsable is 1.
pub fn clamp_count(raw: Option<&str>) -> usize {
    let Some(s) = raw.map(str::trim) else { return 1 };
    match s.parse::<i64>() {
        Ok(n) => n.clamp(1, MAX_QUERIES as i64) as usize,
        // Digits too many for an i64: far above 500.
        Err(_) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => MAX_QUERIES,
        Err(_) => 1,
    }
}

fn random_id() -> i32 {
    fastrand::i32(1..=WORLD_ROWS)
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
struct World {
    id: i32,
    #[serde(rename = "randomNumber")]
    random_number: i32,
}

fn world(rows: &Rows) -> Result<World, HandlerError> {
    let row = rows.get(0).ok_or_else(|| HandlerError::status(500, "no such row\n"))?;
    let bad = |e: PgError| HandlerError::status(500, format!("{e}\n"));
    Ok(World { id: row.i32(0).map_err(bad)?, random_number: row.i32(1).map_err(bad)? })
}

fn json<T: Serialize>(v: &T) -> Result<Response<'static>, HandlerError> {
    let body = serde_json::to_vec(v).map_err(|e| HandlerError::status(500, format!("{e}\n")))?;
    Ok(Response::new(200, "application/json", Body::Owned(body)))
}

fn world_query(id: i32) -> Query {
    Query { stmt: WORLD, params: vec![Param::Int4(id)] }
}

/// N random rows, one query each, in one pipelined batch.
async fn read_worlds(cx: &Cx, pool: &Pool, n: usize) -> Result<Vec<World>, HandlerError> {
    let queries = (0..n).map(|_| world_query(random_id())).collect();
    let results = pool.batch(cx, queries).await.map_err(failed)?;
    results.iter().map(world).collect()
}

/// `/db`.
pub fn single(_: OwnedRequest, cx: Cx) -> HandlerFuture {
    Box::pin(async move {
        let pool = pool(&cx)?;
        let rows = pool.query(&cx, world_query(random_id())).await.map_err(failed)?;
        json(&world(&rows)?)
    })
}

/// `/queries?queries=N`.
pub fn queries(req: OwnedRequest, cx: Cx) -> HandlerFuture {
    Box::pin(async move {
        let n = clamp_count(req.query("queries").as_deref());
        let pool = pool(&cx)?;
        json(&read_worlds(&cx, &pool, n).await?)
    })
}

/// `/updates?queries=N`.
pub fn updates(req: OwnedRequest, cx: Cx) -> HandlerFuture {
    Box::pin(async move {
        let n = clamp_count(req.query("queries").as_deref());
        let pool = pool(&cx)?;
        let mut worlds = read_worlds(&cx, &pool, n).await?;
        for w in &mut worlds {
            w.random_number = random_id();
        }
        // One row per id, the last value given to it (a row asked for twice shows that
        // value both times); ids ascending, so every update locks rows in one order.
        let mut rows: Vec<World> = worlds.clone();
        rows.reverse();
        rows.sort_by_key(|w| w.id); // stable: the last assignment of each id comes first
        rows.dedup_by_key(|w| w.id);
        for w in &mut worlds {
            if let Ok(i) = rows.binary_search_by_key(&w.id, |r| r.id) {
                w.random_number = rows[i].random_number;
            }
        }
        let ids = rows.iter().map(|w| w.id).collect();
        let values = rows.iter().map(|w| w.random_number).collect();
        let update = Query { stmt: UPDATE, params: vec![Param::Int4Array(ids), Param::Int4Array(values)] };
        pool.batch(&cx, vec![update]).await.map_err(failed)?;
        json(&worlds)
    })
}

struct Fortune {
    id: i32,
    message: String,
}

#[derive(Template)]
#[template(path = "fortunes.html")]
struct FortunesPage<'a> {
    fortunes: &'a [Fortune],
}

/// `/fortunes`.
pub fn fortunes(_: OwnedRequest, cx: Cx) -> HandlerFuture {
    Box::pin(async move {
        let pool = pool(&cx)?;
        let rows = pool.query(&cx, Query { stmt: FORTUNE, params: vec![] }).await.map_err(failed)?;
        let bad = |e: PgError| HandlerError::status(500, format!("{e}\n"));
        let mut list = Vec::with_capacity(rows.len() + 1);
        for r in rows.iter() {
            list.push(Fortune { id: r.i32(0).map_err(bad)?, message: r.str(1).map_err(bad)?.to_string() });
        }
        list.push(Fortune { id: 0, message: "Additional fortune added at request time.".into() });
        list.sort_by(|a, b| a.message.cmp(&b.message));
        let page = FortunesPage { fortunes: &list };
        let html = page.render().map_err(|e| HandlerError::status(500, format!("template: {e}\n")))?;
        Ok(Response::new(200, "text/html; charset=utf-8", Body::Owned(html.into_bytes())))
    })
}

/// This core's cache of `World` rows (id → randomNumber), filled from the database as
/// rows are first asked for.
struct WorldCache(RefCell<quick_cache::unsync::Cache<i32, i32>>);

/// `/cached-queries?count=N`.
pub fn cached_queries(req: OwnedRequest, cx: Cx) -> HandlerFuture {
    Box::pin(async move {
        let n = clamp_count(req.query("count").as_deref());
        let cache = cx.local(|| WorldCache(RefCell::new(quick_cache::unsync::Cache::new(WORLD_ROWS as usize))));
        let ids: Vec<i32> = (0..n).map(|_| random_id()).collect();
        let mut out: Vec<Option<World>> = {
            let c = cache.0.borrow();
            ids.iter().map(|&id| c.get(&id).map(|&r| World { id, random_number: r })).collect()
        };
        let missing: Vec<i32> = ids.iter().zip(&out).filter(|(_, w)| w.is_none()).map(|(&id, _)| id).collect();
        if !missing.is_empty() {
            let pool = pool(&cx)?;
            let results = pool.batch(&cx, missing.iter().map(|&id| world_query(id)).collect()).await.map_err(failed)?;
            let mut c = cache.0.borrow_mut();
            for rows in &results {
                let w = world(rows)?;
                c.insert(w.id, w.random_number);
            }
            for (slot, &id) in out.iter_mut().zip(&ids) {
                if slot.is_none() {
                    *slot = c.get(&id).map(|&r| World { id, random_number: r });
                }
            }
        }
        let worlds: Option<Vec<World>> = out.into_iter().collect();
        json(&worlds.ok_or_else(|| HandlerError::status(500, "cache lost a row\n"))?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_clamped_by_the_rules() {
        for (raw, n) in [
            (None, 1),
            (Some(""), 1),
            (Some("foo"), 1),
            (Some("0"), 1),
            (Some("-3"), 1),
            (Some("1"), 1),
            (Some("20"), 20),
            (Some("500"), 500),
            (Some("501"), 500),
            (Some("99999999999999999999"), 500),
            (Some("2x"), 1),
        ] {
            assert_eq!(clamp_count(raw), n, "{raw:?}");
        }
    }

    #[test]
    fn the_fortunes_template_escapes() {
        let list = [Fortune { id: 11, message: "<script>alert(\"x\");</script> & フ".into() }];
        let html = FortunesPage { fortunes: &list }.render().unwrap();
        assert!(
            html.contains("<td>11</td><td>&#60;script&#62;alert(&#34;x&#34;);&#60;/script&#62; &#38; フ</td>"),
            "{html}"
        );
    }
}
