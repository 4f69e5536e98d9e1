//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory, a server on a
//! free loopback port (TLS on, with a certificate made at test time), stopped and removed on
//! drop, panics included.
//!
//! The binaries are Debian's (`initdb`, `pg_ctl`, `postgres`, `psql`), found on the `PATH` or
//! under `/usr/lib/postgresql/*/bin`. As root they run as the `postgres` user (PostgreSQL
//! refuses root). Without them [`cluster`] says that the test skipped and gives `None`, unless
//! `ABROUTE_REQUIRE_POSTGRES=1`, which makes that a failure (CI sets it).
//!
//! The cluster has a superuser `postgres` (trusted on 127.0.0.1), and two users who sign in
//! with a password: [`APP_USER`], owner of the database [`DATABASE`], and [`NOPERM_USER`], who
//! may connect and nothing more.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The user the store tests connect as: owner of [`DATABASE`].
pub const APP_USER: &str = "abroute_app";
/// Its password: distinctive, so a test can look for it in every error text.
pub const APP_PASSWORD: &str = "pw-7Hq2-never-shown";
/// A user who may connect to [`DATABASE`] but has no privilege on its schema or tables.
pub const NOPERM_USER: &str = "abroute_noperm";
/// Its password.
pub const NOPERM_PASSWORD: &str = "pw-noperm-9Zx4";
/// The database the store lives in.
pub const DATABASE: &str = "abroute";

/// A running (or stopped) throwaway cluster.
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run the server binaries through `runuser -u postgres --` (we are root).
    as_postgres: bool,
    running: bool,
}

/// A fresh cluster for test `name`, or `None` (after saying so) when PostgreSQL is not
/// installed and `ABROUTE_REQUIRE_POSTGRES` is not `1`.
pub fn cluster(name: &str) -> Option<PgCluster> {
    let require = std::env::var("ABROUTE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
    let Some(bin) = find_bin() else {
        assert!(
            !require,
            "ABROUTE_REQUIRE_POSTGRES=1 but no PostgreSQL binaries (initdb, pg_ctl) were found on \
             the PATH or under /usr/lib/postgresql/*/bin"
        );
        // Straight to the stderr handle: the test harness captures `eprintln!` of passing tests.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {name}: PostgreSQL is not installed (no initdb on the PATH or under \
             /usr/lib/postgresql/*/bin); `apt-get install postgresql` to run it, and set \
             ABROUTE_REQUIRE_POSTGRES=1 to make this a failure"
        );
        return None;
    };
    Some(PgCluster::create(name, bin))
}

/// The directory of `initdb`, `pg_ctl` and `postgres`.
fn find_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("initdb"))
            .find(|p| p.is_file())
    });
    if let Some(initdb) = on_path {
        // Debian links initdb into the PATH; its siblings live beside the real file.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        let dir = real.parent()?.to_owned();
        if dir.join("pg_ctl").is_file() && dir.join("postgres").is_file() {
            return Some(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn uid_gid(user: &str) -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .expect("runs id");
        assert!(out.status.success(), "no user {user:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u32>()
            .expect("a number")
    };
    (id("-u"), id("-g"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl PgCluster {
    fn create(name: &str, bin: PathBuf) -> PgCluster {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "abroute-pg-{}-{}-{name}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creates the cluster's directory");
        let as_postgres = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let owner = as_postgres.then(|| uid_gid("postgres"));
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown");
        }
        let mut cluster = PgCluster {
            bin,
            dir,
            port: free_port(),
            as_postgres,
            running: false,
        };
        cluster.run_ok(
            "initdb",
            &[
                "-D",
                &cluster.data().display().to_string(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ],
        );
        // A certificate for 127.0.0.1, its own CA (the tests pass it as the CA file).
        let made = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_owned(),
            "localhost".to_owned(),
        ])
        .expect("a certificate");
        let cert = cluster.dir.join("server.crt");
        let key = cluster.dir.join("server.key");
        std::fs::write(&cert, made.cert.pem()).expect("writes the certificate");
        std::fs::write(&key, made.signing_key.serialize_pem()).expect("writes the key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        if let Some((uid, gid)) = owner {
            for f in [&cert, &key] {
                std::os::unix::fs::chown(f, Some(uid), Some(gid)).expect("chown");
            }
        }
        std::fs::write(
            cluster.data().join("pg_hba.conf"),
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("writes pg_hba.conf");
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(cluster.data().join("postgresql.conf"))
            .expect("opens postgresql.conf");
        // fsync off: the OS keeps what PostgreSQL wrote, which survives the server's crash (the
        // outage tests) though not the machine's. synchronous_commit stays on: with it off, a
        // crash would lose commits already acknowledged.
        write!(
            conf,
            "\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{dir}'\n\
             fsync = off\n\
             full_page_writes = off\n\
             max_connections = 60\n\
             ssl = on\n\
             ssl_cert_file = '{cert}'\n\
             ssl_key_file = '{key}'\n",
            dir = cluster.dir.display(),
            cert = cert.display(),
            key = key.display(),
        )
        .expect("writes postgresql.conf");
        drop(conf);
        // A port taken between free_port and the server's bind: try another.
        for attempt in 0..3 {
            match cluster.try_start() {
                Ok(()) => break,
                Err(why) if attempt < 2 => {
                    let _ = why;
                    cluster.port = free_port();
                }
                Err(why) => panic!("the cluster does not start: {why}"),
            }
        }
        // One statement a call: `psql -c` runs several as one transaction, and CREATE DATABASE
        // cannot run in one.
        cluster.psql(&format!(
            "CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'"
        ));
        cluster.psql(&format!("CREATE DATABASE {DATABASE} OWNER {APP_USER}"));
        cluster.psql(&format!(
            "CREATE ROLE {NOPERM_USER} LOGIN PASSWORD '{NOPERM_PASSWORD}'"
        ));
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The directory of the cluster: its data, log, certificate (`server.crt`) and key.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The server's certificate, to trust as the CA file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("server.crt")
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    fn run_ok(&self, program: &str, args: &[&str]) {
        let out = self.run(program, args);
        assert!(
            out.status.success(),
            "{program} {args:?} failed:\n{}",
            text(&out)
        );
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let data = self.data().display().to_string();
        let mut all = vec!["-D", data.as_str()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn try_start(&mut self) -> Result<(), String> {
        let log = self.dir.join("server.log").display().to_string();
        let port = format!("-p {}", self.port);
        let out = self.pg_ctl(&["-l", &log, "-o", &port, "-w", "-t", "60", "start"]);
        if out.status.success() {
            self.running = true;
            Ok(())
        } else {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            Err(format!("{}\n{log}", text(&out)))
        }
    }

    /// Starts the stopped cluster again, on the same port and data.
    pub fn start(&mut self) {
        if let Err(why) = self.try_start() {
            panic!("the cluster does not start again: {why}");
        }
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`).
    pub fn stop_immediate(&mut self) {
        let out = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop -m immediate: {}",
            text(&out)
        );
        self.running = false;
    }

    /// Runs SQL as the superuser in database `db`, and its output.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .output()
            .expect("runs psql");
        assert!(out.status.success(), "psql {sql:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs SQL as the superuser in the `postgres` database.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// A URL for `user` with `password` on database `db`, TLS off.
    pub fn url_for(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "postgresql://{user}:{password}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// The store's URL: [`APP_USER`] on [`DATABASE`], TLS off.
    pub fn url(&self) -> String {
        self.url_for(APP_USER, APP_PASSWORD, DATABASE)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self.running {
            let out = self.pg_ctl(&["-m", "fast", "-w", "stop"]);
            if !out.status.success() {
                let _ = self.pg_ctl(&["-m", "immediate", "-w", "stop"]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
