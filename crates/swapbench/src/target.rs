//! Where the clients send requests: a loopback address, the `Host` header
//! and a path. Only loopback targets are accepted: this tool loads servers
//! on this machine only.

use std::net::{SocketAddr, ToSocketAddrs};

/// Where the clients send requests: a loopback address and a path.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    pub path: String,
}

impl Target {
    /// Parses `http://127.0.0.1:PORT/path` (also `localhost`, `[::1]`).
    /// Anything that does not resolve to a loopback address is refused: this
    /// tool only ever loads servers on this machine.
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| format!("{url}: {e} (give host:port)"))?
            .find(|a| a.ip().is_loopback())
            .ok_or_else(|| format!("{url}: refusing a non-loopback target"))?;
        Ok(Target { addr, host: authority.to_string(), path: path.to_string() })
    }

    /// The same server, another path.
    pub fn with_path(&self, path: &str) -> Target {
        Target { path: path.to_string(), ..self.clone() }
    }

    pub fn url(&self) -> String {
        format!("http://{}{}", self.host, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_only() {
        let t = Target::parse("http://127.0.0.1:8080/v1/models/m/predict").unwrap();
        assert_eq!((t.addr.port(), t.host.as_str(), t.path.as_str()), (8080, "127.0.0.1:8080", "/v1/models/m/predict"));
        assert_eq!(t.with_path("/metrics").url(), "http://127.0.0.1:8080/metrics");
        assert_eq!(Target::parse("http://[::1]:9").unwrap().path, "/");
        assert!(Target::parse("http://10.1.2.3:80/").unwrap_err().contains("non-loopback"));
        assert!(Target::parse("https://127.0.0.1:1/").unwrap_err().contains("only http://"));
    }
}
