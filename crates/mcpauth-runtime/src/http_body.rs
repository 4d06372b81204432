//! Response bodies of other parties (identity providers, authorization servers, JWKS hosts,
//! upstream APIs), read with a size limit: a hostile or broken server cannot make a service
//! buffer an unbounded body, chunked or not.

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Longer than the limit (by its `Content-Length`, or once that many bytes arrived).
    #[error("response too large")]
    TooLarge,
    #[error(transparent)]
    Transport(#[from] reqwest::Error),
}

/// Reads `resp`'s body, refusing it as soon as it is known to exceed `max` bytes.
pub async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|l| l > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP/1.1 server answering with a chunked body of `len` bytes (no
    /// Content-Length, so only counting what arrives can refuse it).
    async fn chunked_server(len: usize) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            let chunk = vec![b'x'; 1000];
            let mut left = len;
            while left > 0 {
                let n = left.min(chunk.len());
                let head = format!("{n:x}\r\n");
                if s.write_all(head.as_bytes()).await.is_err()
                    || s.write_all(&chunk[..n]).await.is_err()
                    || s.write_all(b"\r\n").await.is_err()
                {
                    return;
                }
                left -= n;
            }
            let _ = s.write_all(b"0\r\n\r\n").await;
        });
        format!("http://{addr}/")
    }

    #[tokio::test]
    async fn a_chunked_body_over_the_limit_is_refused_and_one_within_is_read() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        let url = chunked_server(50_000).await;
        let resp = client.get(&url).send().await.unwrap();
        assert!(matches!(
            read_limited(resp, 10_000).await,
            Err(BodyError::TooLarge)
        ));
        let url = chunked_server(5_000).await;
        let resp = client.get(&url).send().await.unwrap();
        assert_eq!(read_limited(resp, 10_000).await.unwrap().len(), 5_000);
    }
}
