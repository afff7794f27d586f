//! A private PostgreSQL cluster for one test, and `ibex-server` processes
//! that share it.
//!
//! The cluster lives in a temporary directory on a free port of 127.0.0.1,
//! is created with `initdb` and run with `pg_ctl`, and is stopped when the
//! [`Pg`] is dropped (a failing test included). Nothing depends on a
//! system service. PostgreSQL refuses to run as root: when the tests run
//! as root, every PostgreSQL command runs as the unprivileged `nobody`
//! through `runuser -u nobody --`, and the directory is given to
//! `nobody`. Binaries are found through `IBEX_PG_BIN` (a directory), else
//! the newest `/usr/lib/postgresql/*/bin` (Debian's `postgresql` package;
//! `scripts/setup.sh` installs it), else `PATH`.
//!
//! Tests that need PostgreSQL fail (they do not skip) when it cannot be
//! started, saying why.
//!
//! `IBEX_TEST_STORE=postgres` runs the in-process servers of any suite on
//! PostgreSQL instead of files ([`test_store`]): one cluster per test
//! process, stopped when the process exits, and one database per data
//! directory, so a server restarted on the same directory finds its data
//! and one given a fresh directory (a lost disk) starts empty, as with
//! files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http_get;

/// Serializes the tests of a process that start clusters and servers (two
/// cores: timing assertions stay honest).
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(d) = std::env::var("IBEX_PG_BIN") {
        return Ok(PathBuf::from(d));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("pg_ctl").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return Ok(bin);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if dir.join("pg_ctl").exists() && dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    Err("PostgreSQL is not installed (no pg_ctl/initdb in IBEX_PG_BIN, /usr/lib/postgresql/*/bin or PATH): run scripts/setup.sh, or apt-get install postgresql".into())
}

fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// A PostgreSQL cluster of one test.
pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl Pg {
    /// Creates and starts a cluster; panics with the reason if it cannot.
    pub fn start() -> Pg {
        match Pg::try_start() {
            Ok(pg) => pg,
            Err(e) => panic!("cannot start PostgreSQL for this test: {e}"),
        }
    }

    fn try_start() -> Result<Pg, String> {
        let bin = bin_dir()?;
        // Under /tmp when root: `nobody` must reach it whatever TMPDIR is,
        // and the socket's path must stay short.
        let base = if is_root() { PathBuf::from("/tmp") } else { std::env::temp_dir() };
        let dir = tempfile::Builder::new().prefix("ibex-pg-").tempdir_in(base).map_err(|e| e.to_string())?;
        if is_root() {
            let ok = Command::new("chown").arg("nobody:").arg(dir.path()).status().map_err(|e| format!("chown: {e}"))?;
            if !ok.success() {
                return Err("cannot give the cluster's directory to `nobody`".into());
            }
        }
        let pg = Pg { dir, bin, port: free_port() };
        let data = pg.data();
        pg.run("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "ibex", "-E", "UTF8", "--no-sync"])?;
        pg.up()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a PostgreSQL program (as `nobody` when we are root).
    fn run(&self, prog: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(prog);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "nobody", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).current_dir(self.dir.path()).stdin(Stdio::null()).output().map_err(|e| format!("{}: {e}", exe.display()))?;
        if out.status.success() { Ok(()) } else { Err(format!("{prog} {} failed: {}{}", args.join(" "), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))) }
    }

    /// Starts (or restarts) the server on the same port and data.
    pub fn up(&self) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.path().join("postgres.log");
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200", self.port, self.dir.path().display());
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-t", "30", "-o", &opts, "start"]).map_err(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\npostgres.log:\n{log}")
        })
    }

    /// Stops the server (`fast`: clients are disconnected at once).
    pub fn down(&self) {
        let data = self.data();
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "-t", "30", "stop"]).unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn url(&self) -> String {
        format!("postgres://ibex@127.0.0.1:{}/postgres", self.port)
    }

    /// Creates database `name` unless it exists.
    pub fn create_db(&self, name: &str) -> Result<(), String> {
        let out =
            Command::new(self.bin.join("createdb")).args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "ibex", name]).stdin(Stdio::null()).output().map_err(|e| format!("createdb: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || err.contains("already exists") { Ok(()) } else { Err(format!("createdb {name}: {err}")) }
    }

    /// Runs SQL with `psql` on database `postgres`; its output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql")).args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "ibex", "-d", "postgres", "-tAc", sql]).stdin(Stdio::null()).output().expect("psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Where servers started with [`Instance::spawn`] write their logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "-t", "10", "stop"]);
    }
}

/// One `ibex-server` process on a shared store.
pub struct Instance {
    pub child: Child,
    pub addr: SocketAddr,
    pub port: u16,
}

impl Instance {
    /// Starts the real binary on `store`, with the tests' root key; returns
    /// once it is healthy and ready. Its log goes to `<log_dir>/ibex-<port>.log`.
    pub async fn spawn(store: &str, log_dir: &Path, port: u16) -> Instance {
        Instance::spawn_with(store, log_dir, port, &[]).await
    }

    /// [`Instance::spawn`] with more flags.
    pub async fn spawn_with(store: &str, log_dir: &Path, port: u16, extra: &[&str]) -> Instance {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_dir.join(format!("ibex-{port}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ibex-server"))
            .args(["--port", &port.to_string(), "--host", "127.0.0.1", "--store", store, "--data"])
            .arg(log_dir.join(format!("unused-data-{port}")))
            .arg("--root-key")
            .arg(super::shared_key())
            .args(extra)
            .env("RUST_LOG", "warn,ibex_server::store=info")
            .stdout(std::fs::File::create(log_dir.join(format!("ibex-{port}.out"))).unwrap())
            .stderr(log)
            .spawn()
            .expect("ibex-server binary");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut inst = Instance { child, addr, port };
        let t0 = Instant::now();
        while !inst.ready().await {
            if let Ok(Some(status)) = inst.child.try_wait() {
                panic!("ibex-server exited during start ({status}); see {}", log_dir.join(format!("ibex-{port}.log")).display());
            }
            assert!(t0.elapsed() < Duration::from_secs(30), "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        inst
    }

    /// What the server printed (login links, from the development verifier).
    pub fn stdout(&self, log_dir: &Path) -> String {
        std::fs::read_to_string(log_dir.join(format!("ibex-{}.out", self.port))).unwrap_or_default()
    }

    /// `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        if tokio::net::TcpStream::connect(self.addr).await.is_err() {
            return false;
        }
        http_get(self.addr, "/readyz").await.0.contains("200")
    }

    pub fn kill9(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static SHARED: std::sync::OnceLock<Pg> = std::sync::OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(pg) = SHARED.get() {
        let data = pg.data();
        let _ = pg.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "-t", "10", "stop"]);
        let _ = std::fs::remove_dir_all(pg.dir());
    }
}

/// With `IBEX_TEST_STORE=postgres`: the store URL for a server whose data
/// directory is `data` (see the module docs); otherwise `None` (files).
pub fn test_store(data: &Path) -> Option<String> {
    match std::env::var("IBEX_TEST_STORE").as_deref() {
        Ok("postgres") => {}
        Ok("files") | Ok("") | Err(_) => return None,
        Ok(other) => panic!("IBEX_TEST_STORE={other}: expected postgres or files"),
    }
    let pg = SHARED.get_or_init(|| {
        let pg = Pg::start();
        unsafe {
            libc::atexit(stop_shared);
        }
        pg
    });
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data.hash(&mut h);
    let name = format!("t{:016x}", h.finish());
    pg.create_db(&name).unwrap_or_else(|e| panic!("{e}"));
    Some(format!("postgres://ibex@127.0.0.1:{}/{name}", pg.port))
}
