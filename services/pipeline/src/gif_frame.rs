//! GIF: the first frame, on the logical screen, stored as a PNG (an animation keeps its first
//! frame). The canvas is checked against the pixel limit from the header before anything is
//! decoded; every frame after the first is walked without being decoded (so a file of countless
//! frames is refused, and a broken one found) under the page limit.

use crate::{Limits, PipelineError};

fn corrupt(err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Corrupt(err.to_string())
}

/// The logical screen (canvas) size, from the header.
pub(crate) fn canvas(bytes: &[u8], limits: &Limits) -> Result<(u32, u32), PipelineError> {
    let screen = bytes
        .get(6..10)
        .ok_or_else(|| corrupt("GIF header too short"))?;
    let width = u32::from(u16::from_le_bytes([screen[0], screen[1]]));
    let height = u32::from(u16::from_le_bytes([screen[2], screen[3]]));
    if width == 0 || height == 0 {
        return Err(corrupt("empty image"));
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(PipelineError::TooManyPixels { width, height });
    }
    if pixels * 4 > limits.max_image_bytes {
        return Err(PipelineError::TooComplex {
            what: "decoded image",
        });
    }
    Ok((width, height))
}

/// Bytes decoding the first frame of a `width` x `height` canvas takes: the canvas as indices
/// and as RGBA, a frame buffer.
pub(crate) fn memory_cost((width, height): (u32, u32)) -> u64 {
    u64::from(width) * u64::from(height) * 9 + (4 << 20)
}

/// The first frame on its canvas.
pub(crate) struct Frame {
    pub width: u32,
    pub height: u32,
    /// One palette index per pixel.
    pub indices: Vec<u8>,
    /// RGB triplets.
    pub palette: Vec<u8>,
    /// The palette index that is transparent, if any pixel is.
    pub transparent: Option<u8>,
}

impl Frame {
    /// RGBA pixels.
    pub(crate) fn rgba(&self) -> Vec<u8> {
        self.indices
            .iter()
            .flat_map(|&i| {
                if Some(i) == self.transparent {
                    return [0, 0, 0, 0];
                }
                let at = usize::from(i) * 3;
                match self.palette.get(at..at + 3) {
                    Some(c) => [c[0], c[1], c[2], 255],
                    None => [0, 0, 0, 255],
                }
            })
            .collect()
    }
}

/// Decodes the first frame (on the canvas; what the frame does not cover is transparent) and
/// walks the rest.
pub(crate) fn first_frame(bytes: &[u8], limits: &Limits) -> Result<Frame, PipelineError> {
    let (width, height) = canvas(bytes, limits)?;
    let mut options = gif::DecodeOptions::new();
    options.set_color_output(gif::ColorOutput::Indexed);
    options.set_memory_limit(gif::MemoryLimit::Bytes(
        std::num::NonZeroU64::new(u64::from(width) * u64::from(height) * 2 + (1 << 20))
            .unwrap_or(std::num::NonZeroU64::MIN),
    ));
    options.check_frame_consistency(true);
    let mut decoder = options.read_info(bytes).map_err(corrupt)?;
    let global = decoder.global_palette().map(<[u8]>::to_vec);
    let frame = decoder
        .read_next_frame()
        .map_err(corrupt)?
        .ok_or_else(|| corrupt("GIF has no frame"))?;
    let palette = frame
        .palette
        .clone()
        .or(global)
        .ok_or_else(|| corrupt("GIF frame without a palette"))?;
    let colours = (palette.len() / 3) as u16;
    let (fx, fy) = (u32::from(frame.left), u32::from(frame.top));
    let (fw, fh) = (u32::from(frame.width), u32::from(frame.height));
    let covers = fx == 0 && fy == 0 && fw >= width && fh >= height;
    // Where the frame does not reach, the canvas is transparent: its own transparent index, or
    // an entry added to the palette for it (a full palette is widened, see `to_png`).
    let mut palette = palette;
    let mut transparent = frame.transparent;
    let fill = match (covers, transparent) {
        (true, _) => 0,
        (false, Some(index)) => index,
        (false, None) if colours < 256 => {
            palette.extend_from_slice(&[0, 0, 0]);
            transparent = Some(colours as u8);
            colours as u8
        }
        (false, None) => return Err(PipelineError::Unsupported("this GIF's first frame")),
    };
    let mut indices = vec![fill; width as usize * height as usize];
    let take = fw.min(width.saturating_sub(fx)) as usize;
    for row in 0..fh.min(height.saturating_sub(fy)) {
        let from = (row * fw) as usize;
        let source = frame
            .buffer
            .get(from..from + take)
            .ok_or_else(|| corrupt("GIF frame shorter than its size"))?;
        let at = ((fy + row) * width + fx) as usize;
        indices[at..at + take].copy_from_slice(source);
    }
    // Every index must name a colour.
    if let Some(&beyond) = indices
        .iter()
        .find(|&&i| usize::from(i) * 3 >= palette.len() && Some(i) != transparent)
    {
        return Err(corrupt(format!("GIF index {beyond} past its palette")));
    }
    walk_rest(bytes, limits)?;
    Ok(Frame {
        width,
        height,
        indices,
        palette,
        transparent,
    })
}

/// Walks every frame without decoding it, counting them under the page limit.
fn walk_rest(bytes: &[u8], limits: &Limits) -> Result<(), PipelineError> {
    let mut options = gif::DecodeOptions::new();
    options.skip_frame_decoding(true);
    let mut decoder = options.read_info(bytes).map_err(corrupt)?;
    let mut frames = 0u32;
    while decoder.read_next_frame().map_err(corrupt)?.is_some() {
        frames += 1;
        if frames > limits.pdf.max_pages {
            return Err(PipelineError::TooComplex { what: "GIF frames" });
        }
        crate::meter::check()?;
    }
    Ok(())
}

/// The first frame as a PNG: indexed with the GIF's palette (and its transparency), 8 bits per
/// pixel; its size.
pub(crate) fn to_png(bytes: &[u8], limits: &Limits) -> Result<(Vec<u8>, u32, u32), PipelineError> {
    let frame = first_frame(bytes, limits)?;
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, frame.width, frame.height);
        encoder.set_color(png::ColorType::Indexed);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_palette(frame.palette.clone());
        if let Some(index) = frame.transparent {
            let mut alpha = vec![255u8; usize::from(index) + 1];
            alpha[usize::from(index)] = 0;
            encoder.set_trns(alpha);
        }
        encoder.set_compression(png::Compression::Balanced);
        let mut writer = encoder.write_header().map_err(corrupt)?;
        writer.write_image_data(&frame.indices).map_err(corrupt)?;
        writer.finish().map_err(corrupt)?;
    }
    Ok((out, frame.width, frame.height))
}
