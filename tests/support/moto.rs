//! moto's S3 server (a server keel's authors did not write) on loopback, from the repository's
//! `.venv` (scripts/python-env dev installs it), for the tests of every crate that talks to S3.
//! Included by path (`#[path = ".../tests/support/moto.rs"] mod moto;`): it uses the standard
//! library and tokio only, so no test crate gains an HTTP client for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto S3 server. Killed and reaped on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
    /// `http://127.0.0.1:PORT`, its S3 endpoint.
    pub endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto's S3 server (as `python -m moto.server` runs it) serving one request at a time.
const SERIAL: &str = "import sys\n\
from werkzeug.serving import run_simple\n\
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app\n\
run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False, \
request_handler=MotoRequestHandler)\n";

fn python() -> PathBuf {
    // Every crate sits at crates/NAME: the repository is two levels up.
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python")
}

impl Moto {
    /// moto on a free loopback port with `buckets` created, or `None` (the test is skipped,
    /// saying why) when moto is not installed in `.venv` and `$CI` is not set; under CI, a
    /// missing moto fails the test. `serial`: one request at a time. moto's own server answers
    /// on many threads, and its conditional put is a check then a write, so two racing creates
    /// could both pass; serially it decides each key atomically, as S3 does (race tests need
    /// that).
    pub async fn start(buckets: &[&str], serial: bool) -> Option<Moto> {
        let installed = Command::new(python())
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            assert!(
                std::env::var_os("CI").is_none(),
                "moto is not installed in .venv: scripts/python-env dev installs it"
            );
            eprintln!("SKIPPED: moto is not installed in .venv (run scripts/python-env dev)");
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let mut command = Command::new(python());
        if serial {
            command.args(["-c", SERIAL, &port.to_string()]);
        } else {
            command.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()]);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto's S3 server");
        let moto = Moto {
            child,
            port,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        for bucket in buckets {
            // S3 CreateBucket is a PUT on the bucket path.
            while !moto
                .request("PUT", &format!("/{bucket}"))
                .is_ok_and(|(status, _)| status == 200)
            {
                assert!(Instant::now() < deadline, "moto did not start within 30 s");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Some(moto)
    }

    /// One plain HTTP/1.0 request (moto takes unsigned requests): status and body.
    pub fn request(&self, method: &str, path: &str) -> std::io::Result<(u16, String)> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\r\n",
            self.port
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
        Ok((status, body))
    }

    /// The object listing of `bucket` (S3's ListObjectsV2 XML).
    pub fn listing(&self, bucket: &str) -> String {
        let (status, body) = self
            .request("GET", &format!("/{bucket}?list-type=2"))
            .expect("list the bucket");
        assert_eq!(status, 200, "{body}");
        body
    }
}
