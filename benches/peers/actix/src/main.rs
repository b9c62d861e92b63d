//! Benchmark peer: actix-web with the TechEmpower plaintext and json routes, and the
//! database routes on tokio-postgres (as actix's TechEmpower entry does): each worker
//! thread has its own connection with prepared statements; a request's queries are
//! issued together, so tokio-postgres pipelines them on the connection.
//! Usage: peer-actix ADDR [WORKERS] [DB_CONFIG]. Prints "listening on ADDR".
//! Without DB_CONFIG the database routes are not mounted.

use actix_web::http::header::{HeaderValue, CONTENT_TYPE, SERVER};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use askama::Template;
use futures_util::future::try_join_all;
use serde::Serialize;
use tokio_postgres::{types::Type, Client, NoTls, Statement};

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

fn respond(body: Vec<u8>, content_type: &'static str) -> HttpResponse {
    let mut r = HttpResponse::Ok().body(body);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut().insert(SERVER, HeaderValue::from_static("actix"));
    r
}

async fn plaintext() -> HttpResponse {
    respond(b"Hello, World!".to_vec(), "text/plain")
}

async fn json() -> HttpResponse {
    respond(serde_json::to_vec(&Message { message: "Hello, World!" }).expect("serialises"), "application/json")
}

struct Db {
    cli: Client,
    world: Statement,
    fortune: Statement,
    update: Statement,
}

async fn connect(config: String) -> Db {
    let (cli, conn) = tokio_postgres::connect(&config, NoTls).await.expect("database connection");
    actix_web::rt::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("peer-actix: database connection: {e}");
        }
    });
    let world = cli.prepare_typed("SELECT id, randomnumber FROM world WHERE id = $1", &[Type::INT4]).await.unwrap();
    let fortune = cli.prepare("SELECT id, message FROM fortune").await.unwrap();
    let update = cli
        .prepare_typed(
            "UPDATE world SET randomnumber = v.r FROM (SELECT unnest($1::int4[]) AS id, unnest($2::int4[]) AS r) AS v \
             WHERE world.id = v.id",
            &[Type::INT4_ARRAY, Type::INT4_ARRAY],
        )
        .await
        .unwrap();
    Db { cli, world, fortune, update }
}

#[derive(Serialize, Clone, Copy)]
struct World {
    id: i32,
    #[serde(rename = "randomNumber")]
    random_number: i32,
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

fn count(req: &HttpRequest) -> usize {
    let q = req.query_string();
    let v = q.split('&').find_map(|kv| kv.strip_prefix("queries=").or_else(|| kv.strip_prefix("count=")));
    match v.map(|s| s.parse::<i64>()) {
        Some(Ok(n)) => n.clamp(1, 500) as usize,
        _ => 1,
    }
}

fn rid() -> i32 {
    fastrand::i32(1..=10_000)
}

async fn worlds(db: &Db, n: usize) -> Result<Vec<World>, tokio_postgres::Error> {
    let ids: Vec<i32> = (0..n).map(|_| rid()).collect();
    let rows = try_join_all(ids.iter().map(|id| async move { db.cli.query_one(&db.world, &[id]).await })).await?;
    // (try_join_all polls every query before any answer is read: they share round trips.)
    Ok(rows.iter().map(|r| World { id: r.get(0), random_number: r.get(1) }).collect())
}

fn db_error(e: tokio_postgres::Error) -> HttpResponse {
    HttpResponse::ServiceUnavailable().body(e.to_string())
}

async fn single(db: web::Data<Db>) -> HttpResponse {
    match worlds(&db, 1).await {
        Ok(w) => respond(serde_json::to_vec(&w[0]).unwrap(), "application/json"),
        Err(e) => db_error(e),
    }
}

async fn queries(req: HttpRequest, db: web::Data<Db>) -> HttpResponse {
    match worlds(&db, count(&req)).await {
        Ok(w) => respond(serde_json::to_vec(&w).unwrap(), "application/json"),
        Err(e) => db_error(e),
    }
}

async fn updates(req: HttpRequest, db: web::Data<Db>) -> HttpResponse {
    let mut ws = match worlds(&db, count(&req)).await {
        Ok(w) => w,
        Err(e) => return db_error(e),
    };
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
    if let Err(e) = db.cli.execute(&db.update, &[&ids, &nums]).await {
        return db_error(e);
    }
    respond(serde_json::to_vec(&ws).unwrap(), "application/json")
}

async fn fortunes(db: web::Data<Db>) -> HttpResponse {
    let rows = match db.cli.query(&db.fortune, &[]).await {
        Ok(r) => r,
        Err(e) => return db_error(e),
    };
    let mut list: Vec<Fortune> = rows.iter().map(|r| Fortune { id: r.get(0), message: r.get(1) }).collect();
    list.push(Fortune { id: 0, message: "Additional fortune added at request time.".into() });
    list.sort_by(|a, b| a.message.cmp(&b.message));
    respond(FortunesPage { fortunes: &list }.render().unwrap().into_bytes(), "text/html; charset=utf-8")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".into());
    let workers: usize = std::env::args().nth(2).and_then(|w| w.parse().ok()).unwrap_or(1);
    let db = std::env::args().nth(3);
    let server = HttpServer::new(move || {
        let app = App::new().route("/plaintext", web::get().to(plaintext)).route("/json", web::get().to(json));
        match &db {
            None => app,
            Some(config) => {
                // The factory runs on each worker thread: each connects once, there.
                let config = config.clone();
                app.data_factory(move || {
                    let config = config.clone();
                    async move { Ok::<_, std::convert::Infallible>(connect(config).await) }
                })
                .route("/db", web::get().to(single))
                    .route("/queries", web::get().to(queries))
                    .route("/updates", web::get().to(updates))
                    .route("/fortunes", web::get().to(fortunes))
            }
        }
    })
    .workers(workers)
    .max_connections(65_536)
    .backlog(4096)
    .bind(&addr)?;
    println!("listening on {addr}");
    server.run().await
}
