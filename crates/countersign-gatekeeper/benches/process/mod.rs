//! The processes the gatekeeper's benchmarks start and measure: the gatekeeper binary,
//! nginx as the baseline, and what a process costs (CPU ticks, context switches, RSS)
//! as `/proc` counts it. Each benchmark uses a part of it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

// --- what a process costs ------------------------------------------------------------

/// CPU ticks and context switches of a process (all its threads) or of one thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    pub cpu_ticks: u64,
    pub voluntary: u64,
    pub involuntary: u64,
}

impl Cost {
    /// The cost from `before` to `self`.
    pub fn minus(self, before: Self) -> Self {
        Self {
            cpu_ticks: self.cpu_ticks - before.cpu_ticks,
            voluntary: self.voluntary - before.voluntary,
            involuntary: self.involuntary - before.involuntary,
        }
    }

    pub fn add(&mut self, d: Self) {
        self.cpu_ticks += d.cpu_ticks;
        self.voluntary += d.voluntary;
        self.involuntary += d.involuntary;
    }

    /// Voluntary and involuntary context switches.
    pub fn switches(self) -> u64 {
        self.voluntary + self.involuntary
    }

    /// The CPU ticks as a duration.
    pub fn cpu_time(self) -> Duration {
        Duration::from_millis(self.cpu_ticks * 1000 / clock_ticks_per_s())
    }
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), the unit of `/proc` CPU
/// times.
pub fn clock_ticks_per_s() -> u64 {
    static HZ: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    })
}

/// `utime + stime` (fields 14 and 15) of a `/proc/.../stat` file. For a process they
/// include its threads, also those that have exited.
fn stat_ticks(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap();
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let fields: Vec<&str> = text[text.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    // fields[0] is field 3 (state).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn status_field(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim_start_matches(':').trim().parse().ok())
        .unwrap_or(0)
}

/// A process's CPU ticks, and its context switches summed over its live threads
/// (`/proc/PID/status` alone counts only the main thread; a thread that exits takes
/// its counts with it, so this can only undercount).
pub fn process_cost(pid: u32) -> Cost {
    let mut cost = Cost {
        cpu_ticks: stat_ticks(&format!("/proc/{pid}/stat")),
        ..Cost::default()
    };
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("status")) {
                cost.voluntary += status_field(&text, "voluntary_ctxt_switches");
                cost.involuntary += status_field(&text, "nonvoluntary_ctxt_switches");
            }
        }
    }
    cost
}

/// The calling thread's cost.
pub fn thread_cost() -> Cost {
    let text = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    Cost {
        cpu_ticks: stat_ticks("/proc/thread-self/stat"),
        voluntary: status_field(&text, "voluntary_ctxt_switches"),
        involuntary: status_field(&text, "nonvoluntary_ctxt_switches"),
    }
}

/// A `/proc/<pid>/status` memory field (`VmRSS`, `VmHWM`) in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Resets a process's peak RSS to its current RSS (Linux `clear_refs` 5); false if
/// the kernel does not allow it.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

// --- starting servers ----------------------------------------------------------------

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first `name` on `PATH`, else in `/usr/sbin` (where Debian puts nginx).
pub fn find_on_path(name: &str) -> Option<String> {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&paths)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|p| p.join(name))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// Starts `binary serve` with the config file `config` and the data directory
/// `data_dir` on a free port of 127.0.0.1, and returns it with its base URL once it
/// listens. Its later log lines go to this process's standard error, tagged `label`.
pub fn spawn_gatekeeper(
    binary: &str,
    config: &Path,
    data_dir: &Path,
    label: &str,
) -> (Child, String) {
    let mut child = Command::new(binary)
        .arg("serve")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The log line has a timestamp, level and target before the message.
    let base = lines.by_ref().map_while(Result::ok).find_map(|l| {
        l.split_once("listening on ")
            .map(|(_, a)| a.trim().to_owned())
    });
    let Some(base) = base else {
        let status = child.wait().unwrap();
        panic!("the gatekeeper ({label}) exited before listening: {status}");
    };
    let tag = label.to_owned();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("[{tag}] {line}");
        }
    });
    (child, base)
}

/// How a benchmark runs nginx: always one process, no master, `sendfile on`,
/// `tcp_nodelay on`, serving a directory on 127.0.0.1.
pub struct NginxConfig {
    /// An access log line per request (as a default install writes), or none.
    pub access_log: bool,
    pub worker_connections: u32,
    /// `keepalive_requests` (nginx's default is 1,000: a long wrk run would reconnect).
    pub keepalive_requests: Option<u64>,
    /// PUTs under `/put/` written into the directory (the WebDAV module).
    pub webdav_put: bool,
}

/// A server process (the gatekeeper, nginx) and its base URL, killed when dropped.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts the gatekeeper (see [`spawn_gatekeeper`]).
    pub fn gatekeeper(binary: &str, config: &Path, data_dir: &Path, label: &str) -> Self {
        let (child, base) = spawn_gatekeeper(binary, config, data_dir, label);
        Self { child, base }
    }

    /// Starts nginx `binary` with its config, pid and logs in `dir`, serving `root`.
    pub fn nginx(
        binary: &str,
        dir: &Path,
        root: &Path,
        config: &NginxConfig,
    ) -> Result<Self, String> {
        let port = free_port();
        let d = dir.display();
        let access_log = if config.access_log {
            format!("{d}/access.log")
        } else {
            "off".to_owned()
        };
        let keepalive = config
            .keepalive_requests
            .map(|n| format!("  keepalive_requests {n};\n"))
            .unwrap_or_default();
        let put = if config.webdav_put {
            "\n             location /put/ { dav_methods PUT; create_full_put_path on; }"
        } else {
            ""
        };
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections {wc}; }}\n\
             http {{\n  access_log {access_log};\n  sendfile on;\n  tcp_nodelay on;\n{keepalive}\
               client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               server {{ listen 127.0.0.1:{port}; root {root};\n             location / {{ }}{put} }}\n}}\n",
            wc = config.worker_connections,
            root = root.display()
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let mut child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {binary}: {e}"))?;
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Self {
                    child,
                    base: format!("http://127.0.0.1:{port}"),
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!("nginx exited ({status})"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!("nginx did not listen on 127.0.0.1:{port}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
