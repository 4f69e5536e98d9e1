//! Draws the SVG plots of `docs/benchmarks.md` and `docs/sticky.md`.
//!
//! ```text
//! cargo run --release -p abroute-benches --bin plots -- [CRITERION_DIR] [OUT_DIR]
//!     [--bench-options "--warm-up-time 1 --measurement-time 2"] [--machine "…"]
//! ```
//!
//! - `sticky_disruption.svg`: for the 17 changes of the disruption report, the fraction of users
//!   abroute moves, the contiguous-range baseline (GrowthBook, TensorZero), TV and `1 − J_P`.
//!   Computed here, exactly and deterministically ([`abroute_benches::disruption`]); no timing.
//! - `sticky_lookup.svg`, `sticky_build.svg`, `pick.svg`: criterion medians
//!   (`<group>/<impl>/<n>/new/estimates.json`, `median.point_estimate`) of the `sticky`,
//!   `sticky_build` and `pick` groups. A group with no data is skipped with a message.
//! - `scale.svg`: the `scale` group's load time and one upsert's cost against the number of
//!   routers loaded, beside the copy-per-change baseline's upsert.
//!
//! `CRITERION_DIR` defaults to `$CARGO_TARGET_DIR/criterion`, else `target/criterion`;
//! `OUT_DIR` to `docs/plots`. The timing plots say when their data was written (the
//! `estimates.json` modification times, UTC), the command that ran them (`cargo bench -p
//! abroute-benches --bench <bench> -- <bench options>`, the options as given here) and the
//! machine (`--machine`, else the CPU model and count from `/proc/cpuinfo`).

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use abroute::sticky::STICKY_SLOTS;
use abroute_benches::disruption::{Exact, suite};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// The bench options of the documented runs.
const DEFAULT_BENCH_OPTIONS: &str = "--warm-up-time 1 --measurement-time 2";

const FONT: &str = "sans-serif";
const INK: RGBColor = RGBColor(0x24, 0x29, 0x2f);
const GRID: RGBColor = RGBColor(0xd0, 0xd7, 0xde);
const LIGHT_GRID: RGBColor = RGBColor(0xee, 0xf1, 0xf4);
const BLUE: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
const ORANGE: RGBColor = RGBColor(0xe6, 0x7e, 0x22);
const RED: RGBColor = RGBColor(0xc0, 0x39, 0x2b);
const GREEN: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
const PURPLE: RGBColor = RGBColor(0x8e, 0x44, 0xad);
const GRAY: RGBColor = RGBColor(0x7f, 0x7f, 0x7f);
const MUTED: RGBColor = RGBColor(0x57, 0x60, 0x6a);
const BROWN: RGBColor = RGBColor(0x8c, 0x56, 0x4b);

struct Args {
    criterion: PathBuf,
    out: PathBuf,
    bench_options: String,
    machine: String,
}

fn usage() -> &'static str {
    "usage: plots [CRITERION_DIR] [OUT_DIR] [--bench-options OPTS] [--machine TEXT]"
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut positional = Vec::new();
    let mut bench_options = DEFAULT_BENCH_OPTIONS.to_owned();
    let mut machine = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench-options" => {
                bench_options = args.next().ok_or("--bench-options needs a value")?;
            }
            "--machine" => machine = Some(args.next().ok_or("--machine needs a value")?),
            "-h" | "--help" => return Err(usage().to_owned()),
            s if s.starts_with("--") => return Err(format!("unknown option {s}\n{}", usage())),
            _ => positional.push(PathBuf::from(a)),
        }
    }
    if positional.len() > 2 {
        return Err(usage().to_owned());
    }
    let mut positional = positional.into_iter();
    let criterion = positional.next().unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from("target"), PathBuf::from)
            .join("criterion")
    });
    let out = positional
        .next()
        .unwrap_or_else(|| PathBuf::from("docs/plots"));
    Ok(Args {
        criterion,
        out,
        bench_options,
        machine: machine.unwrap_or_else(machine_description),
    })
}

/// `AMD EPYC, 2 CPUs` from `/proc/cpuinfo` (or "unknown machine").
fn machine_description() -> String {
    let Ok(info) = fs::read_to_string("/proc/cpuinfo") else {
        return "unknown machine".to_owned();
    };
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim());
    let cpus = info.lines().filter(|l| l.starts_with("processor")).count();
    format!("{model}, {cpus} CPUs")
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = fs::create_dir_all(&args.out) {
        eprintln!("cannot create {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    println!("criterion data: {}", args.criterion.display());
    let mut failed = false;
    let mut report = |name: &str, r: Result<Option<PathBuf>>| match r {
        Ok(Some(path)) => println!("wrote {}", path.display()),
        Ok(None) => {}
        Err(e) => {
            eprintln!("{name}: {e}");
            failed = true;
        }
    };
    report("sticky_disruption", plot_disruption(&args.out).map(Some));
    report("sticky_lookup", plot_sticky_lookup(&args));
    report("sticky_build", plot_sticky_build(&args));
    report("pick", plot_pick(&args));
    report("scale", plot_scale(&args));
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

// ---------------------------------------------------------------------------------------------
// Layout shared by every plot: a white page, a title and a subtitle above the chart, footnote
// lines below it.

const WIDTH: u32 = 960;
const HEADER: u32 = 64;

fn text_style(size: u32, color: RGBColor) -> TextStyle<'static> {
    // The SVG backend writes `font-size = size / 1.24`: ask for what should come out in px.
    (FONT, f64::from(size) * 1.24).into_font().color(&color)
}

/// Draws the page, title, subtitle and footnotes; returns the area left for the chart.
fn page<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    subtitle: &str,
    footnotes: &[String],
) -> Result<DrawingArea<SVGBackend<'a>, Shift>> {
    root.fill(&WHITE)?;
    let (w, h) = root.dim_in_pixel();
    let footer = 14 + 18 * footnotes.len() as u32;
    let (header, rest) = root.split_vertically(HEADER);
    let (chart, foot) = rest.split_vertically(h - HEADER - footer);
    let center = Pos::new(HPos::Center, VPos::Top);
    header.draw(&Text::new(
        title.to_owned(),
        ((w / 2) as i32, 10),
        (FONT, 19.0 * 1.24, FontStyle::Bold)
            .into_font()
            .color(&INK)
            .pos(center),
    ))?;
    header.draw(&Text::new(
        subtitle.to_owned(),
        ((w / 2) as i32, 38),
        text_style(14, INK).pos(center),
    ))?;
    for (i, line) in footnotes.iter().enumerate() {
        foot.draw(&Text::new(
            line.clone(),
            (16, 4 + 18 * i as i32),
            text_style(12, MUTED).pos(Pos::new(HPos::Left, VPos::Top)),
        ))?;
    }
    Ok(chart)
}

/// Human time for an axis label or a table: `0.98 ns`, `5.24 ns`, `1.23 µs`, `40.4 ms`.
fn fmt_ns(ns: f64) -> String {
    let (v, unit) = if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let digits = if v >= 100.0 {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{s} {unit}")
}

/// `65,536`.
fn fmt_thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 1-2-5 points of each decade from below `lo` to above `hi` (log axes' ticks).
fn ticks_125(lo: f64, hi: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut decade = 10f64.powf(lo.log10().floor());
    while decade <= hi {
        for m in [1.0, 2.0, 5.0] {
            let v = decade * m;
            if v >= lo && v <= hi {
                out.push(v);
            }
        }
        decade *= 10.0;
    }
    out
}

/// `2^k` for `2^16` and up, the plain number below.
fn fmt_count(n: f64) -> String {
    let r = n.round() as u64;
    if r >= 1 << 16 && r.is_power_of_two() {
        format!("2^{}", r.trailing_zeros())
    } else {
        r.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Sticky disruption: exact, computed here.

fn plot_disruption(out: &Path) -> Result<PathBuf> {
    let rows: Vec<(&str, Exact)> = suite().into_iter().map(|c| (c.name, c.exact())).collect();
    println!("sticky disruption (exact over all {STICKY_SLOTS} buckets):");
    println!(
        "  {:<32} {:>7} {:>7} {:>8} {:>10}",
        "change", "TV", "1-J_P", "abroute", "contiguous"
    );
    for (name, e) in &rows {
        println!(
            "  {name:<32} {:>7.4} {:>7.4} {:>8.4} {:>10.4}",
            e.tv, e.pminhash, e.abroute, e.contiguous
        );
    }

    let path = out.join("sticky_disruption.svg");
    let n = rows.len();
    // Room above the first change for the legend, so that it covers no bar.
    const LEGEND_ROWS: f64 = 3.0;
    let height = 170 + (38.0 * (n as f64 + LEGEND_ROWS)) as u32;
    let root = SVGBackend::new(&path, (WIDTH, height)).into_drawing_area();
    let area = page(
        &root,
        "Users moved by a change of the split (fraction of all users)",
        &format!(
            "each of the disruption report's {n} changes; lower is better; TV is the least any scheme can move"
        ),
        &[
            format!(
                "Exact, no sampling and no timing: abroute counted over all {} buckets of its table; contiguous ranges in closed form.",
                fmt_thousands(STICKY_SLOTS)
            ),
            "The changes of `--bin disruption` (docs/sticky.md). Drawn by `cargo run --release -p abroute-benches --bin plots`.".to_owned(),
        ],
    )?;

    let top = (n - 1) as f64;
    let y_of = |i: usize| top - i as f64;
    let mut chart = ChartBuilder::on(&area)
        .margin_left(12)
        .margin_right(24)
        .margin_top(4)
        .x_label_area_size(44)
        .y_label_area_size(236)
        .build_cartesian_2d(0f64..0.8, -0.6f64..top + 0.6 + LEGEND_ROWS)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_labels(9)
        .x_max_light_lines(1)
        .light_line_style(LIGHT_GRID)
        .bold_line_style(GRID)
        .axis_style(INK)
        .x_label_formatter(&|x| format!("{x:.1}"))
        .label_style(text_style(13, INK))
        .x_desc("fraction of users that change variant")
        .axis_desc_style(text_style(14, INK))
        .draw()?;
    // The change names, right-aligned left of the axis (the mesh has no labels for a linear
    // axis at chosen points).
    let name_style = text_style(13, INK).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, (name, _)) in rows.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(0.0, y_of(i)));
        root.draw(&Text::new(
            name.to_string(),
            (x - 10, y),
            name_style.clone(),
        ))?;
    }

    let bar = 0.30;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, e))| {
            let y = y_of(i);
            Rectangle::new(
                [(0.0, y + 0.03), (e.abroute, y + 0.03 + bar)],
                BLUE.filled(),
            )
        }))?
        .label("abroute (exact over all buckets)")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], BLUE.filled()));
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, e))| {
            let y = y_of(i);
            Rectangle::new(
                [(0.0, y - 0.03 - bar), (e.contiguous, y - 0.03)],
                ORANGE.filled(),
            )
        }))?
        .label("contiguous ranges in config order (GrowthBook, TensorZero)")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 18, y + 6)], ORANGE.filled()));
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, e))| {
            let y = y_of(i);
            PathElement::new(
                vec![(e.tv, y - 0.42), (e.tv, y + 0.42)],
                INK.stroke_width(3),
            )
        }))?
        .label("TV(p, q): the least any scheme can move")
        .legend(|(x, y)| {
            PathElement::new(vec![(x + 9, y - 8), (x + 9, y + 8)], INK.stroke_width(3))
        });
    chart.draw_series(rows.iter().enumerate().map(|(i, (_, e))| {
        let y = y_of(i);
        Circle::new((e.pminhash, y + 0.03 + bar / 2.0), 5, WHITE.filled())
    }))?;
    chart
        .draw_series(rows.iter().enumerate().map(|(i, (_, e))| {
            let y = y_of(i);
            Circle::new((e.pminhash, y + 0.03 + bar / 2.0), 5, INK.stroke_width(2))
        }))?
        .label("1 − J_P(p, q): the best stateless scheme (P-MinHash)")
        .legend(|(x, y)| {
            EmptyElement::at((x + 9, y))
                + Circle::new((0, 0), 5, WHITE.filled())
                + Circle::new((0, 0), 5, INK.stroke_width(2))
        });
    let value_style = text_style(11, INK).pos(Pos::new(HPos::Left, VPos::Center));
    chart.draw_series(rows.iter().enumerate().flat_map(|(i, (_, e))| {
        let y = y_of(i);
        let right_of = |v: f64, tv: f64, jp: f64| v.max(tv).max(jp) + 0.008;
        [
            Text::new(
                format!("{:.3}", e.abroute),
                (right_of(e.abroute, e.tv, e.pminhash), y + 0.03 + bar / 2.0),
                value_style.clone(),
            ),
            Text::new(
                format!("{:.3}", e.contiguous),
                (right_of(e.contiguous, e.tv, 0.0), y - 0.03 - bar / 2.0),
                value_style.clone(),
            ),
        ]
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .margin(12)
        .label_font(text_style(13, INK))
        .background_style(WHITE.mix(0.92))
        .border_style(GRID)
        .draw()?;
    root.present()?;
    Ok(path.clone())
}

// ---------------------------------------------------------------------------------------------
// Criterion data.

/// One implementation's medians: `(parameter, median ns)`, sorted by parameter.
struct Series {
    id: &'static str,
    label: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// The data of one criterion group, and when it was written.
struct Group {
    series: Vec<Series>,
    first: SystemTime,
    last: SystemTime,
}

/// Reads `<criterion>/<group>/<impl>/<n>/new/estimates.json` for every implementation.
/// `None` (after a message) when the group has no data at all; unreadable files are reported
/// and skipped.
fn load_group(
    criterion: &Path,
    group: &str,
    impls: &[(&'static str, &'static str, RGBColor)],
) -> Option<Group> {
    let dir = criterion.join(group);
    if !dir.is_dir() {
        println!("skipped {group}: no criterion data in {}", dir.display());
        return None;
    }
    let (mut first, mut last) = (None::<SystemTime>, None::<SystemTime>);
    let mut series = Vec::new();
    for &(id, label, color) in impls {
        let mut points = Vec::new();
        let Ok(entries) = fs::read_dir(dir.join(id)) else {
            println!("  {group}/{id}: no data, left out");
            continue;
        };
        for entry in entries.flatten() {
            let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let file = entry.path().join("new").join("estimates.json");
            match read_median(&file) {
                Ok((ns, written)) => {
                    points.push((n as f64, ns));
                    first = Some(first.map_or(written, |f| f.min(written)));
                    last = Some(last.map_or(written, |l| l.max(written)));
                }
                Err(e) => println!("  {}: {e}, left out", file.display()),
            }
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        if !points.is_empty() {
            series.push(Series {
                id,
                label,
                color,
                points,
            });
        }
    }
    match (first, last) {
        (Some(first), Some(last)) if !series.is_empty() => Some(Group {
            series,
            first,
            last,
        }),
        _ => {
            println!("skipped {group}: no estimates in {}", dir.display());
            None
        }
    }
}

/// `median.point_estimate` (ns) of an `estimates.json`, and the file's modification time.
fn read_median(file: &Path) -> Result<(f64, SystemTime)> {
    let text = fs::read_to_string(file)?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let ns = json
        .pointer("/median/point_estimate")
        .and_then(serde_json::Value::as_f64)
        .ok_or("no median.point_estimate")?;
    if !(ns.is_finite() && ns > 0.0) {
        return Err(format!("median {ns} is not a positive time").into());
    }
    Ok((ns, fs::metadata(file)?.modified()?))
}

/// `2026-11-26 15:10` (UTC).
fn fmt_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// `2026-11-26 15:10 to 15:16 UTC` (the date repeated only when it changes).
fn fmt_span(first: SystemTime, last: SystemTime) -> String {
    let (a, b) = (fmt_utc(first), fmt_utc(last));
    match (a.split_once(' '), b.split_once(' ')) {
        (Some((da, ta)), Some((db, tb))) if da == db && ta == tb => format!("{da} {ta} UTC"),
        (Some((da, ta)), Some((db, tb))) if da == db => format!("{da} {ta} to {tb} UTC"),
        _ => format!("{a} to {b} UTC"),
    }
}

fn run_footnotes(args: &Args, bench: &str, group: &Group, what: &str) -> Vec<String> {
    vec![
        format!(
            "Medians of one run of {what}, {}, from:",
            fmt_span(group.first, group.last)
        ),
        format!(
            "    cargo bench -p abroute-benches --bench {bench} -- {}",
            args.bench_options
        ),
        format!(
            "Machine: {}, shared with other work and noisy: absolute times move between runs. Drawn by `--bin plots`.",
            args.machine
        ),
    ]
}

fn print_group(title: &str, group: &Group) {
    println!("{title} ({}):", fmt_span(group.first, group.last));
    for s in &group.series {
        let cells: Vec<String> = s
            .points
            .iter()
            .map(|&(n, ns)| format!("{}: {}", fmt_count(n), fmt_ns(ns)))
            .collect();
        println!("  {:<30} {}", s.id, cells.join(", "));
    }
}

/// A log-log chart of `group`'s series: x the parameter, y the median time. The y axis ends at
/// `headroom` times the largest time, to leave the legend (upper left) room above the lines.
#[allow(clippy::too_many_arguments)]
fn plot_times(
    path: &Path,
    height: u32,
    headroom: f64,
    header: (&str, &str),
    footnotes: &[String],
    x: (&str, &[f64]),
    group: &Group,
) -> Result<()> {
    let (lo, hi) = group
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (y_lo, y_hi) = (lo / 1.6, hi * headroom);
    let (x_desc, x_ticks) = x;
    let (x_lo, x_hi) = (
        x_ticks.first().copied().unwrap_or(1.0) / 1.3,
        x_ticks.last().copied().unwrap_or(10.0) * 1.3,
    );
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    let area = page(&root, header.0, header.1, footnotes)?;
    let mut chart = ChartBuilder::on(&area)
        .margin_left(12)
        .margin_right(28)
        .margin_top(6)
        .x_label_area_size(48)
        .y_label_area_size(78)
        .build_cartesian_2d(
            (x_lo..x_hi).log_scale().with_key_points(x_ticks.to_vec()),
            (y_lo..y_hi)
                .log_scale()
                .with_key_points(ticks_125(y_lo, y_hi)),
        )?;
    chart
        .configure_mesh()
        .bold_line_style(GRID)
        .axis_style(INK)
        .x_label_formatter(&|n| fmt_count(*n))
        .y_label_formatter(&|ns| fmt_ns(*ns))
        .label_style(text_style(13, INK))
        .x_desc(x_desc)
        .y_desc("median time (log scale)")
        .axis_desc_style(text_style(14, INK))
        .draw()?;
    for s in &group.series {
        let width = if s.id == "abroute" { 4 } else { 2 };
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(width),
            ))?
            .label(s.label)
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (22, 0)], color.stroke_width(width))
                    + Circle::new((11, 0), 4, color.filled())
            });
        chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .margin(14)
        .label_font(text_style(13, INK))
        .background_style(WHITE.mix(0.92))
        .border_style(GRID)
        .draw()?;
    root.present()?;
    Ok(())
}

fn plot_scale(args: &Args) -> Result<Option<PathBuf>> {
    let Some(group) = load_group(
        &args.criterion,
        "scale",
        &[
            (
                "load_abroute",
                "abroute: load (replace_all, lazy sticky tables)",
                GREEN,
            ),
            ("upsert_abroute", "abroute: one upsert while loaded", BLUE),
            (
                "upsert_rwlock",
                "RwLock<Arc<HashMap>>: one upsert (copies the map)",
                RED,
            ),
        ],
    ) else {
        return Ok(None);
    };
    print_group("scale", &group);
    let path = args.out.join("scale.svg");
    plot_times(
        &path,
        600,
        8.0,
        (
            "Many routers: load time and one upsert against the routers loaded (log-log)",
            "criterion group `scale`, 3-variant routers; lower is better",
        ),
        &run_footnotes(args, "scale", &group, "criterion group `scale`"),
        (
            "routers loaded (log scale)",
            &[1_000.0, 10_000.0, 100_000.0],
        ),
        &group,
    )?;
    Ok(Some(path))
}

fn plot_sticky_lookup(args: &Args) -> Result<Option<PathBuf>> {
    let Some(group) = load_group(
        &args.criterion,
        "sticky",
        &[
            ("abroute", "abroute StickyTable (XXH3 + table)", BLUE),
            ("xxh3-only", "XXH3 of the key alone (abroute's floor)", GRAY),
            (
                "growthbook-fnv1a32-ranges",
                "GrowthBook-style: FNV-1a 32 + range scan",
                ORANGE,
            ),
            (
                "tensorzero-sha256-scan",
                "TensorZero-style: SHA-256 + cumulative scan",
                RED,
            ),
        ],
    ) else {
        return Ok(None);
    };
    print_group("sticky lookup", &group);
    let path = args.out.join("sticky_lookup.svg");
    plot_times(
        &path,
        600,
        8.0,
        (
            "Sticky lookup of a 36-byte key: median time per lookup (ns, log-log)",
            "criterion group `sticky`, hashing included; lower is better",
        ),
        &run_footnotes(args, "sticky", &group, "criterion group `sticky`"),
        (
            "variants in the route (log scale)",
            &[2.0, 3.0, 16.0, 256.0, 4096.0],
        ),
        &group,
    )?;
    Ok(Some(path))
}

fn plot_sticky_build(args: &Args) -> Result<Option<PathBuf>> {
    let Some(group) = load_group(
        &args.criterion,
        "sticky_build",
        &[("abroute", "StickyTable::new", BLUE)],
    ) else {
        return Ok(None);
    };
    print_group("sticky build", &group);
    let path = args.out.join("sticky_build.svg");
    plot_times(
        &path,
        480,
        1.6,
        (
            "Building a sticky table: median time per StickyTable::new (ms, log-log)",
            "criterion group `sticky_build`; config time, not request time",
        ),
        &run_footnotes(
            args,
            "sticky",
            &group,
            "criterion group `sticky_build`, 10 samples",
        ),
        (
            "variants in the route (log scale)",
            &[2.0, 16.0, 64.0, 256.0, 4096.0],
        ),
        &group,
    )?;
    Ok(Some(path))
}

fn plot_pick(args: &Args) -> Result<Option<PathBuf>> {
    let Some(group) = load_group(
        &args.criterion,
        "pick",
        &[
            ("abroute", "abroute AliasTable", BLUE),
            ("rng", "bare RNG draw (SmallRng next_u64): the floor", GRAY),
            (
                "rand_distr-WeightedAliasIndex",
                "rand_distr WeightedAliasIndex",
                GREEN,
            ),
            (
                "rand-WeightedIndex",
                "rand WeightedIndex (binary search)",
                PURPLE,
            ),
            (
                "linear-scan",
                "linear scan (Portkey, Envoy, Bifrost)",
                ORANGE,
            ),
            ("sha256-scan", "SHA-256 + scan (TensorZero)", BROWN),
        ],
    ) else {
        return Ok(None);
    };
    print_group("pick", &group);
    let path = args.out.join("pick.svg");
    plot_times(
        &path,
        640,
        1.6,
        (
            "One weighted pick: median time per pick (ns, log-log)",
            "criterion group `pick`; same generator and weights for every line; lower is better",
        ),
        &run_footnotes(args, "pick", &group, "criterion group `pick`"),
        (
            "entries in the table (log scale)",
            &[2.0, 3.0, 16.0, 256.0, 4096.0, 65_536.0, 1_048_576.0],
        ),
        &group,
    )?;
    Ok(Some(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats() {
        assert_eq!(fmt_ns(5.24), "5.24 ns");
        assert_eq!(fmt_ns(100.0), "100 ns");
        assert_eq!(fmt_ns(1234.0), "1.23 µs");
        assert_eq!(fmt_ns(40_400_000.0), "40.4 ms");
        assert_eq!(fmt_count(65_536.0), "2^16");
        assert_eq!(fmt_thousands(65_536), "65,536");
        assert_eq!(fmt_thousands(1_048_576), "1,048,576");
        assert_eq!(fmt_thousands(999), "999");
        assert_eq!(fmt_count(4096.0), "4096");
        assert_eq!(ticks_125(3.0, 120.0), vec![5.0, 10.0, 20.0, 50.0, 100.0]);
        let t = UNIX_EPOCH + Duration::from_secs(1_795_705_800); // 2026-11-26 15:10 UTC
        assert_eq!(fmt_utc(t), "2026-11-26 15:10");
        assert_eq!(
            fmt_span(t, t + Duration::from_secs(360)),
            "2026-11-26 15:10 to 15:16 UTC"
        );
    }
}
