//! Compiled-in apps. Each app registers its routes and any read-only state it needs
//! before the core loops start.
//!
//! | app | routes |
//! |---|---|
//! | `tfb` | `/plaintext`, `/json` (TechEmpower rules) |
//! | `bytes` | `/bytes/{n}`: n bytes, byte i = i % 251 (transfer tests and benches) |
//! | `demo` | `/demo/...`: the handler-API example of docs/api.md |
//! | `wiki` | Parallelopedia: `/`, `/offsets/{prefix}`, `/wiki/{title}`, `/xml` (needs `wiki.dir`) |

#![deny(unsafe_code)]

pub mod bytes;
pub mod demo;
pub mod tfb;
pub mod wiki;

use px_dataplane::app::{Route, RouteError, Router, Shared};
use px_dataplane::config::Config;
use px_dataplane::runtime::AppSet;

/// Every app name `--apps` accepts.
pub const APPS: &[&str] = &["tfb", "bytes", "demo", "wiki"];

/// Why the apps could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// A name not in [`APPS`].
    #[error("unknown app `{0}` (known: tfb, bytes, demo, wiki)")]
    Unknown(String),
    /// The wiki index could not be opened.
    #[error("wiki app: {0:#}")]
    Wiki(anyhow::Error),
    /// Two apps claim the same route.
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// Builds the router and shared state for the named apps (default configuration).
pub fn mount(names: &[String]) -> Result<AppSet, MountError> {
    mount_with(names, &Config::default())
}

/// Builds the router and shared state for the named apps, with their configuration.
pub fn mount_with(names: &[String], cfg: &Config) -> Result<AppSet, MountError> {
    let mut router = Router::new();
    let mut shared = Shared::default();
    for name in names {
        let routes: &[Route] = match name.as_str() {
            "tfb" => tfb::ROUTES,
            "bytes" => bytes::ROUTES,
            "demo" => {
                demo::init(&mut shared, &cfg.demo);
                demo::ROUTES
            }
            "wiki" => {
                let index = wiki::WikiIndex::open(std::path::Path::new(&cfg.wiki.dir)).map_err(MountError::Wiki)?;
                tracing::info!("wiki: {} pages, dump of {} bytes", index.pages(), index.xml.len());
                shared.insert(wiki::Wiki { index, defer_cold: cfg.wiki.cold_reads == "defer" });
                wiki::ROUTES
            }
            other => return Err(MountError::Unknown(other.into())),
        };
        for r in routes {
            router.add(*r)?;
        }
    }
    Ok(AppSet::new(router, shared))
}
