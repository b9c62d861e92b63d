//! Benchmark peer: may-minihttp with the TechEmpower plaintext and json routes.
//! Usage: peer-may-minihttp ADDR (e.g. 10.99.0.1:8080). Prints "listening on ADDR".

use std::io;

use may_minihttp::{HttpService, HttpServiceFactory, Request, Response};
use serde::Serialize;

#[derive(Serialize)]
struct Message {
    message: &'static str,
}

struct Techempower;

impl HttpService for Techempower {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        match req.path() {
            "/plaintext" => {
                rsp.header("Content-Type: text/plain").body("Hello, World!");
            }
            "/json" => {
                let body = serde_json::to_vec(&Message { message: "Hello, World!" }).map_err(io::Error::other)?;
                rsp.header("Content-Type: application/json").body_vec(body);
            }
            _ => {
                rsp.status_code(404, "Not Found");
            }
        }
        Ok(())
    }
}

struct Factory;

impl HttpServiceFactory for Factory {
    type Service = Techempower;
    fn new_service(&self, _id: usize) -> Techempower {
        Techempower
    }
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8080".into());
    let server = Factory.start(&addr)?;
    println!("listening on {addr}");
    server.join().map_err(|_| io::Error::other("server coroutine panicked"))?;
    Ok(())
}
