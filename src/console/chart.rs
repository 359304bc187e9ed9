//! Server-rendered SVG charts (plotters' SVG backend): lag and rows/s over time.

use plotters::prelude::*;

/// A line chart with a dot per point, as an SVG document. `points` are
/// `(unix ms, value)`; the x axis shows seconds since the first point.
pub fn line_svg(title: &str, unit: &str, points: &[(u64, f64)]) -> String {
    let mut buf = String::new();
    if let Err(e) = draw(&mut buf, title, unit, points) {
        // A chart that cannot be drawn says so in place; the page still renders.
        return format!("<p class=\"muted\">chart unavailable: {e}</p>");
    }
    buf
}

fn draw(
    buf: &mut String,
    title: &str,
    unit: &str,
    points: &[(u64, f64)],
) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::with_string(buf, (620, 220)).into_drawing_area();
    root.fill(&WHITE)?;
    let t0 = points.first().map(|p| p.0).unwrap_or(0);
    let xs: Vec<(f64, f64)> = points
        .iter()
        .map(|(t, v)| ((t.saturating_sub(t0)) as f64 / 1000.0, *v))
        .collect();
    let xmax = xs.last().map(|p| p.0).unwrap_or(0.0).max(10.0);
    let ymax = xs.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(unit)
        .x_labels(8)
        .y_labels(5)
        .light_line_style(RGBColor(235, 235, 235))
        .draw()?;
    let color = RGBColor(31, 111, 178);
    chart.draw_series(LineSeries::new(xs.iter().copied(), color.stroke_width(2)))?;
    chart.draw_series(xs.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_one_dot_per_point() {
        let svg = line_svg("lag", "ms", &[(1_000, 5.0), (3_000, 9.0), (5_000, 2.0)]);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
    }

    #[test]
    fn an_empty_series_still_draws_axes() {
        let svg = line_svg("lag", "ms", &[]);
        assert!(svg.starts_with("<svg") && !svg.contains("<circle"), "{svg}");
    }
}
