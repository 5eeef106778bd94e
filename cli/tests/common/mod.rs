//! A fake Shoal member for the CLI tests: the four public services over
//! mutual TLS on 127.0.0.1, with state in memory, and a throwaway PKI.
//!
//! Behaviour kept deliberately small and predictable:
//! - `Create` of image "missing" returns an operation that fails with
//!   `image "missing" not found`; every other change succeeds.
//! - `Exec` understands `exit N`, `echo ARGS...`, `cat` (stdin back to
//!   stdout), `err` (stderr "oops", exit 3), `tty` (prints tty rows cols)
//!   and `winch` (prints the first resize it receives).

#![allow(dead_code)]

pub mod pki;
mod services;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use shoal_proto::api::cluster_server::ClusterServer;
use shoal_proto::api::images_server::ImagesServer;
use shoal_proto::api::instances_server::InstancesServer;
use shoal_proto::api::operations_server::OperationsServer;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use services::{Fake, State};

/// A running fake member and the files a client needs to reach it.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub state: Arc<Mutex<State>>,
    pub config: PathBuf,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Harness {
    /// Starts a member; the config lists a dead address first, then it.
    pub async fn start() -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let pki = pki::Pki::generate();
        pki.write(dir.path());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let fake = Fake {
            state: state.clone(),
        };
        let tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(&pki.server_cert, &pki.server_key))
            .client_ca_root(Certificate::from_pem(&pki.ca_cert));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        tokio::spawn(async move {
            Server::builder()
                .tls_config(tls)
                .unwrap()
                .add_service(InstancesServer::new(fake.clone()))
                .add_service(ImagesServer::new(fake.clone()))
                .add_service(OperationsServer::new(fake.clone()))
                .add_service(ClusterServer::new(fake))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        let dead = dead_address().await;
        let config = dir.path().join("config.toml");
        write_config(&config, dir.path(), &[&dead, &addr.to_string()]);
        Harness {
            dir,
            addr,
            state,
            config,
            _shutdown: tx,
        }
    }

    /// Runs `shoal ARGS` against this member, with `stdin` piped in.
    pub async fn shoal(&self, args: &[&str], stdin: &[u8]) -> Output {
        shoal_with_config(&self.config, args, stdin).await
    }
}

/// What a run of the binary produced.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `shoal` binary with `SHOAL_CONFIG=config`.
pub async fn shoal_with_config(config: &Path, args: &[&str], stdin: &[u8]) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .env("SHOAL_CONFIG", config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    tokio::spawn(async move {
        let _ = input.write_all(&data).await;
    });
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("shoal did not finish within 60 s")
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A local address nobody listens on (bound, then released).
async fn dead_address() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap().to_string();
    drop(l);
    a
}

/// Writes a config with one remote "local" over `addresses`.
pub fn write_config(path: &Path, pki_dir: &Path, addresses: &[&str]) {
    let list = addresses
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        "default_remote = \"local\"\n[remotes.local]\naddresses = [{list}]\nca = {:?}\ncert = {:?}\nkey = {:?}\nserver_name = \"shoal\"\n",
        pki_dir.join("ca.crt"),
        pki_dir.join("client.crt"),
        pki_dir.join("client.key"),
    );
    std::fs::write(path, text).unwrap();
}
