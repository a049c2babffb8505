//! Small Postgres clusters of the tests' own: a primary, a streaming standby of it
//! (`pg_basebackup -R`), promotion and shutdown, for the primary-lifecycle tests.
//!
//! Each cluster lives in a temp dir on a free port, listens on loopback only, and is
//! stopped (immediately) when dropped. The server binaries come from `PG_BIN` or the
//! newest `/usr/lib/postgresql/*/bin`; they refuse to run as root, so as root they run as
//! the `postgres` user through `runuser`.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio_postgres::Client;

pub struct Cluster {
    pub port: u16,
    /// The temp dir: `data/` and the unix socket.
    dir: PathBuf,
    _keep: tempfile::TempDir,
    running: bool,
}

/// Settings of every test cluster: small, fast (no fsync: nothing here must survive a
/// machine crash), streaming replication on.
const SETTINGS: &str = "
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 5
hot_standby = on
fsync = off
full_page_writes = off
shared_buffers = 16MB
max_connections = 40
wal_receiver_status_interval = 1s
wal_retrieve_retry_interval = 200ms
";

impl Cluster {
    /// `initdb` and start a new primary.
    pub fn primary() -> Cluster {
        let mut cluster = Cluster::empty();
        run_pg(
            "initdb",
            &[
                "-D",
                cluster.data().to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        cluster.configure();
        cluster.start();
        cluster
    }

    /// A streaming standby of the cluster reachable at `upstream` (through a relay, say),
    /// started.
    pub fn standby_of(upstream: SocketAddr) -> Cluster {
        let mut cluster = Cluster::empty();
        run_pg(
            "pg_basebackup",
            &[
                "-h",
                &upstream.ip().to_string(),
                "-p",
                &upstream.port().to_string(),
                "-U",
                "postgres",
                "-D",
                cluster.data().to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                // An immediate checkpoint: a spread one paces its writes over minutes.
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        cluster.configure();
        cluster.start();
        cluster
    }

    fn empty() -> Cluster {
        let keep = tempfile::Builder::new()
            .prefix("ao-cluster-")
            .tempdir()
            .unwrap();
        let dir = keep.path().to_owned();
        if as_root() {
            let ok = Command::new("chown")
                .args(["postgres:postgres", dir.to_str().unwrap()])
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the cluster dir to postgres");
        }
        Cluster {
            port: free_port(),
            dir,
            _keep: keep,
            running: false,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Appends this cluster's port and socket dir (later settings win over the copied ones).
    fn configure(&self) {
        let conf = format!(
            "{SETTINGS}\nport = {}\nunix_socket_directories = '{}'\n",
            self.port,
            self.dir.display()
        );
        let path = self.data().join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&conf);
        std::fs::write(&path, text).unwrap();
    }

    pub fn start(&mut self) {
        let log = self.dir.join("server.log");
        run_pg(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        self.running = true;
    }

    /// Stops the server: `fast` (clean: a standby receives everything first) or `immediate`
    /// (a crash).
    pub fn stop(&mut self, mode: &str) {
        if self.running {
            run_pg(
                "pg_ctl",
                &[
                    "-D",
                    self.data().to_str().unwrap(),
                    "-m",
                    mode,
                    "-w",
                    "stop",
                ],
            );
            self.running = false;
        }
    }

    /// Promotes a standby and waits until it takes writes.
    pub fn promote(&self) {
        run_pg(
            "pg_ctl",
            &["-D", self.data().to_str().unwrap(), "-w", "promote"],
        );
    }

    /// CPU time (user + system) the server's processes have used so far: the postmaster and
    /// its children, from `/proc` (Linux).
    pub fn cpu_time(&self) -> Duration {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        let postmaster: u32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
        let ticks_per_second = 100.0; // USER_HZ on Linux
        let mut ticks = 0u64;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the command's closing parenthesis: state, ppid, … utime, stime.
            let Some((_, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ppid: u32 = fields[1].parse().unwrap_or(0);
            if pid == postmaster || ppid == postmaster {
                ticks +=
                    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0);
            }
        }
        Duration::from_secs_f64(ticks as f64 / ticks_per_second)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    pub async fn connect(&self, database: &str) -> Client {
        super::db::connect(&self.url(database)).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.running
            && let Some(ctl) = pg_bin("pg_ctl")
        {
            let data = self.data();
            let _ = pg_command(
                &ctl,
                &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
            )
            .output();
        }
    }
}

/// Waits until the standby `standby` has replayed everything `primary` has written so far.
pub async fn wait_replayed(primary: &Client, standby: &Client) {
    let lsn: String = primary
        .query_one("select pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up: bool = standby
            .query_one(
                "select coalesce(pg_last_wal_replay_lsn() >= $1::text::pg_lsn, false)",
                &[&lsn],
            )
            .await
            .unwrap()
            .get(0);
        if caught_up {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby did not replay up to {lsn}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until a promoted cluster takes writes.
pub async fn wait_writable(client: &Client) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while client
        .query_one("select pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get::<_, bool>(0)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "promotion did not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// The directory of the Postgres server binaries.
fn pg_bin(name: &str) -> Option<PathBuf> {
    let dir = match std::env::var_os("PG_BIN") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|p| p.join("initdb").exists())
                .collect();
            versions.sort_by_key(|p| {
                p.parent()
                    .and_then(Path::file_name)
                    .and_then(|v| v.to_str()?.parse::<u32>().ok())
            });
            versions.pop()?
        }
    };
    Some(dir.join(name))
}

fn pg_command(program: &Path, args: &[&str]) -> Command {
    if as_root() {
        let mut command = Command::new("runuser");
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

fn run_pg(name: &str, args: &[&str]) {
    let program = pg_bin(name).expect("Postgres server binaries (/usr/lib/postgresql/*/bin)");
    let output = pg_command(&program, args)
        .current_dir("/tmp")
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    assert!(
        output.status.success(),
        "{name} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
