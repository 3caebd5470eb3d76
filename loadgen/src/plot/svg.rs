//! The plot as a self-contained SVG document: the [`Canvas`] primitives
//! written as SVG elements.

use std::fmt::Write as _;

use super::canvas::{Anchor, Canvas};

/// An SVG document being written.
#[derive(Debug)]
pub struct Svg {
    out: String,
}

impl Svg {
    /// A white `width` x `height` picture.
    pub fn new(width: f64, height: f64) -> Svg {
        let mut out = String::with_capacity(64 * 1024);
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">"#
        );
        let _ = writeln!(out, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
        Svg { out }
    }

    /// The finished document.
    pub fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

impl Canvas for Svg {
    fn polyline(&mut self, points: &[(f64, f64)], color: &str, dash: Option<&str>, stroke_px: f64) {
        debug_assert!(points.iter().all(|(x, y)| x.is_finite() && y.is_finite()));
        let mut coordinates = String::with_capacity(points.len() * 14);
        for (x, y) in points {
            let _ = write!(coordinates, "{x:.1},{y:.1} ");
        }
        let dash = dash.map(|d| format!(r#" stroke-dasharray="{d}""#)).unwrap_or_default();
        let _ = writeln!(
            self.out,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="{stroke_px}"{dash} stroke-linejoin="round"/>"#,
            coordinates.trim_end()
        );
    }

    fn line(&mut self, (x1, y1): (f64, f64), (x2, y2): (f64, f64), color: &str) {
        let _ = writeln!(
            self.out,
            r#"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="{color}" stroke-width="1"/>"#
        );
    }

    fn outline(&mut self, left: f64, top: f64, width: f64, height: f64, color: &str) {
        let _ = writeln!(
            self.out,
            r#"<rect x="{left:.1}" y="{top:.1}" width="{width:.1}" height="{height:.1}" fill="none" stroke="{color}" stroke-width="1"/>"#
        );
    }

    fn dot(&mut self, x: f64, y: f64, radius: f64, color: &str) {
        let _ = writeln!(self.out, r#"<circle cx="{x:.1}" cy="{y:.1}" r="{radius}" fill="{color}"/>"#);
    }

    fn text(&mut self, x: f64, y: f64, anchor: Anchor, size_px: u32, bold: bool, content: &str) {
        let weight = if bold { "bold" } else { "normal" };
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{}" font-size="{size_px}" font-weight="{weight}">{}</text>"#,
            anchor.svg_name(),
            escape(content)
        );
    }

    fn text_up(&mut self, x: f64, y: f64, size_px: u32, content: &str) {
        let _ = writeln!(
            self.out,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="middle" font-size="{size_px}" transform="rotate(-90 {x:.1} {y:.1})">{}</text>"#,
            escape(content)
        );
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}
