//! riskserve's `/metrics`, scraped from the operator thread: a blocking
//! GET, and the few series the report uses (read with
//! [`testkit::prometheus`]).

use crate::target::Target;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use testkit::prometheus;

/// A blocking `GET` over a fresh loopback connection (`Connection: close`).
pub fn http_get(target: &Target, timeout: Duration) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&target.addr, timeout).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(stream, "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", target.path, target.host)
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.take(64 * 1024 * 1024).read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of headers")?;
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or("no status line")?;
    Ok((status, body.to_string()))
}

/// The riskserve metrics the benchmark reports.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerMetrics {
    pub lines: usize,
    pub swaps_total: Option<u64>,
    pub resident_memory_bytes: Option<u64>,
    /// `riskserve_model_loads_total` by result.
    pub loads: BTreeMap<String, u64>,
    pub load_seconds_sum: Option<f64>,
    pub load_seconds_count: Option<u64>,
}

/// Reads the few series we need from Prometheus text.
pub fn parse_metrics(text: &str, model: &str) -> ServerMetrics {
    let for_model = [("model", model)];
    let value = |name: &str| prometheus::value(text, name, &for_model);
    let loads = prometheus::series(text)
        .filter(|s| s.name == "riskserve_model_loads_total" && s.has_labels(&for_model))
        .filter_map(|s| Some((s.label("result")?.to_string(), s.value as u64)))
        .collect();
    ServerMetrics {
        lines: prometheus::line_count(text),
        swaps_total: value("riskserve_model_swaps_total").map(|v| v as u64),
        resident_memory_bytes: prometheus::value(text, "process_resident_memory_bytes", &[]).map(|v| v as u64),
        loads,
        load_seconds_sum: value("riskserve_model_load_duration_seconds_sum"),
        load_seconds_count: value("riskserve_model_load_duration_seconds_count").map(|v| v as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_series_the_report_uses() {
        let text = "# TYPE riskserve_model_swaps_total counter
riskserve_model_swaps_total{model=\"credit-risk\"} 12
riskserve_model_swaps_total{model=\"other\"} 99
riskserve_model_loads_total{model=\"credit-risk\",result=\"success\"} 13
riskserve_model_loads_total{model=\"credit-risk\",result=\"invalid\"} 2
riskserve_model_loads_total{model=\"other\",result=\"incomplete\"} 5
riskserve_model_load_duration_seconds_sum{model=\"credit-risk\"} 0.25
riskserve_model_load_duration_seconds_count{model=\"credit-risk\"} 15
process_resident_memory_bytes 3.2e7
";
        let m = parse_metrics(text, "credit-risk");
        assert_eq!(m.lines, 9);
        assert_eq!(m.swaps_total, Some(12));
        assert_eq!(m.resident_memory_bytes, Some(32_000_000));
        assert_eq!(m.loads, BTreeMap::from([("invalid".to_string(), 2), ("success".to_string(), 13)]));
        assert_eq!((m.load_seconds_sum, m.load_seconds_count), (Some(0.25), Some(15)));
        assert_eq!(parse_metrics("", "credit-risk").swaps_total, None);
    }

    #[test]
    fn blocking_get_reads_status_and_body() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target::parse(&format!("http://{}/metrics", listener.local_addr().unwrap())).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nx 1\n\n").unwrap();
            String::from_utf8(head).unwrap()
        });
        assert_eq!(http_get(&target, Duration::from_secs(20)).unwrap(), (200, "x 1\n\n".to_string()));
        assert!(server.join().unwrap().starts_with("GET /metrics HTTP/1.1\r\n"));
    }
}
