//! Faults that need the operating system: a tiny tmpfs that fills up, files made
//! immutable (`chattr +i`), and a PostgreSQL
//! cluster of the test's own that it stops and starts. Every guard undoes its fault
//! when dropped, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Whether the services were required (`scripts/services.sh`, CI).
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
        || std::env::var("COUNTERSIGN_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `true` when the fault can be injected; fails the test when it cannot but the
/// services were required, skips it (with a message) otherwise.
pub fn root_for(what: &str) -> bool {
    if is_root() {
        return true;
    }
    assert!(
        !required(),
        "{what} needs root (mount, chattr); the fault suite is required here, so it fails instead of skipping"
    );
    eprintln!("SKIPPED: {what} needs root");
    false
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A tmpfs of a fixed size, unmounted when dropped.
pub struct Tmpfs {
    /// Its mount point.
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `8m`).
    pub fn mount(size: &str) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("countersign-faults-tmpfs-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_owned();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir))
        .unwrap();
        Self { dir, _tmp: tmp }
    }

    /// Remounts it read-only (`true`) or read-write.
    pub fn set_read_only(&self, ro: bool) -> Result<(), String> {
        let opt = if ro { "remount,ro" } else { "remount,rw" };
        run(Command::new("mount").args(["-o", opt]).arg(&self.dir))
    }

    /// Fills it up: writes a file until the space runs out. Returns the file.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.dir.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = f.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(&self.dir)
            .output();
        let _ = self.set_read_only(false);
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
    }
}

/// Files made immutable with `chattr +i`; made mutable again when dropped.
pub struct Immutable(Vec<PathBuf>);

impl Immutable {
    /// Makes every existing path of `paths` immutable.
    pub fn set(paths: &[PathBuf]) -> Result<Self, String> {
        let mut done = Vec::new();
        for p in paths.iter().filter(|p| p.exists()) {
            run(Command::new("chattr").arg("+i").arg(p))?;
            done.push(p.clone());
        }
        Ok(Self(done))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = Command::new("chattr").arg("-i").arg(p).output();
        }
    }
}

/// The PostgreSQL programs: `COUNTERSIGN_TEST_PG_BIN` (exported by
/// `scripts/services.sh`) or the newest Debian install.
pub fn pg_bin() -> PathBuf {
    if let Ok(b) = std::env::var("COUNTERSIGN_TEST_PG_BIN") {
        return PathBuf::from(b);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .pop()
        .expect("no PostgreSQL: set COUNTERSIGN_TEST_PG_BIN")
}

/// A throw-away PostgreSQL cluster owned by one test, so stopping it does not
/// disturb the other tests running at the same time. Run as the `postgres` user
/// when this process is root (PostgreSQL refuses to run as root).
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
    _tmp: tempfile::TempDir,
}

fn as_postgres(script: &str) -> Result<(), String> {
    if is_root() {
        run(Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", script]))
    } else {
        run(Command::new("/bin/sh").args(["-c", script]))
    }
}

impl PgCluster {
    /// Creates and starts a cluster.
    pub fn start() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("countersign-faults-pg-")
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_owned();
        if is_root() {
            run(Command::new("chown").args(["postgres"]).arg(&dir)).unwrap();
        }
        let bin = pg_bin();
        let port = crate::faultkit::free_port();
        as_postgres(&format!(
            "'{}/initdb' -D '{}/data' -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null",
            bin.display(),
            dir.display()
        ))
        .unwrap();
        let pg = Self {
            bin,
            dir,
            port,
            _tmp: tmp,
        };
        pg.start_again().unwrap();
        pg
    }

    /// The connection URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the (stopped) cluster.
    pub fn start_again(&self) -> Result<(), String> {
        as_postgres(&format!(
            "'{bin}/pg_ctl' -D '{dir}/data' -l '{dir}/server.log' -w -o \"-p {port} -k '{dir}' -c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null",
            bin = self.bin.display(),
            dir = self.dir.display(),
            port = self.port
        ))
    }

    /// Stops it at once (`-m immediate`: like a crash of the database server).
    pub fn stop(&self) -> Result<(), String> {
        as_postgres(&format!(
            "'{}/pg_ctl' -D '{}/data' -m immediate -w stop >/dev/null",
            self.bin.display(),
            self.dir.display()
        ))
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Lists every file under `root`, relative to it.
pub fn walk(root: &Path) -> Vec<String> {
    fn go(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                go(root, &p, out);
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    go(root, root, &mut out);
    out.sort();
    out
}
