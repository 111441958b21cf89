//! Starting the server under test: the harness runs it as a child process, optionally
//! pinned to some CPUs, waits until it answers, charges its CPU time to the report, and
//! stops it afterwards.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// How long a server may take to start answering.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A running server; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    child: Child,
}

impl Server {
    /// Runs `command` with `sh -c 'exec …'` (so the shell's pid is the server's), pinned to
    /// `cpus` if given. The server's output goes to this process's stderr, keeping stdout
    /// for the report.
    pub fn start(command: &str, cpus: Option<&[usize]>) -> Result<Self> {
        ensure!(!command.trim().is_empty(), "--spawn needs a command");
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("exec {command}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stderr));
        if let Some(cpus) = cpus {
            let set = cpu_set(cpus)?;
            // SAFETY: sched_setaffinity is async-signal-safe and touches only this (the
            // child's) thread; `set` was built before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
                    {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting `{command}`"))?;
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `addr` accepts connections, or `ready_url` (an `http://` URL) answers
    /// 200 when given.
    pub async fn wait_ready(
        &mut self,
        addr: SocketAddr,
        ready_url: Option<&str>,
        limit: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited before it was ready ({status})");
            }
            let ready = match ready_url {
                Some(url) => http_ok(url).await,
                None => tokio::net::TcpStream::connect(addr).await.is_ok(),
            };
            if ready {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the server was not ready within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited in time; returns how it ended.
    pub fn stop(mut self) -> Result<std::process::ExitStatus> {
        self.terminate()
    }

    /// SIGKILL at once, as a crash would; returns once it is gone.
    pub fn kill(&mut self) -> Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }

    fn terminate(&mut self) -> Result<std::process::ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        let pid = libc::pid_t::try_from(self.child.id())?;
        // SAFETY: plain syscall on our own child, which has not been reaped yet.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}

/// A list of CPUs to pin to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cpus(pub Vec<usize>);

/// `0`, `0,1`, `0-3`, `0-1,4`.
pub fn parse_cpus(text: &str) -> Result<Cpus, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim) {
        let bad = || format!("`{text}` is not a CPU list like 0, 0,1 or 0-3");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad())?,
                    b.trim().parse().map_err(|_| bad())?,
                );
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    Ok(Cpus(cpus))
}

fn cpu_set(cpus: &[usize]) -> Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        ensure!(
            cpu < libc::CPU_SETSIZE as usize,
            "CPU {cpu} is out of range"
        );
        // SAFETY: `cpu` is within the set's size, checked above.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    Ok(set)
}

/// Pins this process's calling thread (and threads it starts later) to `cpus`.
pub fn pin_self(cpus: &[usize]) -> Result<()> {
    let set = cpu_set(cpus)?;
    // SAFETY: plain syscall with a valid set.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    ensure!(
        rc == 0,
        "cannot pin to CPUs {cpus:?}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// A GET of `url` (plain `http://`) answered 200.
pub async fn http_ok(url: &str) -> bool {
    use http_body_util::Empty;
    use hyper_util::rt::TokioIo;

    let Ok(uri) = url.parse::<http::Uri>() else {
        return false;
    };
    let Some(authority) = uri.authority().cloned() else {
        return false;
    };
    let Ok(stream) = tokio::net::TcpStream::connect(authority.as_str()).await else {
        return false;
    };
    let Ok((mut sender, conn)) =
        hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(stream)).await
    else {
        return false;
    };
    tokio::spawn(conn);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let Ok(request) = http::Request::get(path)
        .header(http::header::HOST, authority.as_str())
        .body(Empty::new())
    else {
        return false;
    };
    matches!(sender.send_request(request).await, Ok(r) if r.status() == 200)
}

/// The address `url` connects to.
pub async fn target_addr(url: &str) -> Result<SocketAddr> {
    let uri: http::Uri = url.parse().with_context(|| format!("bad URL `{url}`"))?;
    let authority = uri.authority().context("the URL has no host")?;
    let port = authority.port_u16().unwrap_or(80);
    let addr = tokio::net::lookup_host((authority.host(), port))
        .await?
        .next()
        .with_context(|| format!("{} has no address", authority.host()))?;
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0"), Ok(Cpus(vec![0])));
        assert_eq!(parse_cpus("0,1"), Ok(Cpus(vec![0, 1])));
        assert_eq!(parse_cpus("0-2,5"), Ok(Cpus(vec![0, 1, 2, 5])));
        for bad in ["", "a", "2-1", "0,", "-1"] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn starts_waits_and_stops_a_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        // A server that listens after a moment: python3's http.server.
        let command = format!(
            "python3 -m http.server --bind 127.0.0.1 {} --directory /",
            addr.port()
        );
        let mut server = Server::start(&command, Some(&[0])).unwrap();
        let pid = server.pid();
        server
            .wait_ready(addr, Some(&format!("http://{addr}/")), READY_TIMEOUT)
            .await
            .unwrap();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let allowed = status
            .lines()
            .find(|l| l.starts_with("Cpus_allowed_list:"))
            .unwrap();
        assert!(allowed.ends_with("\t0"), "{allowed}");
        server.stop().unwrap();
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }

    #[tokio::test]
    async fn a_server_that_exits_is_not_waited_for() {
        let mut server = Server::start("false", None).unwrap();
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let error = server
            .wait_ready(addr, None, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("exited"), "{error}");
    }
}
