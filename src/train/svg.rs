//! A small SVG chart writer for the HTML report: axes with round ticks,
//! polylines, bars, markers and labels, as inline `<svg>` text. Hand-written
//! rather than a plotting crate: the report needs six simple charts, and
//! this keeps the build free of font and image dependencies (the text is
//! drawn by the browser with its own sans-serif font).

use std::fmt::Write;

/// Plot area margins: left, right, top, bottom (pixels).
const MARGIN: (f64, f64, f64, f64) = (62.0, 16.0, 30.0, 46.0);

/// A chart being drawn: data ranges mapped onto a `width` × `height` box.
pub struct Chart {
    width: f64,
    height: f64,
    x: (f64, f64),
    y: (f64, f64),
    body: String,
}

/// Escapes text for XML.
pub fn esc(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

impl Chart {
    /// A chart with a title, axis labels and ticks over `x` × `y`.
    pub fn new(title: &str, x_label: &str, y_label: &str, x: (f64, f64), y: (f64, f64)) -> Chart {
        let mut chart = Chart::new_blank(x, y);
        chart.axes(title, x_label, y_label, None);
        chart
    }

    /// A chart over named bins along x (bin `k` spans `k ..= k + 1`, its
    /// name slanted under it) and `y`.
    pub fn categories(title: &str, y_label: &str, names: &[String], y: (f64, f64)) -> Chart {
        let mut chart = Chart::new_blank((0.0, names.len().max(1) as f64), y);
        chart.axes(title, "", y_label, Some(names));
        chart
    }

    fn new_blank(x: (f64, f64), y: (f64, f64)) -> Chart {
        let fix =
            |(lo, hi): (f64, f64)| if hi > lo && hi.is_finite() && lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        Chart { width: 460.0, height: 320.0, x: fix(x), y: fix(y), body: String::new() }
    }

    fn px(&self, x: f64) -> f64 {
        let (l, r) = (MARGIN.0, self.width - MARGIN.1);
        l + (x - self.x.0) / (self.x.1 - self.x.0) * (r - l)
    }

    fn py(&self, y: f64) -> f64 {
        let (t, b) = (MARGIN.2, self.height - MARGIN.3);
        b - (y - self.y.0) / (self.y.1 - self.y.0) * (b - t)
    }

    fn axes(&mut self, title: &str, x_label: &str, y_label: &str, x_names: Option<&[String]>) {
        let (l, r, t, b) = (MARGIN.0, self.width - MARGIN.1, MARGIN.2, self.height - MARGIN.3);
        let mut s = String::new();
        let _ =
            write!(s, r##"<rect x="{l}" y="{t}" width="{}" height="{}" fill="#fff" stroke="#999"/>"##, r - l, b - t);
        for (k, name) in x_names.unwrap_or_default().iter().enumerate() {
            let (x, y) = (self.px(k as f64 + 0.5), b + 12.0);
            let _ = write!(
                s,
                r##"<text x="{x:.1}" y="{y}" text-anchor="end" font-size="10" transform="rotate(-35 {x:.1} {y})">{}</text>"##,
                esc(name)
            );
        }
        let numbered = if x_names.is_some() { Vec::new() } else { ticks(self.x) };
        for v in numbered {
            let x = self.px(v);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{b}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle" font-size="11">{}</text>"##,
                b + 14.0,
                label(v)
            );
        }
        for v in ticks(self.y) {
            let y = self.py(v);
            let _ = write!(
                s,
                r##"<line x1="{l}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end" font-size="11">{}</text>"##,
                l - 4.0,
                y + 4.0,
                label(v)
            );
        }
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="18" text-anchor="middle" font-size="14" font-weight="bold">{}</text><text x="{:.1}" y="{}" text-anchor="middle" font-size="12">{}</text><text x="14" y="{:.1}" text-anchor="middle" font-size="12" transform="rotate(-90 14 {:.1})">{}</text>"##,
            self.width / 2.0,
            esc(title),
            (l + r) / 2.0,
            self.height - 8.0,
            esc(x_label),
            (t + b) / 2.0,
            (t + b) / 2.0,
            esc(y_label)
        );
        self.body.push_str(&s);
    }

    /// A line through `points`, each held inside the chart's ranges so a
    /// spike stays in the plot area.
    pub fn line(&mut self, points: &[(f64, f64)], color: &str, width: f64, opacity: f64, dashed: bool) {
        if points.is_empty() {
            return;
        }
        let mut d = String::with_capacity(points.len() * 14);
        for (i, &(x, y)) in points.iter().enumerate() {
            let (x, y) = (self.px(x.clamp(self.x.0, self.x.1)), self.py(y.clamp(self.y.0, self.y.1)));
            let _ = write!(d, "{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" });
        }
        let dash = if dashed { r#" stroke-dasharray="5,4""# } else { "" };
        let _ = write!(
            self.body,
            r#"<path d="{d}" fill="none" stroke="{color}" stroke-width="{width}" stroke-opacity="{opacity}"{dash}/>"#
        );
    }

    /// Vertical bars from `y = 0`: `(x_left, x_right, height)`.
    pub fn bars(&mut self, bars: &[(f64, f64, f64)], color: &str, opacity: f64) {
        for &(x0, x1, h) in bars {
            let (a, b) = (self.px(x0), self.px(x1));
            let (top, base) = (self.py(h.min(self.y.1)), self.py(self.y.0.max(0.0)));
            let _ = write!(
                self.body,
                r#"<rect x="{a:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="{opacity}"/>"#,
                (b - a).max(0.5),
                (base - top).max(0.0)
            );
        }
    }

    /// Dots at `points`.
    pub fn dots(&mut self, points: &[(f64, f64)], color: &str) {
        for &(x, y) in points {
            let _ =
                write!(self.body, r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{color}"/>"#, self.px(x), self.py(y));
        }
    }

    /// A vertical marker line at `x` with a label.
    pub fn marker(&mut self, x: f64, color: &str, text: &str) {
        let (px, t, b) = (self.px(x), MARGIN.2, self.height - MARGIN.3);
        let _ = write!(
            self.body,
            r#"<line x1="{px:.1}" y1="{t}" x2="{px:.1}" y2="{b}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{}" font-size="11" fill="{color}">{}</text>"#,
            px + 4.0,
            t + 14.0,
            esc(text)
        );
    }

    /// A legend entry (row `k`) in the top-right corner.
    pub fn legend(&mut self, k: usize, color: &str, text: &str) {
        let x = self.width - MARGIN.1 - 150.0;
        let y = MARGIN.2 + 14.0 + 16.0 * k as f64;
        let _ = write!(
            self.body,
            r#"<rect x="{x}" y="{}" width="12" height="4" fill="{color}"/><text x="{}" y="{y}" font-size="11">{}</text>"#,
            y - 5.0,
            x + 16.0,
            esc(text)
        );
    }

    /// The finished `<svg>` element.
    pub fn finish(self) -> String {
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" font-family="sans-serif" role="img">{}</svg>"#,
            self.body,
            w = self.width,
            h = self.height
        )
    }
}

/// About five round tick values covering `range`.
fn ticks((lo, hi): (f64, f64)) -> Vec<f64> {
    let raw = (hi - lo) / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(raw);
    let first = (lo / step).ceil() * step;
    (0..=20).map(|k| first + k as f64 * step).take_while(|v| *v <= hi + step * 1e-9).collect()
}

fn label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}").trim_end_matches(".0").to_string()
    } else {
        let text = format!("{v:.4}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks((0.0, 1.0)), vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]);
        let t = ticks((0.0, 0.07));
        assert!(t.len() >= 4 && t.len() <= 8, "{t:?}");
        assert_eq!(label(0.025), "0.025");
        assert_eq!(label(2500.0), "2500");
    }

    #[test]
    fn a_chart_is_one_escaped_svg_element() {
        let mut c = Chart::new("ROC <all>", "x", "y", (0.0, 1.0), (0.0, 1.0));
        c.line(&[(0.0, 0.0), (1.0, 1.0)], "#333", 1.0, 1.0, true);
        c.bars(&[(0.1, 0.2, 0.5)], "#c00", 0.5);
        c.marker(0.3, "#06c", "t = 0.3");
        let svg = c.finish();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("ROC &lt;all&gt;") && svg.contains("<path d=\"M62.0,274.0L444.0,30.0\""), "{svg}");
        let named = Chart::categories("bins", "share", &["≤ 1".into(), "> 1".into()], (0.0, 1.0)).finish();
        assert!(named.contains(">≤ 1</text>") && named.contains(">&gt; 1</text>"), "{named}");
        assert!(!named.contains(">0.5</text>"), "no numbered ticks along x: {named}");
    }
}
