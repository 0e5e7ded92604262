//! A small concurrent EST client for load and fault tests: rustls, HTTP/1.1
//! keep-alive, Basic authentication; and independent checks of what came
//! back (the certificate taken out of the PKCS#7 by a DER walk written here,
//! verified by the OpenSSL command line, looked up in the store with the
//! `sqlite3` command line).

use std::{
    collections::HashSet,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::Path,
    process::Command,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use base64ct::Encoding;

use crate::est_server::{openssl, run, EstServer, PASSWORD, USER};

/// An HTTP answer, from this module's client or from curl
/// ([`EstServer::curl`]).
#[derive(Clone, Debug)]
pub struct Answer {
    /// Status (0: the exchange failed: connection refused, reset, timed
    /// out, or curl failed).
    pub status: u16,
    /// Headers, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
    /// How long the exchange took (for curl: the whole call, curl's process
    /// included).
    pub elapsed: Duration,
}

impl Answer {
    /// An exchange that failed (status 0) after `elapsed`.
    pub fn failed(elapsed: Duration) -> Answer {
        Answer {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            elapsed,
        }
    }
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Connects to one server.
#[derive(Clone)]
pub struct EstClient {
    config: Arc<rustls::ClientConfig>,
    addr: String,
    auth: String,
}

/// One keep-alive connection.
pub struct Conn {
    stream: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    closed: bool,
}

impl EstClient {
    /// A client of `server`, trusting its TLS CA, as the Basic user.
    pub fn new(server: &EstServer) -> EstClient {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(&server.tls_ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        EstClient {
            config: Arc::new(config),
            addr: server.base.trim_start_matches("https://").to_string(),
            auth: base64ct::Base64::encode_string(format!("{USER}:{PASSWORD}").as_bytes()),
        }
    }

    /// Follows a restarted server (new port).
    pub fn retarget(&mut self, server: &EstServer) {
        self.addr = server.base.trim_start_matches("https://").to_string();
    }

    /// A new connection (handshake done).
    pub fn connect(&self) -> std::io::Result<Conn> {
        let tcp = TcpStream::connect(&self.addr)?;
        tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(30)))?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(self.config.clone(), name)
            .map_err(std::io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock)?;
        }
        Ok(Conn {
            stream: BufReader::new(tls),
            closed: false,
        })
    }

    /// `POST path` with a PKCS#10 body.
    pub fn post_request(&self, path: &str, body: &[u8]) -> Vec<u8> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: kipuka-test\r\nAuthorization: Basic {}\r\nContent-Type: application/pkcs10\r\nContent-Length: {}\r\n\r\n",
            self.auth,
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    }

    /// `GET path`.
    pub fn get_request(&self, path: &str) -> Vec<u8> {
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: kipuka-test\r\n\r\n")
            .into_bytes()
    }

    /// One exchange on a fresh connection; status 0 if it failed.
    pub fn once(&self, request: &[u8]) -> Answer {
        let started = Instant::now();
        match self.connect().and_then(|mut c| c.exchange(request)) {
            Ok(a) => a,
            Err(_) => Answer::failed(started.elapsed()),
        }
    }
}

impl Conn {
    /// Whether the server said it closes the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Sends `request` and reads the answer (Content-Length or chunked).
    pub fn exchange(&mut self, request: &[u8]) -> std::io::Result<Answer> {
        let started = Instant::now();
        let s = self.stream.get_mut();
        s.write_all(request)?;
        s.flush()?;
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.stream.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(h, _)| h == n)
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let mut body = Vec::new();
        if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                self.stream.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(std::io::Error::other)?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk)?;
                chunk.truncate(size);
                body.extend(chunk);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(len) = get("content-length") {
            let len: usize = len.parse().map_err(std::io::Error::other)?;
            body.resize(len, 0);
            self.stream.read_exact(&mut body)?;
        }
        if get("connection").is_some_and(|v| v.contains("close")) {
            self.closed = true;
        }
        Ok(Answer {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        })
    }
}

/// Runs up to `total` requests (`make(i)`) from `workers` threads, each on
/// a keep-alive connection, until `total` are done, `deadline` passes or
/// `stop` is set. A failed exchange is recorded with status 0 and the
/// worker reconnects. Answers come back in completion order with their index.
pub fn load(
    client: &EstClient,
    total: usize,
    workers: usize,
    deadline: Instant,
    stop: Option<Arc<AtomicBool>>,
    make: impl Fn(usize) -> Vec<u8> + Send + Sync,
) -> Vec<(usize, Answer)> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(total.min(100_000)));
    let make = &make;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let (next, out, stop) = (&next, &out, stop.clone());
            scope.spawn(move || {
                let mut conn: Option<Conn> = None;
                loop {
                    if Instant::now() > deadline
                        || stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
                    {
                        return;
                    }
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= total {
                        return;
                    }
                    let request = make(i);
                    let started = Instant::now();
                    let c = match conn.take() {
                        Some(c) => Ok(c),
                        None => client.connect(),
                    };
                    let answer = c.and_then(|mut c| {
                        let a = c.exchange(&request)?;
                        if !c.is_closed() {
                            conn = Some(c);
                        }
                        Ok(a)
                    });
                    let answer = answer.unwrap_or_else(|_| {
                        // Do not spin on a dead server.
                        std::thread::sleep(Duration::from_millis(20));
                        Answer::failed(started.elapsed())
                    });
                    out.lock().unwrap().push((i, answer));
                }
            });
        }
    });
    out.into_inner().unwrap()
}

/// `n` CSRs (base64 of DER, one line) for P-256 keys, made by OpenSSL.
pub fn ec_csrs(server: &EstServer, prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let (b64, _) = server.csr(
                &format!("{prefix}{i}"),
                &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
                &format!("/CN={prefix}-{i}"),
                None,
            );
            let text = std::fs::read_to_string(b64).unwrap();
            text.split_whitespace().collect::<String>().into_bytes()
        })
        .collect()
}

fn tlv(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The DER certificates of a base64 certs-only PKCS#7 body (RFC 5652
/// ContentInfo → SignedData → `certificates [0] IMPLICIT`), walked by hand.
pub fn certs_from_pkcs7_b64(body: &[u8]) -> Option<Vec<Vec<u8>>> {
    let text: String = String::from_utf8_lossy(body).split_whitespace().collect();
    let der = base64ct::Base64::decode_vec(&text).ok()?;
    let (0x30, content_info, _) = tlv(&der)? else {
        return None;
    };
    let (0x06, _oid, rest) = tlv(content_info)? else {
        return None;
    };
    let (0xa0, explicit, _) = tlv(rest)? else {
        return None;
    };
    let (0x30, signed_data, _) = tlv(explicit)? else {
        return None;
    };
    // version, digestAlgorithms, encapContentInfo, then [0] certificates.
    let (_, _, rest) = tlv(signed_data)?;
    let (_, _, rest) = tlv(rest)?;
    let (_, _, rest) = tlv(rest)?;
    let (0xa0, mut certs, _) = tlv(rest)? else {
        return None;
    };
    let mut out = Vec::new();
    while !certs.is_empty() {
        let (_, _, after) = tlv(certs)?;
        out.push(certs[..certs.len() - after.len()].to_vec());
        certs = after;
    }
    Some(out)
}

/// The DER of every certificate in the store, with SQLite's own command line.
pub fn store_certificates(db: &Path) -> HashSet<Vec<u8>> {
    let out = run(Command::new("sqlite3")
        .arg(db)
        .arg("SELECT hex(der) FROM issued_certificates"));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| hex::decode(l.trim()).expect("hex from sqlite3"))
        .collect()
}

/// One value from the store, with the `sqlite3` command line.
pub fn sqlite(db: &Path, sql: &str) -> String {
    let out = run(Command::new("sqlite3").arg(db).arg(sql));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Verifies every DER certificate against `ca_pem` with `openssl verify`,
/// in batches (one process per few hundred certificates). Panics naming the
/// first failure.
pub fn openssl_verify_all(dir: &Path, ca_pem: &Path, certs: &[Vec<u8>]) {
    let batch_dir = dir.join("verify-batch");
    for (b, chunk) in certs.chunks(400).enumerate() {
        let _ = std::fs::remove_dir_all(&batch_dir);
        std::fs::create_dir_all(&batch_dir).unwrap();
        let mut cmd = openssl();
        cmd.args(["verify", "-CAfile"]).arg(ca_pem);
        for (i, der) in chunk.iter().enumerate() {
            let pem = batch_dir.join(format!("c{i}.pem"));
            let b64 = base64ct::Base64::encode_string(der);
            let mut text = String::from("-----BEGIN CERTIFICATE-----\n");
            for line in b64.as_bytes().chunks(64) {
                text.push_str(std::str::from_utf8(line).unwrap());
                text.push('\n');
            }
            text.push_str("-----END CERTIFICATE-----\n");
            std::fs::write(&pem, text).unwrap();
            cmd.arg(&pem);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ok = stdout.lines().filter(|l| l.ends_with(": OK")).count();
        assert!(
            out.status.success() && ok == chunk.len(),
            "batch {b}: OpenSSL verified {ok} of {}:\n{stdout}{}",
            chunk.len(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The CA certificate of label `ca` (PEM path), from the server's folder.
pub fn ca_pem(server: &EstServer, ca: &str) -> std::path::PathBuf {
    server.dir.join("ca").join(format!("{ca}.pem"))
}
