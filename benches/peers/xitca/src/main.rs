//! Benchmark peer: xitca-web with xitca-postgres (the stack that led TechEmpower's db
//! test in its last round), written for this harness by its documented API: one worker
//! thread per `WORKERS`, each with its own database connection (pipelined: queries are
//! sent as they are issued and their answers awaited afterwards) and prepared statements.
//! Usage: peer-xitca ADDR [WORKERS] [DB_URL]. Prints "listening on ADDR".

use std::future::IntoFuture;

use askama::Template;
use serde::Serialize;
use xitca_postgres::{iter::AsyncLendingIterator, statement::Statement, types::Type, Client, Execute, Postgres};
use xitca_web::handler::{handler_service, html::Html, json::Json, state::StateRef, uri::UriRef};
use xitca_web::route::get;
use xitca_web::App;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Db {
    cli: Client,
    world: Statement,
    fortune: Statement,
    update: Statement,
}

async fn connect(url: String) -> Result<Db, Error> {
    let (cli, drv) = Postgres::new(url.as_str()).connect().await?;
    tokio::task::spawn_local(drv.into_future());
    let world = Statement::named("SELECT id, randomnumber FROM world WHERE id = $1", &[Type::INT4]).execute(&cli).await?.leak();
    let fortune = Statement::named("SELECT id, message FROM fortune", &[]).execute(&cli).await?.leak();
    let update = Statement::named(
        "UPDATE world SET randomnumber = v.r FROM (SELECT unnest($1::int4[]) AS id, unnest($2::int4[]) AS r) AS v \
         WHERE world.id = v.id",
        &[Type::INT4_ARRAY, Type::INT4_ARRAY],
    )
    .execute(&cli)
    .await?
    .leak();
    Ok(Db { cli, world, fortune, update })
}

#[derive(Serialize, Clone, Copy)]
struct World {
    id: i32,
    #[serde(rename = "randomNumber")]
    random_number: i32,
}

#[derive(Serialize)]
struct Message {
    message: &'static str,
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

fn count(uri: &xitca_web::http::Uri) -> usize {
    let q = uri.query().unwrap_or("");
    let v = q.split('&').find_map(|kv| kv.strip_prefix("queries=").or_else(|| kv.strip_prefix("count=")));
    match v.map(|s| s.parse::<i64>()) {
        Some(Ok(n)) => n.clamp(1, 500) as usize,
        _ => 1,
    }
}

fn rid() -> i32 {
    fastrand::i32(1..=10_000)
}

/// Sends `n` reads at once (pipelined on the connection), then collects them.
async fn worlds(db: &Db, ids: impl Iterator<Item = i32>) -> Result<Vec<World>, Error> {
    let mut streams = Vec::new();
    for id in ids {
        streams.push(db.world.bind([id]).query(&db.cli).await?);
    }
    let mut out = Vec::with_capacity(streams.len());
    for mut s in streams {
        let row = s.try_next().await?.ok_or("no row")?;
        out.push(World { id: row.get(0), random_number: row.get(1) });
    }
    Ok(out)
}

async fn db(StateRef(db): StateRef<'_, Db>) -> Result<Json<World>, Error> {
    Ok(Json(worlds(db, std::iter::once(rid())).await?[0]))
}

async fn queries(StateRef(db): StateRef<'_, Db>, UriRef(uri): UriRef<'_>) -> Result<Json<Vec<World>>, Error> {
    let n = count(uri);
    Ok(Json(worlds(db, (0..n).map(|_| rid())).await?))
}

async fn updates(StateRef(db): StateRef<'_, Db>, UriRef(uri): UriRef<'_>) -> Result<Json<Vec<World>>, Error> {
    let n = count(uri);
    let mut ws = worlds(db, (0..n).map(|_| rid())).await?;
    for w in &mut ws {
        w.random_number = rid();
    }
    let mut rows = ws.clone();
    rows.reverse();
    rows.sort_by_key(|w| w.id);
    rows.dedup_by_key(|w| w.id);
    for w in &mut ws {
        if let Ok(i) = rows.binary_search_by_key(&w.id, |r| r.id) {
            w.random_number = rows[i].random_number;
        }
    }
    let ids: Vec<i32> = rows.iter().map(|w| w.id).collect();
    let nums: Vec<i32> = rows.iter().map(|w| w.random_number).collect();
    db.update.bind_dyn(&[&ids, &nums]).execute(&db.cli).await?;
    Ok(Json(ws))
}

async fn fortunes(StateRef(db): StateRef<'_, Db>) -> Result<Html<String>, Error> {
    let mut s = db.fortune.bind_none().query(&db.cli).await?;
    let mut list = Vec::new();
    while let Some(row) = s.try_next().await? {
        list.push(Fortune { id: row.get(0), message: row.get::<&str>(1).to_string() });
    }
    list.push(Fortune { id: 0, message: "Additional fortune added at request time.".into() });
    list.sort_by(|a, b| a.message.cmp(&b.message));
    Ok(Html(FortunesPage { fortunes: &list }.render()?))
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".into());
    let workers: usize = std::env::args().nth(2).and_then(|w| w.parse().ok()).unwrap_or(1);
    let url = std::env::args()
        .nth(3)
        .unwrap_or_else(|| "postgres://benchmarkdbuser:benchmarkdbpass@127.0.0.1:5432/hello_world".into());
    let server = App::new()
        .with_async_state(move || connect(url.clone()))
        .at("/plaintext", get(handler_service(async || "Hello, World!")))
        .at("/json", get(handler_service(async || Json(Message { message: "Hello, World!" }))))
        .at("/db", get(handler_service(db)))
        .at("/queries", get(handler_service(queries)))
        .at("/updates", get(handler_service(updates)))
        .at("/fortunes", get(handler_service(fortunes)))
        .serve()
        .worker_threads(workers)
        .bind(addr.as_str())?;
    println!("listening on {addr}");
    server.run().wait()
}
