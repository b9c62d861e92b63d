//! Benchmark peer: actix-web with the TechEmpower plaintext and json routes.
//! Usage: peer-actix ADDR [WORKERS]. Prints "listening on ADDR".

use actix_web::http::header::{HeaderValue, CONTENT_TYPE, SERVER};
use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Serialize;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

async fn plaintext() -> HttpResponse {
    let mut r = HttpResponse::Ok().body("Hello, World!");
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r.headers_mut().insert(SERVER, HeaderValue::from_static("actix"));
    r
}

async fn json() -> HttpResponse {
    let body = serde_json::to_vec(&Message { message: "Hello, World!" }).expect("serialises");
    let mut r = HttpResponse::Ok().body(body);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(SERVER, HeaderValue::from_static("actix"));
    r
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".into());
    let workers: usize = std::env::args().nth(2).and_then(|w| w.parse().ok()).unwrap_or(1);
    let server = HttpServer::new(|| App::new().route("/plaintext", web::get().to(plaintext)).route("/json", web::get().to(json)))
        .workers(workers)
        .max_connections(65_536)
        .backlog(4096)
        .bind(&addr)?;
    println!("listening on {addr}");
    server.run().await
}
