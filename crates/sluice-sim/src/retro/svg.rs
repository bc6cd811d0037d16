//! The retrospective's chart: hosts by state over time, as one
//! self-contained SVG (presentation attributes only, no script, no external
//! font), stacked areas stepping at each sample.
//!
//! A long rollout has many samples; the chart keeps at most [`COLUMNS`]
//! (the last sample of each column of time), so drawing stays cheap.

use std::fmt::Write as _;

use super::{human, StateSample};

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 64.0;
/// At most this many points per series.
pub const COLUMNS: usize = 600;

/// The states, bottom to top, with their colours (colour-blind safe, and
/// told apart in print by the legend's order).
const STATES: [(&str, &str); 6] = [
    ("healthy", "#1b9e77"),
    ("reverted", "#7570b3"),
    ("instructed", "#e6ab02"),
    ("reverting", "#a6761d"),
    ("failed", "#d95f02"),
    ("waiting", "#d9d9d9"),
];

fn values(sample: &StateSample) -> [u64; 6] {
    let c = &sample.counts;
    [
        c.healthy,
        c.reverted,
        c.instructed,
        c.reverting,
        c.failed,
        c.waiting,
    ]
}

/// The chart of `samples`, `title` as its accessible name.
pub fn chart(samples: &[StateSample], title: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}" font-family="sans-serif" font-size="11">"#,
        escape(title)
    );
    let _ = write!(out, "<title>{}</title>", escape(title));
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        let _ = write!(
            out,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">no samples</text></svg>"##,
            WIDTH / 2.0,
            HEIGHT / 2.0
        );
        return out;
    };
    let span = last.at.duration_since(first.at).as_secs_f64().max(1.0);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    // The last sample of each column.
    let mut points: Vec<(f64, [u64; 6])> = Vec::new();
    let mut column = usize::MAX;
    for sample in samples {
        let t = sample.at.duration_since(first.at).as_secs_f64();
        let c = ((t / span) * (COLUMNS - 1) as f64) as usize;
        let x = LEFT + plot_w * t / span;
        if c == column {
            if let Some(point) = points.last_mut() {
                point.1 = values(sample);
            }
        } else {
            column = c;
            points.push((x, values(sample)));
        }
    }
    let max = points
        .iter()
        .map(|(_, v)| v.iter().sum::<u64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let y = |v: f64| TOP + plot_h - plot_h * v / max;
    let end = LEFT + plot_w;
    // Stacked: series k spans cumulative[k-1] to cumulative[k].
    for (k, (name, colour)) in STATES.iter().enumerate().rev() {
        let top: Vec<(f64, f64)> = points
            .iter()
            .map(|(x, v)| (*x, v[..=k].iter().sum::<u64>() as f64))
            .collect();
        let mut d = format!("M{LEFT:.1},{:.1}", y(0.0));
        for (i, (x, v)) in top.iter().enumerate() {
            let next = top.get(i + 1).map_or(end, |(nx, _)| *nx);
            let _ = write!(d, "L{x:.1},{:.1}L{next:.1},{:.1}", y(*v), y(*v));
        }
        let _ = write!(d, "L{end:.1},{:.1}Z", y(0.0));
        let _ = write!(
            out,
            r#"<path d="{d}" fill="{colour}" stroke="none"><title>{name}</title></path>"#
        );
    }
    // Axes, ticks and labels.
    let _ = write!(
        out,
        r##"<path d="M{LEFT},{TOP}V{:.1}H{end:.1}" fill="none" stroke="#333"/>"##,
        TOP + plot_h
    );
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end" fill="#333">{}</text>"##,
            LEFT - 4.0,
            y(v) + 4.0,
            v.round()
        );
    }
    for i in 0..=4 {
        let t = span * f64::from(i) / 4.0;
        // The ends' labels stay inside the chart.
        let anchor = match i {
            0 => "start",
            4 => "end",
            _ => "middle",
        };
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="{anchor}" fill="#333">+{}</text>"##,
            LEFT + plot_w * f64::from(i) / 4.0,
            TOP + plot_h + 14.0,
            human(t)
        );
    }
    let _ = write!(
        out,
        r##"<text x="{LEFT}" y="{:.1}" fill="#333">from {}</text>"##,
        TOP + plot_h + 28.0,
        first.at
    );
    let mut x = LEFT;
    for (name, colour) in STATES {
        let _ = write!(
            out,
            r##"<rect x="{x:.1}" y="{:.1}" width="10" height="10" fill="{colour}" stroke="#333" stroke-width="0.5"/><text x="{:.1}" y="{:.1}" fill="#333">{name}</text>"##,
            HEIGHT - 18.0,
            x + 14.0,
            HEIGHT - 9.0
        );
        x += 24.0 + 6.5 * name.len() as f64;
    }
    out.push_str("</svg>");
    out
}

/// Text for XML: `&`, `<`, `>`, `"` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}
