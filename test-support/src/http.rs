//! A plain HTTP/1.1 client, as a probe, a scraper or a curl user would send requests.

/// A plain HTTP/1.1 GET, as a probe or scraper would send it; returns the status code
/// and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[], None).await
}

/// A plain HTTP/1.1 request with `headers` and an optional JSON `body`; returns the
/// status code and the body.
pub async fn http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    try_http_request(addr, method, path, headers, body).await.unwrap_or_else(|error| panic!("{method} {path}: {error}"))
}

/// [`http_request`], with a server that is not (yet) listening an error, not a panic.
/// A chunked answer (Go's servers send one for larger bodies) is decoded.
pub async fn try_http_request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body.unwrap_or_default());
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.map_err(|e| format!("read: {e}"))?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of the headers")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let body = &response[split + 4..];
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    Ok((status, String::from_utf8_lossy(&body).to_string()))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n").ok_or("a chunk without its size line")?;
        let size_line = String::from_utf8_lossy(&body[..line_end]).to_string();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("chunk size {size_line:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let rest = &body[line_end + 2..];
        out.extend_from_slice(rest.get(..size).ok_or("a chunk shorter than its size")?);
        body = rest.get(size + 2..).ok_or("a chunk without its line end")?;
    }
}
