//! Writes the conversion benchmark corpus, made entirely in code and deterministic (same bytes on
//! every run): three 12 MP phone-like JPEGs (one upright, one with EXIF orientation 6, one with
//! orientation 3), a 2560x1600 PNG screenshot, a 10-page PDF of scanned receipts (embedded JPEGs)
//! and 16x16 JPEG/PNG files used to measure command-line start-up cost.
//!
//! Usage: `corpus [DIR]` (default `target/bench-corpus`).

use anyhow::Context;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use imaging_bench::conversion::corpus::{CORPUS_FILES, CorpusFile};
use lopdf::{Document, Object, Stream, dictionary};
use std::path::{Path, PathBuf};

/// A small deterministic PRNG (xorshift64*), so the corpus is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u32) -> u32 {
        ((self.next() >> 32) % u64::from(n.max(1))) as u32
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Roughly normal noise with standard deviation about `sigma` (sum of uniforms).
    fn noise(&mut self, sigma: f32) -> f32 {
        let sum: f32 = (0..4).map(|_| self.unit()).sum();
        (sum - 2.0) * sigma * 1.73
    }

    fn colour(&mut self) -> [f32; 3] {
        [0, 1, 2].map(|_| 30.0 + self.unit() * 200.0)
    }
}

/// A float RGB canvas drawn on, then quantised to 8 bits.
struct Canvas {
    width: u32,
    height: u32,
    pixels: Vec<[f32; 3]>,
}

impl Canvas {
    fn new(width: u32, height: u32, fill: impl Fn(u32, u32) -> [f32; 3]) -> Self {
        let pixels = (0..height)
            .flat_map(|y| (0..width).map(move |x| (x, y)))
            .map(|(x, y)| fill(x, y))
            .collect();
        Self {
            width,
            height,
            pixels,
        }
    }

    /// Blends `colour` with weight `alpha` (0..1) over the pixel, if inside.
    fn blend(&mut self, x: i64, y: i64, colour: [f32; 3], alpha: f32) {
        if x < 0 || y < 0 || x >= i64::from(self.width) || y >= i64::from(self.height) {
            return;
        }
        let at = y as usize * self.width as usize + x as usize;
        let pixel = &mut self.pixels[at];
        for (c, new) in pixel.iter_mut().zip(colour) {
            *c = *c * (1.0 - alpha) + new * alpha;
        }
    }

    /// A filled ellipse with a soft (1.5 px) edge and a light-to-dark shading across it.
    fn ellipse(&mut self, cx: f32, cy: f32, rx: f32, ry: f32, colour: [f32; 3]) {
        let (x0, x1) = ((cx - rx - 2.0) as i64, (cx + rx + 2.0) as i64);
        let (y0, y1) = ((cy - ry - 2.0) as i64, (cy + ry + 2.0) as i64);
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (dx, dy) = ((x as f32 - cx) / rx, (y as f32 - cy) / ry);
                let d = (dx * dx + dy * dy).sqrt();
                let edge = ((1.0 - d) * rx.min(ry) / 1.5).clamp(0.0, 1.0);
                if edge > 0.0 {
                    let shade = 1.15 - 0.3 * (dx + dy + 2.0) / 4.0;
                    self.blend(x, y, colour.map(|c| c * shade), edge);
                }
            }
        }
    }

    /// A filled axis-aligned rectangle, `alpha` opaque.
    fn rect(&mut self, x: i64, y: i64, w: i64, h: i64, colour: [f32; 3], alpha: f32) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.blend(xx, yy, colour, alpha);
            }
        }
    }

    /// A straight stroke of the given thickness from `(x0, y0)` to `(x1, y1)`.
    fn stroke(&mut self, from: (f32, f32), to: (f32, f32), thickness: f32, colour: [f32; 3]) {
        let steps = ((to.0 - from.0).abs().max((to.1 - from.1).abs()) * 2.0).max(1.0) as u32;
        let r = (thickness / 2.0).max(0.5);
        for i in 0..=steps {
            let t = i as f32 / steps as f32;
            let (x, y) = (from.0 + (to.0 - from.0) * t, from.1 + (to.1 - from.1) * t);
            let reach = r.ceil() as i64 + 1;
            for dy in -reach..=reach {
                for dx in -reach..=reach {
                    let (px, py) = (x as i64 + dx, y as i64 + dy);
                    let d = ((px as f32 - x).powi(2) + (py as f32 - y).powi(2)).sqrt();
                    let cover = (r + 0.5 - d).clamp(0.0, 1.0);
                    if cover > 0.0 {
                        self.blend(px, py, colour, cover * 0.8);
                    }
                }
            }
        }
    }

    /// A line of text-like glyphs (2 to 4 strokes in a cell each), with word gaps.
    fn text_line(&mut self, rng: &mut Rng, x: f32, y: f32, cell: f32, chars: u32, ink: [f32; 3]) {
        let (w, h) = (cell * 0.7, cell);
        let thickness = (cell / 9.0).max(1.0);
        for i in 0..chars {
            if rng.below(6) == 0 {
                continue; // a space
            }
            let left = x + i as f32 * cell * 0.8;
            let points = [
                (left, y),
                (left + w, y),
                (left, y + h / 2.0),
                (left + w, y + h / 2.0),
                (left, y + h),
                (left + w, y + h),
                (left + w / 2.0, y),
                (left + w / 2.0, y + h),
            ];
            for _ in 0..2 + rng.below(3) {
                let a = points[rng.below(8) as usize];
                let b = points[rng.below(8) as usize];
                self.stroke(a, b, thickness, ink);
            }
        }
    }

    fn into_rgb(self, rng: &mut Rng, noise: f32) -> RgbImage {
        let mut raw = Vec::with_capacity(self.pixels.len() * 3);
        for pixel in self.pixels {
            let luma = rng.noise(noise);
            for c in pixel {
                let value = c + luma + rng.noise(noise * 0.35);
                raw.push(value.round().clamp(0.0, 255.0) as u8);
            }
        }
        RgbImage::from_raw(self.width, self.height, raw).unwrap_or_default()
    }
}

/// A photo of a receipt on a table: a lit gradient background with wood-like bands, objects,
/// a paper receipt with rows of text, vignetting and sensor-like noise.
fn photo(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = Rng(seed | 1);
    let base = rng.colour();
    let phase = rng.unit() * 6.0;
    let (w, h) = (width as f32, height as f32);
    let mut canvas = Canvas::new(width, height, |x, y| {
        let (u, v) = (x as f32 / w, y as f32 / h);
        let grain = (u * 40.0 + (v * 7.0 + phase).sin() * 2.5).sin() * 14.0
            + (u * 230.0 + v * 3.0).sin() * 4.0;
        let light = 0.75 + 0.35 * (1.0 - v) - 0.2 * (u - 0.4).abs();
        base.map(|c| c * light + grain)
    });
    for _ in 0..14 {
        let (cx, cy) = (rng.unit() * w, rng.unit() * h);
        let (rx, ry) = (40.0 + rng.unit() * w * 0.12, 40.0 + rng.unit() * h * 0.12);
        let colour = rng.colour();
        if rng.below(2) == 0 {
            canvas.ellipse(cx, cy, rx, ry, colour);
        } else {
            canvas.rect(cx as i64, cy as i64, rx as i64, ry as i64, colour, 0.9);
        }
    }
    // The receipt: off-white paper with a soft shadow, a header and rows of text.
    let (pw, ph) = ((w * 0.38) as i64, (h * 0.86) as i64);
    let (px, py) = ((w * 0.31) as i64, (h * 0.07) as i64);
    canvas.rect(px + 25, py + 30, pw, ph, [20.0, 20.0, 25.0], 0.35);
    canvas.rect(px, py, pw, ph, [238.0, 236.0, 228.0], 1.0);
    let cell = (h / 70.0).max(6.0);
    let ink = [35.0, 35.0, 45.0];
    let mut row = py as f32 + cell * 2.0;
    canvas.text_line(&mut rng, px as f32 + cell * 3.0, row, cell * 1.8, 9, ink);
    row += cell * 4.0;
    while row < (py + ph) as f32 - cell * 3.0 {
        let chars = 8 + rng.below((pw as f32 / cell / 0.8 - 14.0).max(1.0) as u32);
        canvas.text_line(&mut rng, px as f32 + cell * 1.5, row, cell, chars, ink);
        // Prices, right-aligned.
        let right = (px + pw) as f32 - cell * 6.0;
        canvas.text_line(&mut rng, right, row, cell, 5, ink);
        row += cell * 1.9;
    }
    // Vignetting.
    let (cx, cy) = (w / 2.0, h / 2.0);
    let reach = (cx * cx + cy * cy).sqrt();
    for y in 0..height {
        for x in 0..width {
            let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt() / reach;
            let at = (y * width + x) as usize;
            let factor = 1.0 - 0.3 * d * d;
            canvas.pixels[at] = canvas.pixels[at].map(|c| c * factor);
        }
    }
    canvas.into_rgb(&mut rng, 3.2)
}

/// A desktop screenshot: flat colours, a title bar, a sidebar, cards, buttons and crisp text.
fn screenshot(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = Rng(seed | 1);
    let mut canvas = Canvas::new(width, height, |_, _| [246.0, 247.0, 250.0]);
    let (w, h) = (i64::from(width), i64::from(height));
    canvas.rect(0, 0, w, 56, [32.0, 56.0, 110.0], 1.0);
    canvas.text_line(&mut rng, 24.0, 18.0, 20.0, 18, [250.0, 250.0, 250.0]);
    canvas.rect(0, 56, 300, h - 56, [228.0, 231.0, 238.0], 1.0);
    for i in 0..24 {
        let y = 80.0 + i as f32 * 44.0;
        let words = 10 + rng.below(10);
        canvas.text_line(&mut rng, 28.0, y, 14.0, words, [60.0, 64.0, 80.0]);
    }
    for card in 0..6 {
        let (cx, cy) = (340 + (card % 3) * 735, 96 + (card / 3) * 740);
        canvas.rect(cx + 4, cy + 4, 700, 700, [200.0, 203.0, 210.0], 1.0);
        canvas.rect(cx, cy, 700, 700, [255.0, 255.0, 255.0], 1.0);
        canvas.rect(cx, cy, 700, 180, rng.colour(), 1.0);
        canvas.text_line(
            &mut rng,
            cx as f32 + 24.0,
            cy as f32 + 210.0,
            22.0,
            22,
            [20.0; 3],
        );
        for line in 0..14 {
            let y = cy as f32 + 260.0 + line as f32 * 26.0;
            let chars = 20 + rng.below(28);
            canvas.text_line(&mut rng, cx as f32 + 24.0, y, 13.0, chars, [80.0; 3]);
        }
        canvas.rect(cx + 24, cy + 640, 160, 40, [37.0, 99.0, 235.0], 1.0);
        canvas.text_line(
            &mut rng,
            cx as f32 + 44.0,
            cy as f32 + 652.0,
            14.0,
            8,
            [255.0; 3],
        );
    }
    canvas.into_rgb(&mut rng, 0.0)
}

fn jpeg_bytes(image: &RgbImage, quality: u8) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality).write_image(
        image.as_raw(),
        image.width(),
        image.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

fn png_bytes(image: &RgbImage) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(
        image.as_raw(),
        image.width(),
        image.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

/// `jpeg` with an EXIF orientation, as the shared fixtures make it.
fn with_orientation(jpeg: &[u8], orientation: u16) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(jpeg.len() >= 2, "JPEG too short");
    Ok(imaging_e2e::fixtures::with_orientation(jpeg, orientation))
}

/// A PDF of `pages` A4 pages, each showing a scanned receipt (a 1240x1754 JPEG, 150 dpi) and a
/// line of text.
fn receipts_pdf(pages: u32) -> anyhow::Result<Vec<u8>> {
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type1",
        "BaseFont" => "Helvetica",
    });
    let mut kids = Vec::new();
    for n in 0..pages {
        let scan = photo(1240, 1754, 1000 + u64::from(n));
        let jpeg = jpeg_bytes(&scan, 85)?;
        let image_id = doc.add_object(
            Stream::new(
                dictionary! {
                    "Type" => "XObject",
                    "Subtype" => "Image",
                    "Width" => 1240,
                    "Height" => 1754,
                    "BitsPerComponent" => 8,
                    "ColorSpace" => "DeviceRGB",
                    "Filter" => "DCTDecode",
                },
                jpeg,
            )
            .with_compression(false),
        );
        let content = format!(
            "q 535.3 0 0 757.2 30 42 cm /Im0 Do Q BT /F1 10 Tf 30 810 Td (Receipt {}) Tj ET",
            n + 1
        );
        let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
        let page_id = doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => pages_id,
            "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
            "Resources" => dictionary! {
                "XObject" => dictionary! { "Im0" => image_id },
                "Font" => dictionary! { "F1" => font_id },
            },
            "Contents" => content_id,
        });
        kids.push(Object::Reference(page_id));
    }
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids,
            "Count" => i64::from(pages),
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    let mut out = Vec::new();
    doc.save_to(&mut out)?;
    Ok(out)
}

fn build(file: &CorpusFile) -> anyhow::Result<Vec<u8>> {
    match file.name {
        "photo-upright.jpg" => jpeg_bytes(&photo(4032, 3024, 1), 90),
        "photo-exif6.jpg" => with_orientation(&jpeg_bytes(&photo(4032, 3024, 2), 90)?, 6),
        "photo-exif3.jpg" => with_orientation(&jpeg_bytes(&photo(4032, 3024, 3), 90)?, 3),
        "screenshot.png" => png_bytes(&screenshot(2560, 1600, 4)),
        "receipts-10p.pdf" => receipts_pdf(10),
        "tiny.jpg" => jpeg_bytes(&photo(16, 16, 5), 90),
        "tiny.png" => png_bytes(&photo(16, 16, 5)),
        other => anyhow::bail!("no recipe for corpus file {other}"),
    }
}

fn write_all(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for file in CORPUS_FILES {
        let bytes = build(file)?;
        let path = dir.join(file.name);
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        println!(
            "{:<18} {:>10} bytes  {}",
            file.name,
            bytes.len(),
            file.description
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench-corpus"));
    write_all(&dir)
}
