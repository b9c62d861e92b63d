//! Compiled-in apps. Each app registers its routes and any read-only state it needs
//! before the core loops start.
//!
//! | app | routes |
//! |---|---|
//! | `tfb` | the TechEmpower suite: `/plaintext`, `/json`, `/db`, `/queries`, `/updates`, `/fortunes`, `/cached-queries` (the database ones need `db.address`) |
//! | `bytes` | `/bytes/{n}`: n bytes, byte i = i % 251 (transfer tests and benches) |
//! | `demo` | `/demo/...`: the handler-API example of docs/api.md |
//! | `wiki` | Parallelopedia: `/`, `/offsets/{prefix}`, `/wiki/{title}`, `/xml` (needs `wiki.dir`) |

#![deny(unsafe_code)]

pub mod bytes;
pub mod check;
pub mod demo;
pub mod tfb;
pub mod top;
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
    let mut core_init = Vec::new();
    for name in names {
        let routes: &[Route] = match name.as_str() {
            "tfb" => {
                let db = tfb::db::TfbDb::from_config(&cfg.db);
                if db.pool.is_some() {
                    core_init.push(tfb::db::core_init());
                }
                shared.insert(db);
                tfb::ROUTES
            }
            "bytes" => bytes::ROUTES,
            "demo" => {
                demo::init(&mut shared, &cfg.demo);
                demo::ROUTES
            }
            "wiki" => {
                let index = wiki::WikiIndex::open_with(std::path::Path::new(&cfg.wiki.dir), cfg.wiki.hugepages)
                    .map_err(MountError::Wiki)?;
                tracing::info!(
                    "wiki: {} pages, {}; index ({} MiB) resident, {} ({})",
                    index.pages(),
                    index.dump.describe(),
                    index.resident_bytes >> 20,
                    index.residence.describe(),
                    index.resident_files
                );
                shared.insert(wiki::Wiki {
                    index,
                    page_reads: wiki::PageReads::parse(&cfg.wiki.page_reads).unwrap_or(wiki::PageReads::IoUring),
                    stream_cache_bytes: (cfg.wiki.stream_cache_mb << 20) as usize,
                    offsets_cache_bytes: (cfg.wiki.offsets_cache_mb << 20) as usize,
                });
                wiki::ROUTES
            }
            other => return Err(MountError::Unknown(other.into())),
        };
        for r in routes {
            router.add(*r)?;
        }
    }
    let mut apps = AppSet::new(router, shared);
    apps.core_init = core_init;
    Ok(apps)
}

/// Why the apps could not start serving.
#[derive(Debug, thiserror::Error)]
pub enum StartCheckError {
    /// The database refused us for a reason that waiting will not cure.
    #[error(
        "database at {addr}: {source} (check db.address, db.user, db.password and db.name; scripts/db.sh up creates          the benchmark's database)"
    )]
    Database {
        /// Where.
        addr: String,
        /// Why.
        source: px_pg::PgError,
    },
}

/// Waits (bounded) for what the apps need at start-up, once the cores run: the tfb app's
/// first database connection. Bad credentials or a missing database or schema are an
/// error (unless `db.on_start_error = "warn"`); a database that is not reachable yet is
/// logged, and its routes answer 503 until it is.
pub fn start_check(apps: &AppSet, cfg: &Config) -> Result<(), StartCheckError> {
    let Some(db) = apps.shared.get::<tfb::db::TfbDb>() else { return Ok(()) };
    let Some(pool) = &db.pool else { return Ok(()) };
    let limit = pool.connect_timeout + std::time::Duration::from_millis(500);
    match db.health.wait_first(limit) {
        Some(Ok(())) => {
            tracing::info!(
                "db: connected to {} as {} (database {})",
                pool.addr,
                pool.params.user,
                pool.params.database
            );
            Ok(())
        }
        Some(Err(e)) if e.is_config() && cfg.db.on_start_error == "fail" => {
            Err(StartCheckError::Database { addr: pool.addr.to_string(), source: e })
        }
        Some(Err(e)) => {
            tracing::warn!("db: {} not usable yet ({e}); the database routes answer 503 until it is", pool.addr);
            Ok(())
        }
        None => {
            tracing::warn!(
                "db: no answer from {} within {limit:?}; the database routes answer 503 until it comes",
                pool.addr
            );
            Ok(())
        }
    }
}
