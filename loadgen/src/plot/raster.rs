//! The plot painted into pixels, for a PNG written without any program or
//! library on the machine: round-capped strokes sampled every half pixel,
//! dashes carried along a path as SVG carries them, and text in the 5 x 7
//! font of `plot/font.rs` (doubled at 14 px and above).

use super::canvas::{Anchor, Canvas};
use super::font::{self, ADVANCE, GLYPH_HEIGHT, GLYPH_WIDTH};
use super::png;

/// Largest picture side this painter takes, in pixels (the plot is 1000 x 880).
pub const SIDE_MAX: u32 = 8192;
/// Distance between two samples of a stroke, in pixels: small enough that a
/// 1 px line has no gaps.
const STEP_PX: f64 = 0.5;
/// Font sizes from here up are drawn at twice the font's pixels.
const DOUBLE_FROM_PX: u32 = 14;
/// Colour of a colour string that is not `#rrggbb` (a bug, caught in debug).
const FALLBACK: [u8; 3] = [0x7f, 0x7f, 0x7f];

/// An RGB picture being painted.
#[derive(Debug)]
pub struct Raster {
    width: u32,
    height: u32,
    rgb: Vec<u8>,
}

impl Raster {
    /// A white `width` x `height` picture.
    pub fn new(width: u32, height: u32) -> Raster {
        assert!(width > 0 && height > 0 && width <= SIDE_MAX && height <= SIDE_MAX);
        Raster { width, height, rgb: vec![0xff; width as usize * height as usize * 3] }
    }

    /// The picture as a PNG file.
    pub fn to_png(&self) -> Vec<u8> {
        png::encode_rgb(self.width, self.height, &self.rgb)
    }

    /// The colour at pixel (`x`, `y`).
    #[cfg(test)]
    pub fn at(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Paints one pixel; off-picture pixels are dropped.
    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.rgb[i..i + 3].copy_from_slice(&color);
    }

    /// Paints every pixel whose centre lies within `radius` of (`x`, `y`),
    /// and at least the pixel under the point.
    fn disc(&mut self, x: f64, y: f64, radius: f64, color: [u8; 3]) {
        if !(x.is_finite() && y.is_finite()) {
            return;
        }
        let reach = radius.ceil() as i64;
        let (cx, cy) = (x.floor() as i64, y.floor() as i64);
        self.set(cx, cy, color);
        for py in cy - reach..=cy + reach {
            for px in cx - reach..=cx + reach {
                let (dx, dy) = (px as f64 + 0.5 - x, py as f64 + 0.5 - y);
                if dx * dx + dy * dy <= radius * radius {
                    self.set(px, py, color);
                }
            }
        }
    }

    /// Strokes the path through `points`, `dash` (lengths, on first) carried
    /// from segment to segment.
    fn stroke(&mut self, points: &[(f64, f64)], color: [u8; 3], dash: &[f64], stroke_px: f64) {
        let radius = (stroke_px / 2.0).max(0.5);
        let period: f64 = dash.iter().sum();
        let mut travelled = 0.0;
        for pair in points.windows(2) {
            let ((x1, y1), (x2, y2)) = (pair[0], pair[1]);
            let length = (x2 - x1).hypot(y2 - y1);
            if !length.is_finite() {
                continue;
            }
            let steps = (length / STEP_PX).ceil().max(1.0) as u64;
            for i in 0..=steps {
                let t = i as f64 / steps as f64;
                if period <= 0.0 || dash_is_on(dash, (travelled + t * length) % period) {
                    self.disc(x1 + (x2 - x1) * t, y1 + (y2 - y1) * t, radius, color);
                }
            }
            travelled += length;
        }
    }

    /// Paints `content` in the bitmap font: `along` is the unit step of the
    /// text's direction and `down` of a glyph's rows, so one routine draws
    /// both level and upright text. (`x`, `y`) is the start of the baseline.
    #[allow(clippy::too_many_arguments)]
    fn glyphs(
        &mut self,
        x: f64,
        y: f64,
        along: (i64, i64),
        down: (i64, i64),
        scale: u32,
        bold: bool,
        content: &str,
        color: [u8; 3],
    ) {
        let (x0, y0) = (x.round() as i64, y.round() as i64);
        let scale = i64::from(scale);
        let top = -(i64::from(GLYPH_HEIGHT) * scale);
        for (index, c) in content.chars().enumerate() {
            let rows = font::glyph(c);
            let start = index as i64 * i64::from(ADVANCE) * scale;
            let top = top + i64::from(font::drop_of(c)) * scale;
            for row in 0..GLYPH_HEIGHT {
                for column in 0..GLYPH_WIDTH {
                    if !font::pixel(rows, column, row) {
                        continue;
                    }
                    for sy in 0..scale {
                        for sx in 0..scale + i64::from(bold) {
                            let u = start + i64::from(column) * scale + sx;
                            let v = top + i64::from(row) * scale + sy;
                            self.set(x0 + u * along.0 + v * down.0, y0 + u * along.1 + v * down.1, color);
                        }
                    }
                }
            }
        }
    }
}

/// Width in pixels of `content` drawn at `scale`.
fn text_width(content: &str, scale: u32) -> f64 {
    let count = content.chars().count() as u32;
    (count * ADVANCE).saturating_sub(1) as f64 * f64::from(scale)
}

fn scale_of(size_px: u32) -> u32 {
    if size_px >= DOUBLE_FROM_PX {
        2
    } else {
        1
    }
}

/// Whether `offset` (within one period) falls on a dash rather than a gap.
fn dash_is_on(dash: &[f64], offset: f64) -> bool {
    let mut at = 0.0;
    for (i, length) in dash.iter().enumerate() {
        at += length;
        if offset < at {
            return i % 2 == 0;
        }
    }
    true
}

/// `#rrggbb` as bytes.
fn parse_color(color: &str) -> [u8; 3] {
    let parsed = color.strip_prefix('#').filter(|hex| hex.len() == 6).and_then(|hex| {
        let byte = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
        Some([byte(0)?, byte(2)?, byte(4)?])
    });
    debug_assert!(parsed.is_some(), "colour {color}");
    parsed.unwrap_or(FALLBACK)
}

/// SVG's dash list ("7 4") as numbers; empty (solid) if it does not parse.
fn parse_dash(dash: Option<&str>) -> Vec<f64> {
    let Some(dash) = dash else { return Vec::new() };
    let lengths: Option<Vec<f64>> = dash
        .split([' ', ','])
        .filter(|piece| !piece.is_empty())
        .map(|piece| piece.parse::<f64>().ok().filter(|v| v.is_finite() && *v >= 0.0))
        .collect();
    debug_assert!(lengths.is_some(), "dash {dash}");
    lengths.unwrap_or_default()
}

impl Canvas for Raster {
    fn polyline(&mut self, points: &[(f64, f64)], color: &str, dash: Option<&str>, stroke_px: f64) {
        self.stroke(points, parse_color(color), &parse_dash(dash), stroke_px);
    }

    fn line(&mut self, from: (f64, f64), to: (f64, f64), color: &str) {
        self.stroke(&[from, to], parse_color(color), &[], 1.0);
    }

    fn outline(&mut self, left: f64, top: f64, width: f64, height: f64, color: &str) {
        let (right, bottom) = (left + width, top + height);
        let corners = [(left, top), (right, top), (right, bottom), (left, bottom), (left, top)];
        self.stroke(&corners, parse_color(color), &[], 1.0);
    }

    fn dot(&mut self, x: f64, y: f64, radius: f64, color: &str) {
        self.disc(x, y, radius, parse_color(color));
    }

    fn text(&mut self, x: f64, y: f64, anchor: Anchor, size_px: u32, bold: bool, content: &str) {
        let scale = scale_of(size_px);
        let width = text_width(content, scale);
        let start = match anchor {
            Anchor::Start => x,
            Anchor::Middle => x - width / 2.0,
            Anchor::End => x - width,
        };
        self.glyphs(start, y, (1, 0), (0, 1), scale, bold, content, [0, 0, 0]);
    }

    fn text_up(&mut self, x: f64, y: f64, size_px: u32, content: &str) {
        let scale = scale_of(size_px);
        let width = text_width(content, scale);
        // Rotated a quarter turn anticlockwise: the text runs up, a glyph's
        // rows run right; centred on the point like the SVG's.
        let half_height = f64::from(GLYPH_HEIGHT * scale) / 2.0;
        self.glyphs(x + half_height, y + width / 2.0, (0, -1), (1, 0), scale, false, content, [0, 0, 0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLACK: [u8; 3] = [0, 0, 0];
    const WHITE: [u8; 3] = [0xff; 3];

    fn painted(raster: &Raster) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for y in 0..raster.height {
            for x in 0..raster.width {
                if raster.at(x, y) != WHITE {
                    out.push((x, y));
                }
            }
        }
        out
    }

    #[test]
    fn colours_and_dashes_parse() {
        assert_eq!(parse_color("#1f77b4"), [0x1f, 0x77, 0xb4]);
        assert_eq!(parse_dash(Some("7 4")), vec![7.0, 4.0]);
        assert_eq!(parse_dash(None), Vec::<f64>::new());
        assert!(dash_is_on(&[7.0, 4.0], 0.0) && dash_is_on(&[7.0, 4.0], 6.9));
        assert!(!dash_is_on(&[7.0, 4.0], 7.0) && !dash_is_on(&[7.0, 4.0], 10.9));
    }

    #[test]
    fn a_line_covers_its_pixels_and_no_others() {
        let mut raster = Raster::new(20, 10);
        raster.line((2.0, 4.5), (17.0, 4.5), "#000000");
        let pixels = painted(&raster);
        for x in 2..17 {
            assert!(pixels.contains(&(x, 4)), "{x}");
        }
        assert!(pixels.iter().all(|&(x, y)| y == 4 && (1..=17).contains(&x)), "{pixels:?}");
    }

    #[test]
    fn a_dashed_line_has_gaps_where_the_pattern_says() {
        let mut raster = Raster::new(40, 5);
        raster.polyline(&[(0.0, 2.5), (40.0, 2.5)], "#000000", Some("10 10"), 1.0);
        for x in [1, 8, 21, 28] {
            assert_eq!(raster.at(x, 2), BLACK, "{x}");
        }
        for x in [12, 18, 32, 38] {
            assert_eq!(raster.at(x, 2), WHITE, "{x}");
        }
    }

    #[test]
    fn strokes_off_the_picture_are_clipped() {
        let mut raster = Raster::new(10, 10);
        raster.polyline(&[(-50.0, -50.0), (60.0, 60.0)], "#ff0000", None, 3.0);
        raster.polyline(&[(f64::NAN, 1.0), (f64::INFINITY, 2.0)], "#ff0000", None, 3.0);
        raster.dot(-100.0, 5.0, 3.0, "#ff0000");
        assert_eq!(raster.at(5, 5), [0xff, 0, 0]);
        assert_eq!(raster.at(9, 0), WHITE);
    }

    #[test]
    fn text_lands_where_it_is_anchored() {
        for (anchor, expected_left) in [(Anchor::Start, 10), (Anchor::Middle, 10 - 5), (Anchor::End, 0)] {
            let mut raster = Raster::new(30, 12);
            // "LL" is 11 px wide at scale 1: an L of 5 columns, a gap, 5 more.
            let x = match anchor {
                Anchor::Start => 10.0,
                Anchor::Middle => 10.5,
                Anchor::End => 11.0,
            };
            raster.text(x, 10.0, anchor, 11, false, "LL");
            let pixels = painted(&raster);
            let left = pixels.iter().map(|p| p.0).min().unwrap();
            let right = pixels.iter().map(|p| p.0).max().unwrap();
            let (top, bottom) =
                (pixels.iter().map(|p| p.1).min().unwrap(), pixels.iter().map(|p| p.1).max().unwrap());
            assert_eq!((left, right - left), (expected_left, 10), "{anchor:?}");
            // The baseline is the bottom row: the glyphs sit on y = 10.
            assert_eq!((top, bottom), (3, 9), "{anchor:?}");
        }
    }

    #[test]
    fn tails_hang_below_the_baseline() {
        let mut raster = Raster::new(20, 20);
        raster.text(2.0, 10.0, Anchor::Start, 11, false, "ap");
        let bottom_of = |columns: std::ops::Range<u32>| {
            painted(&raster).iter().filter(|p| columns.contains(&p.0)).map(|p| p.1).max().unwrap()
        };
        assert_eq!(bottom_of(2..7), 9, "a sits on the baseline");
        assert_eq!(bottom_of(8..13), 9 + font::DESCENT, "p's tail hangs below it");
    }

    #[test]
    fn big_text_is_doubled_and_upright_text_runs_up() {
        let mut raster = Raster::new(40, 40);
        raster.text(0.0, 20.0, Anchor::Start, 18, false, "L");
        let pixels = painted(&raster);
        assert_eq!(pixels.len(), 11 * 4, "L has 11 font pixels, each 2 x 2");
        let mut raster = Raster::new(40, 40);
        raster.text_up(20.0, 20.0, 11, "L");
        let pixels = painted(&raster);
        // Upright, the L's long stroke is the bottom row and its foot a column.
        let rows: std::collections::BTreeSet<u32> = pixels.iter().map(|p| p.1).collect();
        let columns: std::collections::BTreeSet<u32> = pixels.iter().map(|p| p.0).collect();
        assert_eq!((rows.len(), columns.len()), (5, 7));
        let bottom = *rows.iter().next_back().unwrap();
        assert_eq!(pixels.iter().filter(|p| p.1 == bottom).count(), 7, "{pixels:?}");
    }
}
