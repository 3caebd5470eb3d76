//! A picture of one run: a self-contained SVG with two panels, written by hand
//! so the load generator needs no plotting library.
//!
//! - Latency by percentile: x is the percentile on a "nines" scale (0 %, 90 %,
//!   99 %, 99.9 %, ...), y is latency on a log scale; one line per operation
//!   and a dashed one for all operations. The nines scale gives the tail the
//!   room it deserves: a server that is fast at the median and stalls at
//!   99.9 % shows it at a glance.
//! - Throughput over time: answers per second for each second
//!   of the measured period, with its average, so stalls and throttling show
//!   (the warm-up is not measured).
//!
//! The layout is drawn once, on a [`Canvas`]: [`svg::Svg`] writes it as an
//! SVG document, [`raster::Raster`] paints it into pixels for a PNG, so
//! `--plot run.png` needs no converter, font or library on the machine.

mod canvas;
mod font;
mod png;
mod raster;
mod svg;

use std::io;
use std::path::Path;

use crate::report::{group, CurvePoint, OpSummary, Summary, CURVE_NINES_MAX};
use canvas::{Anchor, Canvas};

/// Picture size in pixels.
const WIDTH_PX: f64 = 1000.0;
const HEIGHT_PX: f64 = 880.0;
/// Plot areas of the two panels; the legends sit to their right.
const LATENCY_FRAME: Frame = Frame { left: 90.0, top: 100.0, width: 690.0, height: 330.0 };
const THROUGHPUT_FRAME: Frame = Frame { left: 90.0, top: 530.0, width: 690.0, height: 280.0 };
/// Seconds up to which each throughput sample also gets a dot.
const DOTS_SECONDS_MAX: usize = 60;
/// Percentile ticks of the latency panel: (nines, label).
const NINES_TICKS: [(f64, &str); 7] = [
    (0.0, "0%"),
    (std::f64::consts::LOG10_2, "50%"),
    (1.0, "90%"),
    (2.0, "99%"),
    (3.0, "99.9%"),
    (4.0, "99.99%"),
    (5.0, "99.999%"),
];

/// A rectangle of the picture holding a plot, in pixels.
#[derive(Clone, Copy, Debug)]
struct Frame {
    left: f64,
    top: f64,
    width: f64,
    height: f64,
}

impl Frame {
    /// Pixel x of a fraction (0 = left edge, 1 = right edge) of the frame.
    fn x(&self, fraction: f64) -> f64 {
        debug_assert!(fraction.is_finite());
        self.left + fraction.clamp(0.0, 1.0) * self.width
    }

    /// Pixel y of a fraction (0 = bottom edge, 1 = top edge) of the frame.
    fn y(&self, fraction: f64) -> f64 {
        debug_assert!(fraction.is_finite());
        self.top + (1.0 - fraction.clamp(0.0, 1.0)) * self.height
    }

    fn right(&self) -> f64 {
        self.left + self.width
    }

    fn bottom(&self) -> f64 {
        self.top + self.height
    }
}

/// The run drawn as an SVG document.
pub fn svg(summary: &Summary, title: &str) -> String {
    let mut canvas = svg::Svg::new(WIDTH_PX, HEIGHT_PX);
    draw(&mut canvas, summary, title);
    canvas.finish()
}

/// The run drawn as a PNG file.
pub fn png(summary: &Summary, title: &str) -> Vec<u8> {
    let mut canvas = raster::Raster::new(WIDTH_PX as u32, HEIGHT_PX as u32);
    draw(&mut canvas, summary, title);
    canvas.to_png()
}

/// Writes the picture to `path`, an SVG or a PNG by its extension.
pub fn write_plot(path: &Path, summary: &Summary, title: &str) -> io::Result<()> {
    let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("svg") => std::fs::write(path, svg(summary, title)),
        Some("png") => std::fs::write(path, png(summary, title)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("plot path {} must end in .svg or .png", path.display()),
        )),
    }
}

fn draw(canvas: &mut dyn Canvas, summary: &Summary, title: &str) {
    canvas.text(WIDTH_PX / 2.0, 30.0, Anchor::Middle, 18, true, title);
    canvas.text(WIDTH_PX / 2.0, 52.0, Anchor::Middle, 12, false, &subtitle(summary));
    latency_panel(canvas, summary);
    throughput_panel(canvas, summary);
}

fn subtitle(summary: &Summary) -> String {
    let s = &summary.settings;
    let rate = if s.rate > 0 { format!(" at {}/s", group(s.rate)) } else { String::new() };
    let checks = match summary.violations {
        0 => "money checks ok".to_string(),
        n => format!("{} MONEY-CHECK VIOLATIONS", group(n)),
    };
    format!(
        "{}, {} loop{rate}, {:.1} s, {} cores, {} conn x {} deep, {} shards: {}/s, {checks}",
        s.scenario,
        s.load_model,
        summary.elapsed_secs,
        s.cores.len(),
        s.connections,
        s.depth,
        s.shards,
        group(summary.ops_per_sec.max(0.0).round() as u64),
    )
}

fn latency_panel(out: &mut dyn Canvas, summary: &Summary) {
    let frame = LATENCY_FRAME;
    out.text(frame.left, frame.top - 14.0, Anchor::Start, 14, true, "Latency by percentile");
    let series: Vec<&OpSummary> =
        summary.ops.iter().chain(std::iter::once(&summary.all)).filter(|op| !op.curve.is_empty()).collect();
    let lowest_us = series.iter().flat_map(|op| &op.curve).map(|p| p.latency_us).min().unwrap_or(1);
    let highest_us = series.iter().flat_map(|op| &op.curve).map(|p| p.latency_us).max().unwrap_or(1000);
    let axis = LogAxis::new(lowest_us, highest_us);

    for (tick_us, major) in axis.ticks() {
        let y = frame.y(axis.fraction(tick_us as f64));
        grid_line(out, frame.left, y, frame.right(), y, major);
        out.text(frame.left - 8.0, y + 4.0, Anchor::End, 11, false, &latency_label(tick_us));
    }
    for (nines, label) in NINES_TICKS {
        let x = frame.x(nines / CURVE_NINES_MAX);
        grid_line(out, x, frame.top, x, frame.bottom(), true);
        out.text(x, frame.bottom() + 18.0, Anchor::Middle, 11, false, label);
    }
    border(out, frame);
    out.text(frame.left + frame.width / 2.0, frame.bottom() + 40.0, Anchor::Middle, 13, false, "percentile");
    y_label(out, frame, "latency (log scale)");

    if series.is_empty() {
        no_data(out, frame, "no answers measured");
        return;
    }
    let mut legend = Vec::with_capacity(series.len());
    for op in &series {
        let (color, dash, stroke_px) = style(op.name);
        let points: Vec<(f64, f64)> = op
            .curve
            .iter()
            .map(|p: &CurvePoint| {
                (frame.x(p.nines / CURVE_NINES_MAX), frame.y(axis.fraction(p.latency_us as f64)))
            })
            .collect();
        out.polyline(&points, color, dash, stroke_px);
        let label = format!("{} (p99 {})", op.name, crate::report::duration(op.latency_us.p99));
        legend.push((label, color, dash, stroke_px));
    }
    draw_legend(out, frame.right() + 16.0, frame.top + 4.0, &legend);
}

fn throughput_panel(out: &mut dyn Canvas, summary: &Summary) {
    let frame = THROUGHPUT_FRAME;
    out.text(frame.left, frame.top - 14.0, Anchor::Start, 14, true, "Throughput over time");
    let seconds = summary.per_second.len().max(1);
    let peak = summary.per_second.iter().copied().max().unwrap_or(0) as f64;
    let average = if summary.ops_per_sec.is_finite() { summary.ops_per_sec.max(0.0) } else { 0.0 };
    // Answers are whole numbers: no step below 1. Headroom keeps the peak off the border.
    let highest = peak.max(average) * 1.05;
    let y_step = nice_step(highest.max(1.0), 5).max(1.0);
    let y_top = (highest / y_step).ceil().max(1.0) * y_step;
    let x_step = nice_step(seconds as f64, 10).max(1.0);

    let mut tick = 0.0;
    while tick <= y_top + y_step / 2.0 {
        let y = frame.y(tick / y_top);
        grid_line(out, frame.left, y, frame.right(), y, true);
        out.text(frame.left - 8.0, y + 4.0, Anchor::End, 11, false, &si(tick));
        tick += y_step;
    }
    let mut tick = 0.0;
    while tick <= seconds as f64 + x_step / 2.0 {
        let x = frame.x(tick / seconds as f64);
        grid_line(out, x, frame.top, x, frame.bottom(), true);
        out.text(x, frame.bottom() + 18.0, Anchor::Middle, 11, false, &format!("{tick}"));
        tick += x_step;
    }
    border(out, frame);
    out.text(
        frame.left + frame.width / 2.0,
        frame.bottom() + 40.0,
        Anchor::Middle,
        13,
        false,
        "second of run",
    );
    y_label(out, frame, "answers per second");

    if summary.per_second.iter().all(|&n| n == 0) {
        no_data(out, frame, "no answers measured");
        return;
    }
    let points: Vec<(f64, f64)> = summary
        .per_second
        .iter()
        .enumerate()
        .map(|(i, &n)| (frame.x((i as f64 + 0.5) / seconds as f64), frame.y(n as f64 / y_top)))
        .collect();
    let (color, _, _) = style("answers");
    out.polyline(&points, color, None, 2.0);
    if points.len() <= DOTS_SECONDS_MAX {
        for &(x, y) in &points {
            out.dot(x, y, 3.0, color);
        }
    }
    let y = frame.y(average / y_top);
    let average_line = [(frame.left, y), (frame.right(), y)];
    out.polyline(&average_line, "#d62728", Some("6 4"), 1.5);
    let legend = [
        ("answers/s, each second".to_string(), color, None, 2.0),
        (format!("average {}/s", group(average.round() as u64)), "#d62728", Some("6 4"), 1.5),
    ];
    draw_legend(out, frame.right() + 16.0, frame.top + 4.0, &legend);
}

/// A log-10 axis covering whole decades from below the lowest to above the
/// highest value.
#[derive(Clone, Copy, Debug)]
struct LogAxis {
    decade_low: i32,
    decade_high: i32,
}

impl LogAxis {
    fn new(lowest: u64, highest: u64) -> LogAxis {
        let decade_low = (lowest.max(1) as f64).log10().floor() as i32;
        let decade_high = ((highest.max(1) as f64).log10().ceil() as i32).max(decade_low + 1);
        assert!(decade_low < decade_high);
        LogAxis { decade_low, decade_high }
    }

    /// Where `value` falls, 0 at the lowest decade and 1 at the highest.
    fn fraction(&self, value: f64) -> f64 {
        let log = value.max(1.0).log10();
        (log - f64::from(self.decade_low)) / f64::from(self.decade_high - self.decade_low)
    }

    /// Tick values and whether each is a decade; 2 and 5 of each decade too
    /// when the axis spans few decades.
    fn ticks(&self) -> Vec<(u64, bool)> {
        let minor = self.decade_high - self.decade_low <= 3;
        let mut ticks = Vec::new();
        for decade in self.decade_low..=self.decade_high {
            let base = 10u64.pow(decade as u32);
            ticks.push((base, true));
            if minor && decade < self.decade_high {
                ticks.push((2 * base, false));
                ticks.push((5 * base, false));
            }
        }
        ticks
    }
}

/// Colour, dash pattern and stroke width of a series; fixed per operation so
/// plots of different runs compare at a glance.
fn style(name: &str) -> (&'static str, Option<&'static str>, f64) {
    match name {
        "grab" => ("#1f77b4", None, 2.0),
        "open" => ("#ff7f0e", None, 2.0),
        "create" => ("#2ca02c", None, 2.0),
        "query" => ("#9467bd", None, 2.0),
        "ping" => ("#8c564b", None, 2.0),
        "hello" => ("#e377c2", None, 2.0),
        "stats" => ("#17becf", None, 2.0),
        "all" => ("#222222", Some("7 4"), 2.5),
        "answers" => ("#1f77b4", None, 2.0),
        _ => ("#7f7f7f", None, 2.0),
    }
}

fn draw_legend(out: &mut dyn Canvas, left: f64, top: f64, entries: &[(String, &str, Option<&str>, f64)]) {
    for (i, (label, color, dash, stroke_px)) in entries.iter().enumerate() {
        let y = top + 8.0 + 20.0 * i as f64;
        out.polyline(&[(left, y), (left + 26.0, y)], color, *dash, *stroke_px);
        out.text(left + 32.0, y + 4.0, Anchor::Start, 12, false, label);
    }
}

fn grid_line(out: &mut dyn Canvas, x1: f64, y1: f64, x2: f64, y2: f64, major: bool) {
    let color = if major { "#d0d0d0" } else { "#ececec" };
    out.line((x1, y1), (x2, y2), color);
}

fn border(out: &mut dyn Canvas, frame: Frame) {
    out.outline(frame.left, frame.top, frame.width, frame.height, "#444444");
}

fn y_label(out: &mut dyn Canvas, frame: Frame, label: &str) {
    out.text_up(frame.left - 62.0, frame.top + frame.height / 2.0, 13, label);
}

fn no_data(out: &mut dyn Canvas, frame: Frame, message: &str) {
    let (x, y) = (frame.left + frame.width / 2.0, frame.top + frame.height / 2.0);
    out.text(x, y, Anchor::Middle, 14, false, message);
}

/// Latency tick label: "1µs", "20µs", "1ms", "50ms", "2s".
fn latency_label(us: u64) -> String {
    match us {
        0..=999 => format!("{us}µs"),
        1_000..=999_999 => format!("{}ms", trim(us as f64 / 1e3)),
        _ => format!("{}s", trim(us as f64 / 1e6)),
    }
}

/// A count with an SI suffix: 0, 500, 20k, 1.5M.
fn si(value: f64) -> String {
    match value.abs() {
        v if v >= 1e9 => format!("{}G", trim(value / 1e9)),
        v if v >= 1e6 => format!("{}M", trim(value / 1e6)),
        v if v >= 1e3 => format!("{}k", trim(value / 1e3)),
        _ => trim(value),
    }
}

/// A number with at most two decimals and no trailing zeros.
fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A round step (1, 2 or 5 times a power of ten) that splits `range` into at
/// most `ticks_max` parts.
fn nice_step(range: f64, ticks_max: u32) -> f64 {
    assert!(range > 0.0 && range.is_finite() && ticks_max > 0);
    let raw = range / f64::from(ticks_max);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    debug_assert!(range / step <= f64::from(ticks_max) + 1e-9);
    step
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::summary;
    use crate::results::{Recorder, RunResult, RunSettings};
    use hongbao_protocol::{Opcode, Status};

    fn run(recorder: Recorder, elapsed_secs: f64) -> Summary {
        let settings = RunSettings {
            scenario: "storm".to_string(),
            server: "127.0.0.1:7700".to_string(),
            load_model: "open".to_string(),
            rate: 200_000,
            cores: vec![0, 1, 2, 3],
            connections: 4,
            depth: 16,
            duration_secs: 30.0,
            warmup_secs: 2.0,
            shards: 4,
        };
        summary(&RunResult { settings, recorder, elapsed_secs })
    }

    /// A busy run: four operations with long tails, 30 seconds with a dip.
    fn sample() -> Summary {
        let mut recorder = Recorder::default();
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for second in 0..30 {
            let answers = if second == 12 { 2_000 } else { 6_000 + (second % 5) * 300 };
            for i in 0..answers {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let (opcode, base_us) = match i % 10 {
                    0 => (Opcode::Create, 120),
                    1..=4 => (Opcode::Grab, 60),
                    5..=8 => (Opcode::Open, 80),
                    _ => (Opcode::Query, 200),
                };
                // Mostly near the base, with a heavy tail up to ~1000x.
                let tail = 1u64 << (seed % 1024).leading_zeros().saturating_sub(54).min(10);
                let latency_us = base_us + seed % base_us * tail;
                let status = if opcode == Opcode::Grab && seed.is_multiple_of(7) {
                    Status::SoldOut
                } else {
                    Status::Ok
                };
                recorder.record(opcode, status, latency_us, second as usize);
            }
        }
        run(recorder, 30.0)
    }

    /// Checks the markup: one <svg> root, balanced tags, finite numbers in
    /// every attribute, and returns the number of polylines.
    fn check(svg: &str) -> usize {
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"), "root");
        assert_eq!(svg.matches("<svg").count(), 1);
        let mut open: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unterminated tag") + start;
            let tag = &rest[start + 1..end];
            rest = &rest[end + 1..];
            for (i, piece) in tag.split('"').enumerate() {
                if i % 2 == 1 {
                    assert!(!piece.contains("NaN") && !piece.contains("inf"), "{tag}");
                    let numeric = piece.chars().all(|c| c.is_ascii_digit() || " ,.-".contains(c));
                    if numeric && !piece.trim().is_empty() {
                        for n in piece.split([' ', ',']).filter(|n| !n.is_empty()) {
                            assert!(n.parse::<f64>().is_ok_and(f64::is_finite), "{n} in {tag}");
                        }
                    }
                } else {
                    assert!(!piece.contains('<'), "{tag}");
                }
            }
            let name = tag.trim_start_matches('/').split_whitespace().next().unwrap_or("");
            if tag.starts_with('/') {
                assert_eq!(open.pop(), Some(name), "closing {name}");
            } else if !tag.ends_with('/') {
                open.push(name);
            }
        }
        assert!(open.is_empty(), "unclosed {open:?}");
        svg.matches("<polyline").count()
    }

    fn has_series(svg: &str, name: &str) -> bool {
        let (color, _, _) = style(name);
        svg.contains(&format!(r#"stroke="{color}""#)) && svg.contains(&format!(">{name} (p99"))
    }

    #[test]
    fn busy_run_draws_every_op() {
        let summary = sample();
        let svg = svg(&summary, "storm <4 shards> & more");
        let polylines = check(&svg);
        for name in ["create", "grab", "open", "query", "all"] {
            assert!(has_series(&svg, name), "{name}");
        }
        // 5 latency curves + their 5 legend keys, throughput + average + 2 keys.
        assert_eq!(polylines, 5 + 5 + 2 + 2);
        assert!(svg.contains("storm &lt;4 shards&gt; &amp; more"));
        assert!(svg.contains(">99.9%<") && svg.contains(">answers per second<"));
    }

    #[test]
    fn one_op_one_second() {
        let mut recorder = Recorder::default();
        recorder.record(Opcode::Grab, Status::Ok, 42, 0);
        let svg = svg(&run(recorder, 1.0), "one");
        assert_eq!(check(&svg), 2 + 2 + 2 + 2);
        assert!(has_series(&svg, "grab") && has_series(&svg, "all"));
        assert!(svg.contains("<circle"));
    }

    #[test]
    fn zero_answers() {
        for elapsed_secs in [0.0, 5.0] {
            let svg = svg(&run(Recorder::default(), elapsed_secs), "empty");
            assert_eq!(check(&svg), 0);
            assert_eq!(svg.matches("no answers measured").count(), 2);
        }
    }

    /// A run at the edges: the largest latency, a zero one, an absurd rate.
    fn extremes() -> Summary {
        let mut recorder = Recorder::default();
        recorder.record(Opcode::Open, Status::Ok, u64::MAX, 0);
        recorder.record(Opcode::Open, Status::Busy, 0, 0);
        recorder.per_second[0] = u64::MAX / 2;
        run(recorder, 1e-9)
    }

    #[test]
    fn huge_latencies_and_rates_stay_on_the_axes() {
        check(&svg(&extremes(), "extremes"));
    }

    #[test]
    fn axis_helpers() {
        let axis = LogAxis::new(40, 3_000);
        assert_eq!((axis.decade_low, axis.decade_high), (1, 4));
        assert_eq!(axis.fraction(10.0), 0.0);
        assert_eq!(axis.fraction(10_000.0), 1.0);
        assert_eq!(LogAxis::new(1, 1).decade_high, 1);
        assert_eq!(latency_label(1_000), "1ms");
        assert_eq!(latency_label(20), "20µs");
        assert_eq!(latency_label(5_000_000), "5s");
        assert_eq!(si(1_500_000.0), "1.5M");
        assert_eq!(si(250_000.0), "250k");
        assert_eq!(si(0.0), "0");
        assert_eq!(nice_step(9_100.0, 5), 2_000.0);
        assert_eq!(nice_step(30.0, 10), 5.0);
        assert_eq!(nice_step(1.0, 10), 0.1);
    }

    /// For looking at the picture: `HONGBAO_PLOT_DIR=/tmp cargo test -p
    /// hongbao-loadgen --lib -- --ignored sample_pictures` writes sample
    /// pictures, each as SVG and PNG.
    #[test]
    #[ignore = "writes files for a person to look at"]
    fn sample_pictures() {
        let dir = std::path::PathBuf::from(std::env::var("HONGBAO_PLOT_DIR").unwrap_or_else(|_| ".".into()));
        let mut recorder = Recorder::default();
        recorder.record(Opcode::Grab, Status::Ok, 42, 0);
        let pictures = [
            ("plot-busy", sample(), "storm: sample run"),
            ("plot-one", run(recorder, 1.0), "one grab"),
            ("plot-empty", run(Recorder::default(), 0.0), "empty"),
        ];
        for (name, summary, title) in pictures {
            for extension in ["svg", "png"] {
                write_plot(&dir.join(format!("{name}.{extension}")), &summary, title).unwrap();
            }
        }
    }

    #[test]
    fn write_plot_by_extension() {
        let dir = std::env::temp_dir().join(format!("hongbao-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let summary = sample();
        let svg_path = dir.join("run.svg");
        write_plot(&svg_path, &summary, "run").unwrap();
        check(&std::fs::read_to_string(&svg_path).unwrap());
        let err = write_plot(&dir.join("run.txt"), &summary, "run").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        // A PNG needs nothing installed, and leaves no SVG beside it.
        let png_path = dir.join("painted.PNG");
        write_plot(&png_path, &summary, "run").unwrap();
        let (width, height, _) = png::decode_rgb(&std::fs::read(&png_path).unwrap()).unwrap();
        assert_eq!((width, height), (WIDTH_PX as u32, HEIGHT_PX as u32));
        assert!(!dir.join("painted.svg").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Decoded picture with a colour lookup by pixel.
    struct Picture {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    }

    impl Picture {
        fn of(file: &[u8]) -> Picture {
            let (width, height, rgb) = png::decode_rgb(file).unwrap();
            Picture { width, height, rgb }
        }

        fn at(&self, x: f64, y: f64) -> String {
            let i = (y as usize * self.width as usize + x as usize) * 3;
            format!("#{:02x}{:02x}{:02x}", self.rgb[i], self.rgb[i + 1], self.rgb[i + 2])
        }

        /// Pixels of `color` in rows `rows`.
        fn count(&self, color: &str, rows: std::ops::Range<u32>) -> usize {
            rows.flat_map(|y| (0..self.width).map(move |x| (x, y)))
                .filter(|&(x, y)| self.at(f64::from(x), f64::from(y)) == color)
                .count()
        }
    }

    /// The painted picture shows what the SVG says: each series' colour, a
    /// dot on every second's throughput, the frames' borders, text in the
    /// title band, and nothing coloured when there were no answers.
    #[test]
    fn the_png_shows_what_the_svg_shows() {
        let summary = sample();
        let picture = Picture::of(&png(&summary, "storm"));
        for name in ["create", "grab", "open", "query", "all", "answers"] {
            let (color, _, _) = style(name);
            assert!(picture.count(color, 0..picture.height) > 100, "{name}: {color}");
        }
        let frame = LATENCY_FRAME;
        assert_eq!(picture.at(frame.left, frame.top), "#444444");
        assert_eq!(picture.at(frame.right(), frame.bottom()), "#444444");
        assert_eq!(picture.at(1.0, 1.0), "#ffffff");
        assert!(picture.count("#000000", 10..60) > 200, "title text");

        let (answers, _, _) = style("answers");
        let seconds = summary.per_second.len() as f64;
        let highest =
            (summary.per_second.iter().copied().max().unwrap() as f64).max(summary.ops_per_sec) * 1.05;
        let y_step = nice_step(highest, 5);
        let y_top = (highest / y_step).ceil() * y_step;
        let t = THROUGHPUT_FRAME;
        for (i, &n) in summary.per_second.iter().enumerate() {
            let (x, y) = (t.x((i as f64 + 0.5) / seconds), t.y(n as f64 / y_top));
            assert_eq!(picture.at(x, y), answers, "second {i}");
        }

        let empty = Picture::of(&png(&run(Recorder::default(), 0.0), "empty"));
        let colored = empty.rgb.chunks_exact(3).filter(|p| p[0] != p[1] || p[1] != p[2]).count();
        assert_eq!(colored, 0, "no series without answers");
        assert_eq!((empty.width, empty.height), (WIDTH_PX as u32, HEIGHT_PX as u32));
    }

    #[test]
    fn extremes_paint_without_panicking() {
        Picture::of(&png(&extremes(), "extremes \u{1F9E7}"));
    }
}
