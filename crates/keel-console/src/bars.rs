//! Two histograms over the same bins as inline SVG (the reference and the current window of a
//! monitored column): bars side by side per bin, heights as each side's share of its own rows
//! (so sides of different sizes compare), a y axis in percent, the bin edges on the x axis, a
//! legend with each side's rows. Every bar carries its bin's count and share in `data-count`
//! and `data-y`, and a tooltip.

use std::fmt::Write as _;

use crate::html::esc;
use crate::svg::{BOTTOM, H, LEFT, RIGHT, Scale, TOP, Unit, W, legend, open_svg, y_grid, y_top};

/// One side: its name in the legend and its count per bin.
#[derive(Debug, Clone)]
pub struct Side<'a> {
    pub name: &'a str,
    pub counts: &'a [u64],
}

/// A histogram chart of `sides` over `edges` (one more than each side's counts).
pub fn histogram(id: &str, title: &str, x_label: &str, edges: &[f64], sides: &[Side<'_>]) -> String {
    let mut out = String::with_capacity(8192);
    open_svg(&mut out, id, title, H);
    let bins = edges.len().saturating_sub(1);
    let totals: Vec<u64> = sides.iter().map(|s| s.counts.iter().sum()).collect();
    if bins == 0 || totals.iter().all(|t| *t == 0) {
        let _ = write!(
            out,
            r#"<text class="empty" x="{LEFT}" y="{:.1}">no values yet</text></svg></figure>"#,
            H / 2.0
        );
        return out;
    }
    let share = |s: usize, b: usize| match totals[s] {
        0 => 0.0,
        t => sides[s].counts.get(b).copied().unwrap_or(0) as f64 / t as f64,
    };
    let max = (0..sides.len())
        .flat_map(|s| (0..bins).map(move |b| (s, b)))
        .map(|(s, b)| share(s, b))
        .fold(0.0f64, f64::max);
    let top = y_top(max, Unit::Percent);
    let (plot_bottom, plot_right) = (H - BOTTOM, W - RIGHT);
    let sx = Scale::new((0.0, bins as f64), (LEFT, plot_right));
    let sy = Scale::new((0.0, top), (plot_bottom, TOP));
    y_grid(&mut out, &sy, top, plot_right, Unit::Percent);
    // about six labelled edges
    let every = bins.div_ceil(5).max(1);
    for (i, e) in edges.iter().enumerate() {
        if i % every != 0 && i != bins {
            continue;
        }
        let x = sx.at(i as f64);
        let _ = write!(
            out,
            r#"<line class="tickmark" x1="{x:.1}" x2="{x:.1}" y1="{plot_bottom}" y2="{yb:.1}"/><text class="tick" x="{x:.1}" y="{yl:.1}" text-anchor="middle">{l}</text>"#,
            yb = plot_bottom + 5.0,
            yl = plot_bottom + 18.0,
            l = esc(&Unit::Number.format(*e)),
        );
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{plot_bottom}"/><line class="axis" x1="{LEFT}" x2="{plot_right}" y1="{plot_bottom}" y2="{plot_bottom}"/><text class="label" transform="translate(14 {ym:.1}) rotate(-90)" text-anchor="middle">share of rows</text><text class="label" x="{xm:.1}" y="{xy:.1}" text-anchor="middle">{xl}</text>"#,
        ym = (TOP + plot_bottom) / 2.0,
        xm = (LEFT + plot_right) / 2.0,
        xy = plot_bottom + 34.0,
        xl = esc(x_label),
    );
    let slot = (sx.at(1.0) - sx.at(0.0)) / (sides.len().max(1) as f64 + 0.5);
    for (s, side) in sides.iter().enumerate() {
        for b in 0..bins {
            let y = share(s, b);
            let n = side.counts.get(b).copied().unwrap_or(0);
            let (x, top_y) = (sx.at(b as f64) + slot * (0.25 + s as f64), sy.at(y));
            let _ = write!(
                out,
                r#"<rect class="bar s{c}" data-series="{name}" data-bin="{b}" data-count="{n}" data-y="{y}" x="{x:.1}" y="{top_y:.1}" width="{w:.1}" height="{h:.1}"><title>{name}: {n} rows ({p}) in [{lo}, {hi})</title></rect>"#,
                c = s % 8,
                name = esc(side.name),
                w = slot,
                h = (plot_bottom - top_y).max(0.0),
                p = esc(&Unit::Percent.format(y)),
                lo = esc(&Unit::Number.format(edges[b])),
                hi = esc(&Unit::Number.format(edges[b + 1])),
            );
        }
    }
    let names: Vec<String> = sides
        .iter()
        .zip(&totals)
        .map(|(s, t)| format!("{} ({t} rows)", s.name))
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    legend(&mut out, &names, H - 10.0);
    out.push_str("</svg></figure>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_are_shares_of_each_sides_rows_with_axes_and_legend() {
        let svg = histogram(
            "h-x",
            "x <reference> and window",
            "x",
            &[0.0, 1.0, 2.0],
            &[
                Side {
                    name: "reference",
                    counts: &[3, 1],
                },
                Side {
                    name: "window",
                    counts: &[0, 2],
                },
            ],
        );
        assert!(svg.contains("x &lt;reference&gt; and window"), "{svg}");
        assert!(
            svg.contains(r#"data-series="reference" data-bin="0" data-count="3" data-y="0.75""#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"data-series="window" data-bin="1" data-count="2" data-y="1""#),
            "{svg}"
        );
        assert!(svg.contains(">reference (4 rows)</text>") && svg.contains(">window (2 rows)</text>"));
        assert!(svg.contains(">share of rows</text>") && svg.contains(">100%</text>"));
        // a full bar reaches the top of the plot
        assert!(svg.contains(&format!(r#"y="{TOP:.1}""#)), "{svg}");
        let empty = histogram(
            "h-y",
            "y",
            "y",
            &[0.0, 1.0],
            &[Side {
                name: "a",
                counts: &[0],
            }],
        );
        assert!(empty.contains("no values yet"));
    }
}
