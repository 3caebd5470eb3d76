//! What the plot draws with: a handful of primitives that both the SVG
//! writer and the pixel painter for PNG implement, so the layout in
//! `plot/mod.rs` is written once and the two files always show the same.
//!
//! Coordinates are pixels from the top-left corner; colours are `#rrggbb`;
//! dash patterns are SVG's `stroke-dasharray` ("7 4": 7 on, 4 off).

/// Where a text's `x` sits: at its start, middle or end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

impl Anchor {
    pub fn svg_name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// A surface the plot is drawn on.
pub trait Canvas {
    /// Connected straight segments through `points`.
    fn polyline(&mut self, points: &[(f64, f64)], color: &str, dash: Option<&str>, stroke_px: f64);
    /// A thin (1 px) straight line, for grids.
    fn line(&mut self, from: (f64, f64), to: (f64, f64), color: &str);
    /// The outline of a rectangle, 1 px wide.
    fn outline(&mut self, left: f64, top: f64, width: f64, height: f64, color: &str);
    /// A filled disc.
    fn dot(&mut self, x: f64, y: f64, radius: f64, color: &str);
    /// One line of text whose baseline is at `y`.
    fn text(&mut self, x: f64, y: f64, anchor: Anchor, size_px: u32, bold: bool, content: &str);
    /// One line of text read bottom to top, centred on (`x`, `y`).
    fn text_up(&mut self, x: f64, y: f64, size_px: u32, content: &str);
}
