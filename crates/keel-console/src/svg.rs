//! Charts as inline SVG, drawn here rather than by a script: line charts over time, interval
//! ("forest") charts, and the lineage graph. Every chart has a title, axes with ticks and
//! units, and a legend; colours come from classes in console.css (no inline styles, so the
//! console runs under `default-src 'self'`). Every text goes through [`esc`].

use std::fmt::Write as _;

use crate::html::{esc, segment, time_ms};

pub(crate) const W: f64 = 760.0;
pub(crate) const H: f64 = 300.0;
pub(crate) const LEFT: f64 = 64.0;
pub(crate) const RIGHT: f64 = 16.0;
pub(crate) const TOP: f64 = 34.0;
pub(crate) const BOTTOM: f64 = 70.0;
/// Points are marked (with a tooltip and their exact `data-x`, `data-y` each) only below this
/// many per series.
const MAX_MARKED: usize = 120;

/// What the y values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Shares in [0, 1], shown as percentages.
    Percent,
    /// Whole counts.
    Count,
    /// Any number.
    Number,
}

impl Unit {
    pub(crate) fn format(self, v: f64) -> String {
        match self {
            Unit::Percent => {
                let p = v * 100.0;
                if (p - p.round()).abs() < 1e-9 {
                    format!("{p:.0}%")
                } else {
                    format!("{p:.1}%")
                }
            }
            Unit::Count => format!("{v:.0}"),
            Unit::Number => {
                if v.abs() >= 100.0 || v == 0.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.3}")
                }
            }
        }
    }
}

/// One line: its name in the legend and its `(x, y)` points, `x` in ms since the epoch.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

#[derive(Debug, Clone)]
pub struct LineChart<'a> {
    /// The `id` of the `<svg>` (for links and tests).
    pub id: &'a str,
    pub title: &'a str,
    pub y_label: &'a str,
    pub unit: Unit,
    pub series: Vec<Series>,
    /// The top of the y axis; `None`: from the data.
    pub y_max: Option<f64>,
}

/// A linear map from a domain to a pixel range.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    d0: f64,
    d1: f64,
    r0: f64,
    r1: f64,
}

impl Scale {
    pub fn new(domain: (f64, f64), range: (f64, f64)) -> Scale {
        let (d0, mut d1) = domain;
        if (d1 - d0).abs() < f64::EPSILON {
            d1 = d0 + 1.0;
        }
        Scale {
            d0,
            d1,
            r0: range.0,
            r1: range.1,
        }
    }

    pub fn at(&self, v: f64) -> f64 {
        self.r0 + (v - self.d0) / (self.d1 - self.d0) * (self.r1 - self.r0)
    }
}

/// A "nice" step (1, 2 or 5 times a power of ten) giving about `n` ticks over `span`.
pub(crate) fn nice_step(span: f64, n: f64) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / n;
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let m = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    m * mag
}

/// The y range `[0, top]` with a nice top covering `max`.
pub(crate) fn y_top(max: f64, unit: Unit) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let step = nice_step(max, 5.0);
    let top = (max / step).ceil() * step;
    if unit == Unit::Percent {
        top.min(1.0).max(step)
    } else {
        top
    }
}

fn axis_time_label(ms: f64, span_ms: f64) -> String {
    let full = time_ms(ms as i64);
    // `YYYY-MM-DD HH:MM:SS UTC`: with seconds for spans under ten minutes, the time of day
    // under two days, else the date.
    if span_ms < 600_000.0 {
        full.get(11..19).unwrap_or(&full).to_owned()
    } else if span_ms < 2.0 * 86_400_000.0 {
        full.get(11..16).unwrap_or(&full).to_owned()
    } else {
        full.get(5..10).unwrap_or(&full).to_owned()
    }
}

/// The y axis from 0 to `top`: about five ticks, each a grid line across the plot and the
/// unit's label.
pub(crate) fn y_grid(out: &mut String, sy: &Scale, top: f64, plot_right: f64, unit: Unit) {
    let step = nice_step(top, 5.0);
    let mut v = 0.0;
    while v <= top * (1.0 + 1e-9) {
        let y = sy.at(v);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{LEFT}" x2="{plot_right}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{xl:.1}" y="{yt:.1}" text-anchor="end">{l}</text>"#,
            xl = LEFT - 6.0,
            yt = y + 4.0,
            l = esc(&unit.format(v)),
        );
        v += step;
    }
}

pub(crate) fn open_svg(out: &mut String, id: &str, title: &str, height: f64) {
    let _ = write!(
        out,
        r#"<figure class="chart"><svg id="{id}" class="chart" viewBox="0 0 {W} {height}" role="img" aria-labelledby="{id}-title"><title id="{id}-title">{t}</title><text class="title" x="{LEFT}" y="20">{t}</text>"#,
        id = esc(id),
        t = esc(title),
    );
}

pub(crate) fn legend(out: &mut String, names: &[&str], y: f64) {
    let mut x = LEFT;
    for (i, name) in names.iter().enumerate() {
        let _ = write!(
            out,
            r#"<g class="legend"><rect class="swatch s{c}" x="{x:.1}" y="{ys:.1}" width="14" height="4"/><text x="{xt:.1}" y="{y:.1}">{n}</text></g>"#,
            c = i % 8,
            ys = y - 5.0,
            xt = x + 18.0,
            n = esc(name),
        );
        x += 30.0 + 7.0 * name.chars().count().min(40) as f64;
    }
}

/// A line chart over time with a y axis from zero.
pub fn line_chart(c: &LineChart<'_>) -> String {
    let xs = c.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let mut out = String::with_capacity(4096);
    open_svg(&mut out, c.id, c.title, H);
    if !x0.is_finite() {
        let _ = write!(
            out,
            r#"<text class="empty" x="{LEFT}" y="{:.1}">no data yet</text></svg></figure>"#,
            H / 2.0
        );
        return out;
    }
    let max = c
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let top = c.y_max.unwrap_or_else(|| y_top(max, c.unit));
    let (plot_bottom, plot_right) = (H - BOTTOM, W - RIGHT);
    let sx = Scale::new((x0, x1), (LEFT, plot_right));
    let sy = Scale::new((0.0, top), (plot_bottom, TOP));
    y_grid(&mut out, &sy, top, plot_right, c.unit);
    // x axis: about six time ticks
    let span = x1 - x0;
    let n = if span > 0.0 { 6 } else { 1 };
    for i in 0..n {
        let t = if n == 1 {
            x0
        } else {
            x0 + span * i as f64 / (n - 1) as f64
        };
        let x = sx.at(t);
        let anchor = if n > 1 && i == n - 1 {
            "end"
        } else if i == 0 {
            "start"
        } else {
            "middle"
        };
        let _ = write!(
            out,
            r#"<line class="tickmark" x1="{x:.1}" x2="{x:.1}" y1="{plot_bottom}" y2="{yb:.1}"/><text class="tick" x="{x:.1}" y="{yl:.1}" text-anchor="{anchor}">{l}</text>"#,
            yb = plot_bottom + 5.0,
            yl = plot_bottom + 18.0,
            l = esc(&axis_time_label(t, span)),
        );
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{plot_bottom}"/><line class="axis" x1="{LEFT}" x2="{plot_right}" y1="{plot_bottom}" y2="{plot_bottom}"/><text class="label" transform="translate(14 {ym:.1}) rotate(-90)" text-anchor="middle">{yl}</text><text class="label" x="{xm:.1}" y="{xy:.1}" text-anchor="middle">time (UTC)</text>"#,
        ym = (TOP + plot_bottom) / 2.0,
        yl = esc(c.y_label),
        xm = (LEFT + plot_right) / 2.0,
        xy = plot_bottom + 34.0,
    );
    for (i, s) in c.series.iter().enumerate() {
        let mut pts = String::new();
        for (x, y) in &s.points {
            let _ = write!(pts, "{:.1},{:.1} ", sx.at(*x), sy.at(*y));
        }
        let _ = write!(
            out,
            r#"<polyline class="line s{c}" data-series="{n}" points="{p}"/>"#,
            c = i % 8,
            n = esc(&s.name),
            p = pts.trim_end(),
        );
        if s.points.len() <= MAX_MARKED {
            for (x, y) in &s.points {
                let _ = write!(
                    out,
                    r#"<circle class="dot s{c}" cx="{cx:.1}" cy="{cy:.1}" r="3" data-series="{n}" data-x="{x}" data-y="{y}"><title>{n}: {v} at {t}</title></circle>"#,
                    c = i % 8,
                    cx = sx.at(*x),
                    cy = sy.at(*y),
                    n = esc(&s.name),
                    v = esc(&c.unit.format(*y)),
                    t = esc(&time_ms(*x as i64)),
                );
            }
        }
    }
    let names: Vec<&str> = c.series.iter().map(|s| s.name.as_str()).collect();
    legend(&mut out, &names, H - 10.0);
    out.push_str("</svg></figure>\n");
    out
}

/// One row of an interval chart: a name, an estimate and its interval.
#[derive(Debug, Clone)]
pub struct Interval {
    pub name: String,
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// Estimates with their intervals, one row each, on a shared x axis.
pub fn interval_chart(id: &str, title: &str, x_label: &str, unit: Unit, rows: &[Interval]) -> String {
    let row_h = 30.0;
    let height = TOP + row_h * rows.len().max(1) as f64 + 56.0;
    let mut out = String::with_capacity(2048);
    open_svg(&mut out, id, title, height);
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let lo = rows.iter().map(|r| finite(r.low)).fold(0.0f64, f64::min);
    let hi = rows.iter().map(|r| finite(r.high)).fold(0.0f64, f64::max);
    let step = nice_step(hi - lo, 5.0);
    let (lo, hi) = ((lo / step).floor() * step, ((hi / step).ceil() * step).max(step));
    let left = 150.0;
    let plot_bottom = TOP + row_h * rows.len().max(1) as f64;
    let sx = Scale::new((lo, hi), (left, W - RIGHT - 10.0));
    let mut v = lo;
    while v <= hi * (1.0 + 1e-9) + 1e-12 {
        let x = sx.at(v);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{plot_bottom:.1}"/><text class="tick" x="{x:.1}" y="{yl:.1}" text-anchor="middle">{l}</text>"#,
            yl = plot_bottom + 16.0,
            l = esc(&unit.format(v)),
        );
        v += step;
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{left}" x2="{xr:.1}" y1="{plot_bottom:.1}" y2="{plot_bottom:.1}"/><text class="label" x="{xm:.1}" y="{yl:.1}" text-anchor="middle">{l}</text>"#,
        xr = W - RIGHT - 10.0,
        xm = (left + W - RIGHT) / 2.0,
        yl = plot_bottom + 36.0,
        l = esc(x_label),
    );
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + row_h * (i as f64 + 0.5);
        let _ = write!(
            out,
            r#"<text class="tick" x="{xn:.1}" y="{yt:.1}" text-anchor="end">{n}</text>"#,
            xn = left - 8.0,
            yt = y + 4.0,
            n = esc(&r.name),
        );
        if r.estimate.is_finite() {
            let _ = write!(
                out,
                r#"<line class="whisker s{c}" x1="{a:.1}" x2="{b:.1}" y1="{y:.1}" y2="{y:.1}"/><circle class="dot s{c}" cx="{e:.1}" cy="{y:.1}" r="4"><title>{n}: {v} (95% interval {l} to {h})</title></circle>"#,
                c = i % 8,
                a = sx.at(finite(r.low)),
                b = sx.at(finite(r.high)),
                e = sx.at(r.estimate),
                n = esc(&r.name),
                v = esc(&unit.format(r.estimate)),
                l = esc(&unit.format(r.low)),
                h = esc(&unit.format(r.high)),
            );
        }
    }
    out.push_str("</svg></figure>\n");
    out
}

/// The column of a lineage node, by its kind.
fn kind_column(node: &str) -> usize {
    match node.split('/').next().unwrap_or("") {
        "table" => 0,
        "model" => 1,
        "deployment" => 2,
        "decisions" => 3,
        _ => 4,
    }
}

/// Where a lineage node's page is, if the console has one.
fn node_href(node: &str) -> Option<String> {
    let (kind, rest) = node.split_once('/')?;
    match kind {
        "table" => Some(format!("/ui/data/{}", segment(rest.split('@').next().unwrap_or(rest)))),
        "model" => Some(format!(
            "/ui/models/{}",
            segment(rest.split('/').next().unwrap_or(rest))
        )),
        "deployment" | "decisions" => Some(format!("/ui/deployments/{}", segment(rest))),
        _ => None,
    }
}

/// Lineage edges `(source, target, relation)` as a graph: tables, then models, deployments and
/// decision logs from left to right, with arrows; every node links to its page. `focus` is
/// drawn highlighted.
pub fn lineage_graph(id: &str, title: &str, edges: &[(String, String, String)], focus: &str) -> String {
    let mut columns: Vec<Vec<&str>> = vec![Vec::new(); 5];
    for (s, t, _) in edges {
        for n in [s.as_str(), t.as_str()] {
            let col = &mut columns[kind_column(n)];
            if !col.contains(&n) {
                col.push(n);
            }
        }
    }
    let (box_w, box_h, gap_y, col_w) = (170.0, 28.0, 14.0, 190.0);
    let rows = columns.iter().map(Vec::len).max().unwrap_or(0).max(1) as f64;
    let height = TOP + rows * (box_h + gap_y) + 20.0;
    let mut out = String::with_capacity(4096);
    open_svg(&mut out, id, title, height);
    out.push_str(r#"<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path class="arrowhead" d="M 0 0 L 10 5 L 0 10 z"/></marker></defs>"#);
    let place = |n: &str| -> (f64, f64) {
        let c = kind_column(n);
        let r = columns[c].iter().position(|m| *m == n).unwrap_or(0);
        (12.0 + c as f64 * col_w, TOP + 6.0 + r as f64 * (box_h + gap_y))
    };
    for (s, t, rel) in edges {
        let (sx, sy) = place(s);
        let (tx, ty) = place(t);
        let (x1, y1, x2, y2) = (sx + box_w, sy + box_h / 2.0, tx, ty + box_h / 2.0);
        let mid = (x1 + x2) / 2.0;
        let _ = write!(
            out,
            r#"<path class="edge" d="M {x1:.1} {y1:.1} C {mid:.1} {y1:.1}, {mid:.1} {y2:.1}, {x2:.1} {y2:.1}" marker-end="url(#arrow)"><title>{s} {r} {t}</title></path>"#,
            s = esc(s),
            r = esc(rel),
            t = esc(t),
        );
    }
    for col in &columns {
        for n in col {
            let (x, y) = place(n);
            let shown: String = if n.chars().count() > 24 {
                n.chars().take(23).chain(std::iter::once('…')).collect()
            } else {
                (*n).to_owned()
            };
            let class = if *n == focus { "node focus" } else { "node" };
            let body = format!(
                r#"<rect class="{class}" x="{x:.1}" y="{y:.1}" width="{box_w}" height="{box_h}" rx="4"/><text class="nodetext" x="{tx:.1}" y="{ty:.1}">{s}</text><title>{n}</title>"#,
                tx = x + 8.0,
                ty = y + 18.0,
                s = esc(&shown),
                n = esc(n),
            );
            match node_href(n) {
                Some(h) => {
                    let _ = write!(out, r#"<a href="{}">{body}</a>"#, esc(&h));
                }
                None => out.push_str(&body),
            }
        }
    }
    out.push_str("</svg></figure>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart(series: Vec<Series>) -> String {
        line_chart(&LineChart {
            id: "share",
            title: "Traffic share <per> variant",
            y_label: "share of decisions",
            unit: Unit::Percent,
            series,
            y_max: Some(1.0),
        })
    }

    #[test]
    fn a_line_chart_has_title_axes_units_legend_and_places_values() {
        let t0 = 1_765_000_000_000.0;
        let svg = chart(vec![
            Series {
                name: "a".into(),
                points: vec![(t0, 0.5), (t0 + 60_000.0, 1.0)],
            },
            Series {
                name: "b<script>".into(),
                points: vec![(t0, 0.5), (t0 + 60_000.0, 0.0)],
            },
        ]);
        assert!(
            svg.contains("<title id=\"share-title\">Traffic share &lt;per&gt; variant</title>"),
            "{svg}"
        );
        for label in [
            "0%",
            "20%",
            "40%",
            "60%",
            "80%",
            "100%",
            "share of decisions",
            "time (UTC)",
        ] {
            assert!(svg.contains(&format!(">{label}</text>")), "missing {label}: {svg}");
        }
        // the legend names both series, escaped
        assert!(
            svg.contains(">a</text>") && svg.contains(">b&lt;script&gt;</text>"),
            "{svg}"
        );
        assert!(!svg.contains("<script>"));
        // x runs from LEFT to W - RIGHT, y from H - BOTTOM (0%) up to TOP (100%)
        let (left, right, bottom) = (LEFT, W - RIGHT, H - BOTTOM);
        let mid = (bottom + TOP) / 2.0;
        assert!(
            svg.contains(&format!(r#"cx="{left:.1}" cy="{mid:.1}""#)),
            "50% at the first time: {svg}"
        );
        assert!(
            svg.contains(&format!(r#"cx="{right:.1}" cy="{TOP:.1}""#)),
            "100% at the last time"
        );
        assert!(
            svg.contains(&format!(r#"cx="{right:.1}" cy="{bottom:.1}""#)),
            "0% at the last time"
        );
        assert!(
            svg.contains(&format!(r#"points="{left:.1},{mid:.1} {right:.1},{TOP:.1}""#)),
            "{svg}"
        );
        // tooltips carry the value and the time
        assert!(svg.contains("a: 50% at 2025-12-06"), "{svg}");
    }

    #[test]
    fn an_empty_chart_says_so() {
        let svg = chart(vec![Series {
            name: "a".into(),
            points: vec![],
        }]);
        assert!(svg.contains("no data yet"), "{svg}");
    }

    #[test]
    fn interval_charts_place_the_estimate_between_its_bounds() {
        let svg = interval_chart(
            "rates",
            "Reward rate",
            "reward rate",
            Unit::Percent,
            &[Interval {
                name: "b".into(),
                estimate: 0.2,
                low: 0.1,
                high: 0.3,
            }],
        );
        // the axis runs 0..0.3 in steps of 0.05 over [150, W - RIGHT - 10]
        let s = Scale::new((0.0, 0.3), (150.0, W - RIGHT - 10.0));
        assert!(
            svg.contains(&format!(r#"x1="{:.1}" x2="{:.1}""#, s.at(0.1), s.at(0.3))),
            "{svg}"
        );
        assert!(svg.contains(&format!(r#"cx="{:.1}""#, s.at(0.2))), "{svg}");
        assert!(svg.contains("b: 20% (95% interval 10% to 30%)"), "{svg}");
        assert!(svg.contains(">reward rate</text>"));
    }

    #[test]
    fn the_lineage_graph_puts_kinds_in_columns_and_links_nodes() {
        let edges = vec![
            (
                "table/clicks@v1".to_string(),
                "model/m/1".to_string(),
                "trained_on".to_string(),
            ),
            (
                "model/m/1".to_string(),
                "deployment/d".to_string(),
                "serves".to_string(),
            ),
            (
                "deployment/d".to_string(),
                "decisions/d".to_string(),
                "logs".to_string(),
            ),
        ];
        let svg = lineage_graph("lin", "Lineage", &edges, "table/clicks");
        assert!(svg.contains(r#"<a href="/ui/data/clicks">"#), "{svg}");
        assert!(svg.contains(r#"<a href="/ui/models/m">"#), "{svg}");
        assert!(svg.contains(r#"<a href="/ui/deployments/d">"#), "{svg}");
        assert_eq!(svg.matches("marker-end").count(), 3);
        // a table sits left of the model it trained
        let x_of = |name: &str| {
            let at = svg.find(&format!(">{name}</text>")).expect(name);
            let before = &svg[..at];
            let x = before.rfind("<text class=\"nodetext\" x=\"").expect("x") + 26;
            before[x..].split('"').next().expect("num").parse::<f64>().expect("f64")
        };
        assert!(x_of("table/clicks@v1") < x_of("model/m/1"));
        assert!(x_of("model/m/1") < x_of("deployment/d"));
    }

    #[test]
    fn nice_steps() {
        assert_eq!(nice_step(1.0, 5.0), 0.2);
        assert_eq!(nice_step(100.0, 5.0), 20.0);
        assert_eq!(nice_step(0.03, 5.0), 0.01);
        assert_eq!(y_top(0.37, Unit::Percent), 0.4);
        assert_eq!(y_top(1234.0, Unit::Count), 1500.0);
    }
}
