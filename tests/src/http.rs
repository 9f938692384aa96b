//! Fixtures of the HTTP tests: a real axum server on a loopback socket and a real client.

use std::net::SocketAddr;

use axum::Router;

/// Serves `app` on a free loopback port, with the peer address as `ConnectInfo`; returns its
/// base URL (`http://127.0.0.1:port`).
///
/// # Panics
/// When no port can be bound.
pub async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .expect("the test server");
    });
    format!("http://{addr}")
}

/// A plain-HTTP client (reqwest is built without a TLS provider of its own: ring is given).
///
/// # Panics
/// When the client cannot be built.
pub fn client() -> reqwest::Client {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("an HTTP client")
}
