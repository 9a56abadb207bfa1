//! The accept loop the sandbox's mail servers share: a loopback listener with implicit TLS (the
//! sandbox certificate, [`crate::smtp::SANDBOX_CA_PEM`]), one task per connection, stopped on
//! [`TlsServer::shutdown`] or drop (open connections end when their clients leave).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;

/// A running TLS server on 127.0.0.1.
pub(crate) struct TlsServer {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TlsServer {
    /// Binds a free port and runs `session` on every connection whose TLS handshake completes.
    pub(crate) async fn start<F, Fut>(session: F) -> Result<TlsServer, String>
    where
        F: Fn(TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let acceptor = crate::smtp::acceptor()?;
        let session = Arc::new(session);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (tx, mut rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    accepted = listener.accept() => {
                        let Ok((tcp, _)) = accepted else { continue };
                        let (acceptor, session) = (acceptor.clone(), session.clone());
                        // The handshake too runs in the connection's task: a slow client
                        // never holds up the others.
                        tokio::spawn(async move {
                            if let Ok(tls) = acceptor.accept(tcp).await {
                                session(tls).await;
                            }
                        });
                    }
                }
            }
        });
        Ok(TlsServer {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the accept loop to end.
    pub(crate) async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
