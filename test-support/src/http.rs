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
    // Read until the body is complete by its own measure (Content-Length, or the last
    // chunk), not until the server closes: some (ChromeDriver) keep the connection open.
    let mut response = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buffer).await.map_err(|e| format!("read: {e}"))?;
        response.extend_from_slice(&buffer[..n]);
        if let Some(complete) = complete_response(&response, n == 0)? {
            return Ok(complete);
        }
        if n == 0 {
            return Err("the connection closed mid-answer".into());
        }
    }
}

/// The status and body once `response` holds all of them; `closed`: the server closed
/// the connection, which ends a body that has neither a length nor chunks.
fn complete_response(response: &[u8], closed: bool) -> Result<Option<(u16, String)>, String> {
    let Some(split) = response.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = String::from_utf8_lossy(&response[..split]).to_ascii_lowercase();
    let body = &response[split + 4..];
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    let header = |name: &str| {
        head.lines()
            .find_map(|line| line.strip_prefix(name).map(|value| value.trim_start_matches(':').trim().to_string()))
    };
    if let Some(length) = header("content-length") {
        let length: usize = length.parse().map_err(|e| format!("content-length {length:?}: {e}"))?;
        return Ok((body.len() >= length).then(|| (status, String::from_utf8_lossy(&body[..length]).to_string())));
    }
    if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return Ok(dechunk(body).map(|body| (status, String::from_utf8_lossy(&body).to_string())));
    }
    Ok(closed.then(|| (status, String::from_utf8_lossy(body).to_string())))
}

/// The body of a chunked answer, or `None` while its last chunk has not arrived.
fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_line = String::from_utf8_lossy(&body[..line_end]).to_string();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        let rest = &body[line_end + 2..];
        out.extend_from_slice(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}
