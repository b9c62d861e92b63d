//! Shared helpers for the integration tests: start the real binary, wait for its
//! readiness line, talk raw HTTP, find client tools.
#![allow(dead_code)]

pub mod db;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_px-appliance");

/// A running px-appliance on a free loopback port.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    stderr: Option<mpsc::Receiver<String>>,
}

impl Server {
    /// Starts the binary with `--backend kernel --listen 127.0.0.1:0` (unless `args` has
    /// its own `--listen`) and `args`, and waits (up to 20 s) for its "listening on" line.
    pub fn start(args: &[&str]) -> Server {
        Server::start_under(&[], args)
    }

    /// As [`start`](Self::start), run under `wrapper` (e.g. `prlimit --nofile=48`).
    pub fn start_under(wrapper: &[&str], args: &[&str]) -> Server {
        Server::launch(wrapper, args, false)
    }

    /// As [`start_under`](Self::start_under), keeping what it logs (at info level) for
    /// [`stop_log`](Self::stop_log).
    pub fn start_logged(wrapper: &[&str], args: &[&str]) -> Server {
        Server::launch(wrapper, args, true)
    }

    fn launch(wrapper: &[&str], args: &[&str], logged: bool) -> Server {
        let mut cmd = match wrapper.split_first() {
            Some((prog, rest)) => {
                let mut c = Command::new(prog);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let listen: &[&str] = if args.contains(&"--listen") { &[] } else { &["--listen", "127.0.0.1:0"] };
        let mut child = cmd
            .args(["--backend", "kernel"])
            .args(listen)
            .args(args)
            .env("RUST_LOG", if logged { "info" } else { "warn" })
            .stdout(Stdio::piped())
            .stderr(if logged { Stdio::piped() } else { Stdio::inherit() })
            .spawn()
            .expect("spawn px-appliance");
        let stderr = child.stderr.take().map(|err| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                let mut all = String::new();
                let _ = BufReader::new(err).read_to_string(&mut all);
                let _ = tx.send(all);
            });
            rx
        });
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).expect("px-appliance printed its readiness line");
        let addr = line.rsplit("http://").next().unwrap().trim().parse().expect("address in readiness line");
        Server { child: Some(child), addr, stderr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([&format!("-{sig}"), &self.pid().to_string()]).status().unwrap().success();
        assert!(ok, "kill -{sig}");
    }

    /// Waits for exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait; panics unless it exits 0 within 5 s.
    pub fn stop(mut self) {
        self.signal("TERM");
        let st = self.wait(Duration::from_secs(5)).expect("exited within 5 s of SIGTERM");
        assert!(st.success(), "exit status {st}");
    }

    /// As [`stop`](Self::stop), returning what it logged (started with
    /// [`start_logged`](Self::start_logged)).
    pub fn stop_log(mut self) -> String {
        let rx = self.stderr.take().expect("started with start_logged");
        self.stop();
        rx.recv_timeout(Duration::from_secs(5)).expect("the log")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A raw client connection.
pub struct Raw {
    pub sock: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let sock = TcpStream::connect(addr).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw { sock, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).unwrap();
    }

    /// Reads one response (Content-Length framing). `head` for HEAD requests.
    pub fn read_response(&mut self, head: bool) -> Resp {
        loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) = r.parse(&self.buf).expect("valid response") {
                let headers: Vec<(String, String)> = r
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                let status = r.code.unwrap();
                let len = if head {
                    0
                } else {
                    headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .map_or(0, |(_, v)| v.parse().unwrap())
                };
                while self.buf.len() < n + len {
                    self.fill();
                }
                let body = self.buf[n..n + len].to_vec();
                self.buf.drain(..n + len);
                return Resp { status, headers, body };
            }
            self.fill();
        }
    }

    fn fill(&mut self) {
        let mut tmp = [0u8; 65536];
        let n = self.sock.read(&mut tmp).expect("read (10 s timeout)");
        assert!(n > 0, "connection closed mid-response; have {:?}", String::from_utf8_lossy(&self.buf));
        self.buf.extend_from_slice(&tmp[..n]);
    }

    /// True if the server closes the connection (EOF) within the read timeout.
    pub fn closed_by_server(&mut self) -> bool {
        let mut tmp = [0u8; 1024];
        loop {
            match self.sock.read(&mut tmp) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// One request on a fresh connection.
pub fn request(addr: SocketAddr, bytes: &[u8]) -> Resp {
    let mut c = Raw::connect(addr);
    c.send(bytes);
    c.read_response(bytes.starts_with(b"HEAD"))
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
}

/// Finds a client tool. In CI (CI set) a missing tool fails the test, since .ci/run
/// installs them; elsewhere the test is skipped with a message.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found =
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|p| p.is_file()));
    if found.is_none() {
        assert!(std::env::var_os("CI").is_none(), "{name} is required in CI (.ci/run installs it) but is not on PATH");
        eprintln!("SKIPPED: {name} is not installed (scripts/install-test-deps.sh installs it)");
    }
    found
}

/// The `/bytes/{n}` pattern.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// The wiki test dump's name (data/DUMP.bz2, CC BY-SA: data/README.md).
pub const DUMP: &str = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened";

/// The repository root.
pub fn root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The decompressed real dump and its index (`px-appliance wiki-index`), built once per
/// test binary in a temporary directory: (xml, index dir).
pub fn wiki_fixture() -> &'static (PathBuf, PathBuf) {
    static F: std::sync::OnceLock<(PathBuf, PathBuf)> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("px-wiki-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let xml = dir.join(format!("{DUMP}.xml"));
        let bz2 = root().join("data").join(format!("{DUMP}.bz2"));
        let py = format!(
            "import bz2,shutil\nwith bz2.open({:?}) as f, open({:?},'wb') as o: shutil.copyfileobj(f,o)",
            bz2.to_str().unwrap(),
            xml.to_str().unwrap()
        );
        assert!(Command::new("python3").args(["-c", &py]).status().unwrap().success(), "decompressing the dump");
        let idx = dir.join("index");
        let out = Command::new(BIN)
            .args(["wiki-index", "--quiet", "--xml", xml.to_str().unwrap(), "--out", idx.to_str().unwrap()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("indexed 206 pages") && text.contains("100 redirects"), "{text}");
        (xml, idx)
    })
}

/// Sum of `key=N` over the per-queue report lines of a log.
pub fn counter(log: &str, key: &str) -> u64 {
    let pat = format!(" {key}=");
    log.lines()
        .filter(|l| l.contains("queue ") && l.contains(&pat))
        .map(|l| l.split(&pat).nth(1).unwrap().split_whitespace().next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Writes `text` to a fresh file under target/ and returns its path.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = root().join("target").join("test-tmp");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{}-{name}", std::process::id()));
    std::fs::write(&p, text).unwrap();
    p
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits (up to 10 s) until something accepts connections on `addr`.
pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx serving `root` on a loopback port, for upstream tests; None (skip) outside CI
/// when nginx is not installed.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
}

impl Nginx {
    pub fn start(root_dir: &std::path::Path) -> Option<Nginx> {
        let bin = tool("nginx").or_else(|| {
            let sbin = PathBuf::from("/usr/sbin/nginx");
            sbin.is_file().then_some(sbin)
        })?;
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let dir = root_dir.parent().unwrap().to_path_buf();
        let conf = format!(
            "daemon off; worker_processes 1; error_log stderr error; pid {pid};\n\
             events {{ worker_connections 8192; }}\n\
             http {{ access_log off; client_body_temp_path {tmp}; proxy_temp_path {tmp}; \
             fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n\
             server {{ listen {addr} backlog=4096; root {root}; }} }}\n",
            pid = dir.join("nginx.pid").display(),
            tmp = dir.display(),
            root = root_dir.display(),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .args(["-c", conf_path.to_str().unwrap(), "-p", dir.to_str().unwrap()])
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nginx");
        wait_listening(addr);
        Some(Nginx { child, addr })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so the master stops its worker too (SIGKILL would orphan it, and the
        // worker would keep the test's stderr open).
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }
}
