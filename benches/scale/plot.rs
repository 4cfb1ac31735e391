//! Propagation vs load as an SVG (plotters): p50 and p99 per backend and size against the
//! rate, with the floor measured in the same runs.

use std::path::Path;

use plotters::prelude::*;

/// One measured row, as the plot needs it.
#[derive(Debug, Clone)]
pub struct Point {
    /// e.g. "sqlite M=10000".
    pub series: String,
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub floor_ms: f64,
}

/// Draws `points` into `path`; a failure is reported, not fatal (the figures are printed).
pub fn draw(path: &Path, points: &[Point]) {
    if let Err(e) = try_draw(path, points) {
        eprintln!("could not draw {}: {e}", path.display());
    }
}

fn try_draw(path: &Path, points: &[Point]) -> Result<(), Box<dyn std::error::Error>> {
    if points.is_empty() {
        return Ok(());
    }
    let max_rate = points.iter().map(|p| p.rate).fold(0.0, f64::max) * 1.1;
    let max_ms = points
        .iter()
        .map(|p| p.p99_ms.max(p.floor_ms))
        .fold(0.0, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Propagation (source write answered -> last block final) vs load",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_rate.max(1.0), 0.0..max_ms.max(1.0))?;
    chart
        .configure_mesh()
        .x_desc("changes per second")
        .y_desc("ms")
        .draw()?;
    let mut names: Vec<&str> = points.iter().map(|p| p.series.as_str()).collect();
    names.dedup();
    names.sort();
    names.dedup();
    for (i, name) in names.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut series: Vec<&Point> = points.iter().filter(|p| p.series == *name).collect();
        series.sort_by(|a, b| a.rate.total_cmp(&b.rate));
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|p| (p.rate, p.p50_ms)),
                color.stroke_width(2),
            ))?
            .label(format!("{name} p50"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(
            series
                .iter()
                .map(|p| Circle::new((p.rate, p.p50_ms), 3, color.filled())),
        )?;
        let dashed = color.mix(0.6);
        chart
            .draw_series(LineSeries::new(
                series.iter().map(|p| (p.rate, p.p99_ms)),
                dashed.stroke_width(1),
            ))?
            .label(format!("{name} p99"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], dashed));
    }
    let mut floor: Vec<(f64, f64)> = points.iter().map(|p| (p.rate, p.floor_ms)).collect();
    floor.sort_by(|a, b| a.0.total_cmp(&b.0));
    chart
        .draw_series(floor.iter().map(|&(x, y)| Cross::new((x, y), 4, BLACK)))?
        .label("floor (push + list + write)")
        .legend(|(x, y)| Cross::new((x + 10, y), 4, BLACK));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
