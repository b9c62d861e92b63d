//! `px-appliance`: serve compiled-in apps over kernel sockets or AF_XDP.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use px_dataplane::config::{Backend, Config, LogFormat};
use px_dataplane::runtime;

/// px-appliance: a kernel-bypass HTTP appliance runtime.
#[derive(Parser, Debug)]
#[command(name = "px-appliance", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    /// A tool instead of serving.
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// The configuration flags (serving, and `check`).
#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// I/O path: `kernel` (kernel TCP sockets, runs anywhere), `af-xdp` (kernel bypass
    /// on --iface) or `dpdk` (a DPDK port; built with --features dpdk). Overrides
    /// server.backend.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// Address to listen on with the kernel backend, e.g. 127.0.0.1:8080 (port 0 picks
    /// a free port). Overrides server.listen.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Number of queues, each served by its own pinned core loop. Overrides server.queues.
    #[arg(long)]
    queues: Option<usize>,
    /// TOML configuration file (see nic-config/ and docs/configuration.md).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Comma-separated apps to mount: tfb, bytes, demo, wiki. Overrides server.apps.
    #[arg(long, value_delimiter = ',')]
    apps: Option<Vec<String>>,
    /// Comma-separated CPUs; queue i runs on the i-th (cycling). Overrides server.cores.
    #[arg(long, value_delimiter = ',')]
    cores: Option<Vec<usize>>,
    /// Network interface the af-xdp backend takes over (e.g. px-app0). Overrides
    /// af_xdp.iface.
    #[arg(long)]
    iface: Option<String>,
    /// Address/prefix the packet backend (af-xdp or dpdk) answers on, e.g.
    /// 10.99.0.1/24; give it twice for dual stack (--ip 10.99.0.1/24 --ip fd99::1/64).
    /// Overrides af_xdp.ip and af_xdp.ip6 (dpdk.ip and dpdk.ip6 with --backend dpdk).
    #[arg(long)]
    ip: Vec<String>,
    /// Record every frame the packet backend receives and sends to this pcap file
    /// (tcpdump -r FILE). Overrides af_xdp.pcap (dpdk.pcap with --backend dpdk).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// DPDK EAL arguments, space-separated, e.g. "--vdev net_af_packet0,iface=px-app0,qpairs=2".
    /// Overrides dpdk.eal_args.
    #[arg(long, allow_hyphen_values = true)]
    dpdk_args: Option<String>,
    /// Index directory of the wiki app (built by `px-appliance wiki-index`). Overrides
    /// wiki.dir.
    #[arg(long)]
    wiki_dir: Option<PathBuf>,
    /// PostgreSQL server of the tfb app's database routes, IP:port (e.g. 127.0.0.1:5432;
    /// scripts/db.sh starts one). Overrides db.address.
    #[arg(long)]
    db_address: Option<String>,
    /// Admin listener (`/stats`), IP:port, or "" for none; default 127.0.0.1:9180.
    /// Overrides admin.listen.
    #[arg(long)]
    admin: Option<String>,
    /// Log filter (e.g. info, debug, px_dataplane=trace). RUST_LOG wins when set.
    #[arg(long)]
    log_level: Option<String>,
    /// Log lines as `text` or `json` (one object per line). Overrides log.format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
}

// Parsed once at start; the size of a variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Build the Parallelopedia index from a MediaWiki pages-articles dump (plain UTF-8
    /// XML; decompress .bz2 first): title → page fst, byte ranges, redirect targets.
    WikiIndex {
        /// The dump (export-0.10 XML).
        #[arg(long)]
        xml: PathBuf,
        /// Directory to write the index into (created).
        #[arg(long)]
        out: PathBuf,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// Memory for sorting titles, MiB (beyond it, sorted runs go to files in --out
        /// and are merged): the builder's peak is this plus a few MiB, whatever the dump.
        #[arg(long, default_value_t = 256)]
        memory_mb: usize,
    },
    /// A preflight of this host for the configuration: capabilities, AF_XDP, the NIC's
    /// driver, queues, RSS, interrupts, NUMA, hugepages, CPU governor, addresses — each
    /// OK, WARN or FAIL with the fix. Exits 1 if anything fails. Takes the same
    /// configuration flags as serving (--config, --iface, --queues, --ip, ...).
    Check {
        /// Only warnings and failures (and the summary).
        #[arg(long)]
        quiet: bool,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// A live view of a running appliance from its admin listener: per queue req/s,
    /// frames in and out, drops by cause, busy share, connections, p50/p99 latency.
    Top {
        /// The admin listener (`[admin] listen` of the running appliance).
        #[arg(long, default_value = "127.0.0.1:9180")]
        admin: SocketAddr,
        /// Time between frames, ms.
        #[arg(long, default_value_t = 1000)]
        interval_ms: u64,
        /// Frames to show before exiting (0: until interrupted).
        #[arg(long, default_value_t = 0)]
        iterations: u64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum BackendArg {
    Kernel,
    AfXdp,
    Dpdk,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("px-appliance: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn effective_config(cli: &ServeArgs) -> Result<Config> {
    let mut cfg = match &cli.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(b) = cli.backend {
        cfg.server.backend = match b {
            BackendArg::Kernel => Backend::Kernel,
            BackendArg::AfXdp => Backend::AfXdp,
            BackendArg::Dpdk => Backend::Dpdk,
        };
    }
    if let Some(l) = cli.listen {
        cfg.server.listen = l;
    }
    if let Some(q) = cli.queues {
        cfg.server.queues = q;
    }
    if let Some(a) = &cli.apps {
        cfg.server.apps = a.clone();
    }
    if let Some(c) = &cli.cores {
        cfg.server.cores = c.clone();
    }
    if let Some(a) = &cli.admin {
        cfg.admin.listen = a.clone();
    }
    if let Some(i) = &cli.iface {
        cfg.af_xdp.iface = i.clone();
    }
    let dpdk = cfg.server.backend == Backend::Dpdk;
    for i in &cli.ip {
        let (v4, v6) =
            if dpdk { (&mut cfg.dpdk.ip, &mut cfg.dpdk.ip6) } else { (&mut cfg.af_xdp.ip, &mut cfg.af_xdp.ip6) };
        if i.contains(':') {
            *v6 = i.clone();
        } else {
            *v4 = i.clone();
        }
    }
    if let Some(p) = &cli.pcap {
        if dpdk {
            cfg.dpdk.pcap = Some(p.clone());
        } else {
            cfg.af_xdp.pcap = Some(p.clone());
        }
    }
    if let Some(a) = &cli.dpdk_args {
        cfg.dpdk.eal_args = a.split_whitespace().map(str::to_string).collect();
    }
    if let Some(l) = &cli.log_level {
        cfg.log.level = l.clone();
    }
    if let Some(f) = cli.log_format {
        cfg.log.format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    if let Some(a) = &cli.db_address {
        cfg.db.address = a.clone();
    }
    if let Some(d) = &cli.wiki_dir {
        cfg.wiki.dir = d.to_string_lossy().into_owned();
    }
    cfg.validate().context("after applying command-line flags")?;
    Ok(cfg)
}

fn init_logging(log: &px_dataplane::config::LogConfig) -> Result<()> {
    let level = &log.level;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => tracing_subscriber::EnvFilter::new(v),
        _ => tracing_subscriber::EnvFilter::try_new(level).with_context(|| format!("bad log filter {level:?}"))?,
    };
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match log.format {
        LogFormat::Text => fmt.init(),
        LogFormat::Json => fmt.json().flatten_event(true).with_current_span(false).init(),
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    if let Some(Command::Check { quiet, serve }) = &cli.command {
        let cfg = effective_config(serve)?;
        let findings = px_apps::check::run(&cfg);
        if !px_apps::check::print(&findings, *quiet) {
            anyhow::bail!("the host is not ready for this configuration (FAIL lines above)");
        }
        return Ok(());
    }
    if let Some(Command::Top { admin, interval_ms, iterations }) = &cli.command {
        return px_apps::top::run(*admin, std::time::Duration::from_millis(*interval_ms), *iterations);
    }
    if let Some(Command::WikiIndex { xml, out, quiet, memory_mb }) = &cli.command {
        let st = px_apps::wiki::index::build_with(xml, out, !quiet, memory_mb.saturating_mul(1 << 20))?;
        println!(
            "px-appliance: indexed {} pages ({} titles, {} redirects of which {} point outside the dump, {} duplicate titles) \
             of {} bytes into {}",
            st.pages,
            st.titles,
            st.redirects,
            st.redirects_missing,
            st.duplicate_titles,
            st.bytes,
            out.display()
        );
        if st.streams > 0 {
            println!(
                "px-appliance: a bzip2 multistream dump: {} streams, {} bytes of XML served from {} compressed",
                st.streams, st.plain_bytes, st.bytes
            );
        }
        return Ok(());
    }
    let cfg = effective_config(&cli.serve)?;
    if cli.serve.print_config {
        print!("{}", toml::to_string(&cfg)?);
        return Ok(());
    }
    init_logging(&cfg.log)?;
    // One log line per panic instead of a backtrace on stderr: handlers' panics are
    // caught and answered 500, and the line says where it happened.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        tracing::error!("panic in {}: {info}", thread.name().unwrap_or("?"));
    }));
    let apps = Arc::new(px_apps::mount_with(&cfg.server.apps, &cfg)?);
    let server = runtime::start(&cfg, apps.clone())?;
    if let Err(e) = px_apps::start_check(&apps, &cfg) {
        server.shutdown();
        server.join();
        return Err(e.into());
    }
    let trigger = server.shutdown_trigger();
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM])
        .context("installing signal handlers")?;
    std::thread::Builder::new().name("px-signals".into()).spawn(move || {
        if let Some(sig) = signals.forever().next() {
            tracing::info!("signal {sig}: draining connections");
            trigger();
        }
    })?;
    match server.local_addr() {
        Some(addr) => {
            tracing::info!(
                "serving http://{addr} with the kernel-socket backend, {} queue(s), apps {}",
                cfg.server.queues,
                cfg.server.apps.join(",")
            );
            // The readiness line scripts and tests wait for.
            println!("px-appliance: listening on http://{addr}");
        }
        None => {
            // The packet path: its addresses, and what carries it.
            let (ip, ip6, carrier) = match server.dpdk_port() {
                Some((port, _)) => (&cfg.dpdk.ip, &cfg.dpdk.ip6, format!("dpdk up on {port}")),
                None => (&cfg.af_xdp.ip, &cfg.af_xdp.ip6, format!("af-xdp up on {}", cfg.af_xdp.iface)),
            };
            let detail = match server.xdp_mode() {
                Some((mode, zerocopy)) => {
                    format!(", {mode} XDP, {} mode", if zerocopy { "zero-copy" } else { "copy" })
                }
                None => String::new(),
            };
            let port = cfg.server.listen.port();
            let (v6, as6) = match ip6.split('/').next().unwrap_or_default() {
                "" => (String::new(), String::new()),
                a => (format!(" and http://[{a}]:{port}"), format!(" and {ip6}")),
            };
            println!(
                "px-appliance: listening on http://{}:{port}{v6} ({carrier} as {ip}{as6}, {} queue(s){detail})",
                ip.split('/').next().unwrap_or_default(),
                cfg.server.queues
            );
        }
    }
    std::io::stdout().flush()?;
    for r in server.join() {
        tracing::info!("{r}");
    }
    if let Some(db) = apps.shared.get::<px_apps::tfb::db::TfbDb>().filter(|d| d.pool.is_some()) {
        tracing::info!("{}", db.health.counters);
    }
    Ok(())
}
