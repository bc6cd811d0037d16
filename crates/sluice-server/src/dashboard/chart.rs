//! Inline SVG, drawn on the server: the chart of a rollout's hosts by
//! version over time (one line per version, from the sampler's samples and
//! the counts of now), a comparison gate's canary against its baseline
//! over time (from its evaluations), and the stacked bar of a component's
//! versions.
//!
//! Only presentation attributes are used (no `style`), so the page's
//! Content-Security-Policy needs no inline styles. Text is escaped here:
//! the templates insert the result as it is.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Colours of versions, largest first; each has at least 3:1 contrast
/// against the white background (WCAG AA for graphics).
pub const PALETTE: [&str; 6] = [
    "#1f5fa8", "#b3541e", "#2e7d32", "#7b3fa0", "#a8326e", "#5c5c5c",
];

/// The colour of slot `slot`; slots past the palette share its last colour.
fn colour(slot: usize) -> &'static str {
    PALETTE[slot.min(PALETTE.len() - 1)]
}

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 28.0;
/// Points drawn per line at most; more samples are thinned evenly.
const MAX_POINTS: usize = 240;

/// Escapes text for SVG/HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// One point in time: seconds since the Unix epoch and hosts per version.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub at: i64,
    pub versions: BTreeMap<String, u64>,
}

/// Keeps at most `MAX_POINTS` points, evenly spread, always the last.
fn thin<T>(points: &[T]) -> Vec<&T> {
    if points.len() <= MAX_POINTS {
        return points.iter().collect();
    }
    let step = points.len() as f64 / (MAX_POINTS - 1) as f64;
    let mut kept: Vec<&T> = (0..MAX_POINTS - 1)
        .map(|i| &points[(i as f64 * step) as usize])
        .collect();
    if let Some(last) = points.last() {
        kept.push(last);
    }
    kept
}

/// A line chart's frame: a grid line with its label at each height of
/// `grid`, and the first and last times under the plot.
fn frame(svg: &mut String, grid: &[(f64, String)], first: i64, last: i64) {
    for (yy, label) in grid {
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#d0d0d0\" stroke-width=\"1\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\" fill=\"#333\">{label}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            yy + 4.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"{LEFT}\" y=\"{:.1}\" font-size=\"12\" fill=\"#333\">{}</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"12\" fill=\"#333\">{}</text>",
        HEIGHT - 8.0,
        escape(&time_label(first)),
        WIDTH - RIGHT,
        HEIGHT - 8.0,
        escape(&time_label(last)),
    );
}

/// The versions in order of their latest counts (largest first).
fn versions_by_size(points: &[&Point]) -> Vec<String> {
    let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
    for point in points {
        for version in point.versions.keys() {
            latest.entry(version).or_insert(0);
        }
    }
    if let Some(last) = points.last() {
        for (version, hosts) in &last.versions {
            latest.insert(version, *hosts);
        }
    }
    let mut versions: Vec<(&str, u64)> = latest.into_iter().collect();
    versions.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    versions.into_iter().map(|(v, _)| v.to_owned()).collect()
}

fn time_label(at: i64) -> String {
    jiff::Timestamp::from_second(at)
        .map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// The line chart of hosts by version over time, with a legend. `points`
/// are in time order.
pub fn versions_over_time(points: &[Point]) -> String {
    let points = thin(points);
    let versions = versions_by_size(&points);
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return "<p class=\"muted\">No samples yet.</p>".to_owned();
    };
    let max = points
        .iter()
        .flat_map(|p| p.versions.values())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1);
    let span = (last.at - first.at).max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |at: i64| LEFT + (at - first.at) as f64 / span * plot_w;
    let y = |hosts: u64| TOP + plot_h - hosts as f64 / max as f64 * plot_h;

    let mut svg = String::new();
    let summary = versions
        .iter()
        .map(|v| format!("{v}: {}", last.versions.get(v).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-labelledby=\"chart-title\">\
         <title id=\"chart-title\">Hosts by version over time; now {}</title>",
        escape(&summary)
    );
    // Axes and the grid: 0, half, max.
    let grid = [0, max / 2, max].map(|hosts| (y(hosts), hosts.to_string()));
    frame(&mut svg, &grid, first.at, last.at);
    for (slot, version) in versions.iter().enumerate() {
        let colour = colour(slot);
        let mut path = String::new();
        for point in &points {
            let hosts = point.versions.get(version).copied().unwrap_or(0);
            let _ = write!(path, "{:.1},{:.1} ", x(point.at), y(hosts));
        }
        if points.len() == 1 {
            // A single sample: a short level line, so that it shows.
            let hosts = last.versions.get(version).copied().unwrap_or(0);
            let _ = write!(path, "{:.1},{:.1}", WIDTH - RIGHT, y(hosts));
        }
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2.5\"><title>{}</title></polyline>",
            path.trim_end(),
            escape(version)
        );
    }
    svg.push_str("</svg><ul class=\"legend\">");
    for (slot, version) in versions.iter().enumerate() {
        let colour = colour(slot);
        let _ = write!(
            svg,
            "<li><svg width=\"14\" height=\"14\" aria-hidden=\"true\"><rect width=\"14\" height=\"14\" fill=\"{colour}\"/></svg> {} <b>{}</b></li>",
            escape(version),
            last.versions.get(version).copied().unwrap_or(0)
        );
    }
    svg.push_str("</ul>");
    svg
}

/// One evaluation of a comparison gate: seconds since the Unix epoch, the
/// canary cohort's aggregate and the baseline's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub at: i64,
    pub canary: f64,
    pub baseline: f64,
}

/// A line of the comparison chart: its name, its colour slot, its value.
type Line = (&'static str, usize, fn(&Comparison) -> f64);

/// The line chart of a comparison gate's canary (its own colour) against
/// its baseline over time, with a legend of the latest values. `points`
/// are in time order; `id` makes the chart's title id unique on a page.
pub fn canary_against_baseline(id: &str, gate: &str, points: &[Comparison]) -> String {
    let points = thin(points);
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return "<p class=\"muted\">Not compared yet.</p>".to_owned();
    };
    let max = points
        .iter()
        .flat_map(|p| [p.canary, p.baseline])
        .fold(0.0_f64, f64::max);
    let max = if max > 0.0 { max } else { 1.0 };
    let span = (last.at - first.at).max(1) as f64;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |at: i64| LEFT + (at - first.at) as f64 / span * plot_w;
    let y = |value: f64| TOP + plot_h - value.max(0.0) / max * plot_h;
    let title_id = format!("compare-{}", escape(id));
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"chart\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-labelledby=\"{title_id}\">\
         <title id=\"{title_id}\">{}: canary against baseline over time; now canary {}, baseline {}</title>",
        escape(gate),
        figure(last.canary),
        figure(last.baseline)
    );
    let grid = [0.0, max / 2.0, max].map(|value| (y(value), figure(value)));
    frame(&mut svg, &grid, first.at, last.at);
    let lines: [Line; 2] = [("baseline", 0, |p| p.baseline), ("canary", 1, |p| p.canary)];
    for (name, slot, value) in lines {
        let mut path = String::new();
        for point in &points {
            let _ = write!(path, "{:.1},{:.1} ", x(point.at), y(value(point)));
        }
        if points.len() == 1 {
            let _ = write!(path, "{:.1},{:.1}", WIDTH - RIGHT, y(value(last)));
        }
        let _ = write!(
            svg,
            "<polyline class=\"{name}\" points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2.5\"><title>{name}</title></polyline>",
            path.trim_end(),
            colour(slot)
        );
    }
    svg.push_str("</svg><ul class=\"legend\">");
    for (name, slot, value) in lines {
        let _ = write!(
            svg,
            "<li><svg width=\"14\" height=\"14\" aria-hidden=\"true\"><rect width=\"14\" height=\"14\" fill=\"{}\"/></svg> {name} <b>{}</b></li>",
            colour(slot),
            figure(value(last))
        );
    }
    svg.push_str("</ul>");
    svg
}

/// A value for an axis or a legend: at most 4 significant digits.
fn figure(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return "0".to_owned();
    }
    let digits = (3 - value.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// A horizontal bar split by share (`(label, percent, slot)`), 100% wide.
pub fn stacked_bar(parts: &[(String, f64, usize)]) -> String {
    let mut svg = String::from(
        "<svg class=\"bar\" viewBox=\"0 0 100 8\" preserveAspectRatio=\"none\" aria-hidden=\"true\">\
         <rect width=\"100\" height=\"8\" fill=\"#e6e6e6\"/>",
    );
    let mut x = 0.0;
    for (label, percent, slot) in parts {
        let colour = colour(*slot);
        let _ = write!(
            svg,
            "<rect x=\"{x:.3}\" width=\"{percent:.3}\" height=\"8\" fill=\"{colour}\"><title>{}</title></rect>",
            escape(label)
        );
        x += percent;
    }
    svg.push_str("</svg>");
    svg
}

/// A progress bar of percents of the whole: `admitted` (light), of which
/// `healthy` (green) and `failed` (red).
pub fn progress_bar(admitted: f64, healthy: f64, failed: f64) -> String {
    let admitted = admitted.clamp(0.0, 100.0);
    let healthy = healthy.clamp(0.0, admitted);
    let failed = failed.clamp(0.0, admitted - healthy);
    format!(
        "<svg class=\"bar\" viewBox=\"0 0 100 8\" preserveAspectRatio=\"none\" role=\"img\" \
         aria-label=\"{admitted:.1}% admitted, {healthy:.1}% healthy, {failed:.1}% failed\">\
         <rect width=\"100\" height=\"8\" fill=\"#e6e6e6\"/>\
         <rect width=\"{admitted:.3}\" height=\"8\" fill=\"#8fb8e6\"/>\
         <rect width=\"{healthy:.3}\" height=\"8\" fill=\"#2e7d32\"/>\
         <rect x=\"{healthy:.3}\" width=\"{failed:.3}\" height=\"8\" fill=\"#b00020\"/></svg>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at: i64, versions: &[(&str, u64)]) -> Point {
        Point {
            at,
            versions: versions
                .iter()
                .map(|(v, n)| ((*v).to_owned(), *n))
                .collect(),
        }
    }

    #[test]
    fn one_line_per_version_scaled_to_the_largest_count() {
        let svg = versions_over_time(&[
            point(0, &[("1.12.6", 100)]),
            point(60, &[("1.12.6", 50), ("17.03.1", 50)]),
            point(120, &[("17.03.1", 100)]),
        ]);
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        // 17.03.1 ends at the top (y = TOP) and started at the bottom.
        assert!(
            svg.contains("points=\"56.0,212.0 382.0,112.0 708.0,12.0\""),
            "{svg}"
        );
        assert!(svg.contains("now 17.03.1: 100, 1.12.6: 0"), "{svg}");
    }

    /// WCAG relative luminance of `#rrggbb`.
    fn luminance(colour: &str) -> f64 {
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&colour[i..i + 2], 16).expect("hex")) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
    }

    #[test]
    fn version_colours_stand_out_from_white_and_the_bar_background() {
        for colour in PALETTE {
            let on_white = 1.05 / (luminance(colour) + 0.05);
            assert!(on_white >= 3.0, "{colour}: {on_white:.2}:1 against white");
            let on_grey = (luminance("#e6e6e6") + 0.05) / (luminance(colour) + 0.05);
            assert!(on_grey >= 3.0, "{colour}: {on_grey:.2}:1 against the bar");
        }
    }

    #[test]
    fn canary_and_baseline_are_two_lines_scaled_to_the_larger() {
        let point = |at, canary, baseline| Comparison {
            at,
            canary,
            baseline,
        };
        let svg = canary_against_baseline(
            "g",
            "restarts <vs> baseline",
            &[point(0, 1.0, 1.0), point(10, 4.0, 2.0)],
        );
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("restarts &lt;vs&gt; baseline: canary against baseline over time; now canary 4, baseline 2"), "{svg}");
        // The canary's last point is at the top (the maximum), the
        // baseline's halfway.
        assert!(
            svg.contains("class=\"canary\" points=\"56.0,162.0 708.0,12.0\""),
            "{svg}"
        );
        assert!(
            svg.contains("class=\"baseline\" points=\"56.0,162.0 708.0,112.0\""),
            "{svg}"
        );
        assert!(
            svg.contains("canary <b>4</b>") && svg.contains("baseline <b>2</b>"),
            "{svg}"
        );
        assert!(canary_against_baseline("g", "g", &[]).contains("Not compared yet"));
        assert_eq!(figure(0.000_123_4), "0.0001234");
        assert_eq!(figure(2.0), "2");
    }

    #[test]
    fn labels_are_escaped() {
        let svg = versions_over_time(&[point(0, &[("<b>", 1)])]);
        assert!(svg.contains("&lt;b&gt;") && !svg.contains("<b><"), "{svg}");
        assert!(versions_over_time(&[]).contains("No samples"));
    }

    #[test]
    fn progress_nests_healthy_and_failed_inside_admitted() {
        let bar = progress_bar(50.0, 30.0, 40.0);
        assert!(bar.contains("<rect width=\"50.000\""), "{bar}");
        assert!(bar.contains("<rect x=\"30.000\" width=\"20.000\""), "{bar}");
    }

    #[test]
    fn many_samples_are_thinned_keeping_the_last() {
        let points: Vec<Point> = (0..1000).map(|i| point(i, &[("v", i as u64)])).collect();
        let kept = thin(&points);
        assert_eq!(kept.len(), MAX_POINTS);
        assert_eq!(kept.last().map(|p| p.at), Some(999));
    }
}
