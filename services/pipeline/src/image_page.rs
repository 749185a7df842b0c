//! One PDF page showing a JPEG or PNG. JPEGs are embedded as DCT streams holding the exact
//! uploaded bytes; PNGs are decoded and embedded as Flate-compressed 8-bit RGB on white.
//!
//! The page is upright: the EXIF orientation is applied by the image matrix (`cm`) in the
//! content stream, for all eight orientations, and the MediaBox has the upright aspect. No
//! `/Rotate` key is set.

use crate::header::jpeg_layout;
use crate::inspect::{decode, read_header};
use crate::{Limits, MediaType, PipelineError};
use image::metadata::Orientation;
use lopdf::{Document, Object, ObjectId, Stream, dictionary};

/// Long edge of an image page, in points (A4's long edge).
const PAGE_LONG_EDGE: f32 = 842.0;

fn corrupt(err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Corrupt(err.to_string())
}

/// Adds a page showing the image to `doc` (not yet listed in `parent`'s Kids); returns its ID.
pub(crate) fn image_page(
    doc: &mut Document,
    parent: ObjectId,
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<ObjectId, PipelineError> {
    let (xobject, orientation) = match media {
        MediaType::Jpeg => (jpeg_xobject(bytes)?, read_header(bytes, media, limits)?.1),
        // The PNG's own orientation is applied to its pixels.
        MediaType::Png => (png_xobject(bytes, limits)?, Orientation::NoTransforms),
        // A HEIC's page is the JPEG it is stored as (upright).
        MediaType::Heic => {
            let (jpeg, _, _) = crate::heic::to_jpeg(bytes, limits)?;
            (jpeg_xobject(&jpeg)?, Orientation::NoTransforms)
        }
        MediaType::Gif => {
            let frame = crate::gif_frame::first_frame(bytes, limits)?;
            let rgb = over_white(&frame.rgba(), 4).collect();
            (
                rgb_xobject(rgb, frame.width, frame.height)?,
                Orientation::NoTransforms,
            )
        }
        MediaType::Pdf | MediaType::Webp | MediaType::Tiff => {
            return Err(PipelineError::UnsupportedMediaType);
        }
    };
    let (width, height) = (xobject.1 as f32, xobject.2 as f32);
    let scale = PAGE_LONG_EDGE / width.max(height);
    let (image_w, image_h) = (width * scale, height * scale);
    let (page_w, page_h) = upright(orientation, (image_w, image_h));
    let matrix = placement(orientation, page_w, page_h)
        .map(|n| format!("{n:.3}"))
        .join(" ");
    let content = format!("q {matrix} cm /Im0 Do Q");
    let image_id = doc.add_object(xobject.0);
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
    Ok(doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => parent,
        "MediaBox" => vec![0.into(), 0.into(), Object::Real(page_w), Object::Real(page_h)],
        "Resources" => dictionary! { "XObject" => dictionary! { "Im0" => image_id } },
        "Contents" => content_id,
    }))
}

/// The size of a `width` x `height` image (as stored) once `orientation` is applied: the sides
/// swap for the four orientations that turn it a quarter.
pub(crate) fn upright<T>(orientation: Orientation, (width, height): (T, T)) -> (T, T) {
    let turned = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    if turned {
        (height, width)
    } else {
        (width, height)
    }
}

/// The `cm` matrix that draws the image (the unit square, stored row 0 at the top) upright on a
/// `w` x `h` page, i.e. with the EXIF transform applied.
pub(crate) fn placement(orientation: Orientation, w: f32, h: f32) -> [f32; 6] {
    match orientation {
        Orientation::NoTransforms => [w, 0.0, 0.0, h, 0.0, 0.0],
        Orientation::FlipHorizontal => [-w, 0.0, 0.0, h, w, 0.0],
        Orientation::Rotate180 => [-w, 0.0, 0.0, -h, w, h],
        Orientation::FlipVertical => [w, 0.0, 0.0, -h, 0.0, h],
        Orientation::Rotate90FlipH => [0.0, -h, -w, 0.0, w, h],
        Orientation::Rotate90 => [0.0, -h, w, 0.0, 0.0, h],
        Orientation::Rotate270FlipH => [0.0, h, w, 0.0, 0.0, 0.0],
        Orientation::Rotate270 => [0.0, h, -w, 0.0, w, 0.0],
    }
}

/// An image XObject, with its pixel width and height.
type XObject = (Stream, u32, u32);

/// An image XObject holding the JPEG bytes as they are.
fn jpeg_xobject(bytes: &[u8]) -> Result<XObject, PipelineError> {
    let layout = jpeg_layout(bytes).ok_or_else(|| corrupt("no JPEG frame header"))?;
    let mut dict = dictionary! {
        "Type" => "XObject",
        "Subtype" => "Image",
        "Width" => i64::from(layout.width),
        "Height" => i64::from(layout.height),
        "BitsPerComponent" => 8,
        "Filter" => "DCTDecode",
    };
    match layout.components {
        1 => dict.set("ColorSpace", "DeviceGray"),
        3 => dict.set("ColorSpace", "DeviceRGB"),
        4 => {
            dict.set("ColorSpace", "DeviceCMYK");
            // Adobe writes CMYK JPEGs inverted.
            if layout.adobe {
                dict.set(
                    "Decode",
                    [1, 0, 1, 0, 1, 0, 1, 0].map(Object::Integer).to_vec(),
                );
            }
        }
        n => return Err(corrupt(format!("JPEG with {n} components"))),
    }
    let stream = Stream::new(dict, bytes.to_vec()).with_compression(false);
    Ok((stream, layout.width, layout.height))
}

/// An image XObject with the PNG's pixels (EXIF orientation applied) composited onto white.
fn png_xobject(bytes: &[u8], limits: &Limits) -> Result<XObject, PipelineError> {
    let (mut image, orientation) = decode(bytes, MediaType::Png, limits)?;
    image.apply_orientation(orientation);
    let (width, height) = (image.width(), image.height());
    let rgb = if image.color().has_alpha() {
        composite_on_white(&image.into_rgba8())
    } else {
        image.into_rgb8().into_raw()
    };
    rgb_xobject(rgb, width, height)
}

/// An image XObject of 8-bit RGB pixels, Flate-compressed.
fn rgb_xobject(rgb: Vec<u8>, width: u32, height: u32) -> Result<XObject, PipelineError> {
    let mut stream = Stream::new(
        dictionary! {
            "Type" => "XObject",
            "Subtype" => "Image",
            "Width" => i64::from(width),
            "Height" => i64::from(height),
            "BitsPerComponent" => 8,
            "ColorSpace" => "DeviceRGB",
        },
        rgb,
    );
    stream.compress().map_err(corrupt)?;
    Ok((stream, width, height))
}

/// RGB of the pixels laid over white (PDF image XObjects here carry no alpha).
fn composite_on_white(rgba: &image::RgbaImage) -> Vec<u8> {
    over_white(rgba.as_raw(), 4).collect()
}

/// Samples of `channels` per pixel (the last one alpha) laid over white, alpha dropped.
pub(crate) fn over_white(data: &[u8], channels: usize) -> impl Iterator<Item = u8> + '_ {
    data.chunks_exact(channels).flat_map(move |p| {
        let a = u32::from(p[channels - 1]);
        p[..channels - 1]
            .iter()
            .map(move |&c| ((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the matrix sends a point of the unit square.
    fn apply(m: [f32; 6], (u, v): (f32, f32)) -> (f32, f32) {
        (m[0] * u + m[2] * v + m[4], m[1] * u + m[3] * v + m[5])
    }

    #[test]
    fn every_orientation_fills_the_page_and_puts_the_stored_top_left_where_exif_says() {
        // Stored top-left corner is (0, 1) in image space; where it lands upright, per EXIF.
        let cases = [
            (Orientation::NoTransforms, (0.0, 20.0)),
            (Orientation::FlipHorizontal, (10.0, 20.0)),
            (Orientation::Rotate180, (10.0, 0.0)),
            (Orientation::FlipVertical, (0.0, 0.0)),
            (Orientation::Rotate90FlipH, (0.0, 20.0)),
            (Orientation::Rotate90, (10.0, 20.0)),
            (Orientation::Rotate270FlipH, (10.0, 0.0)),
            (Orientation::Rotate270, (0.0, 0.0)),
        ];
        for (orientation, top_left) in cases {
            let m = placement(orientation, 10.0, 20.0);
            assert_eq!(apply(m, (0.0, 1.0)), top_left, "{orientation:?}");
            let corners = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)].map(|p| apply(m, p));
            for corner in [(0.0, 0.0), (10.0, 0.0), (0.0, 20.0), (10.0, 20.0)] {
                assert!(
                    corners.contains(&corner),
                    "{orientation:?} covers {corner:?}"
                );
            }
        }
    }

    #[test]
    fn an_adobe_cmyk_jpeg_is_embedded_inverted() {
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xEE, 0, 14];
        bytes.extend_from_slice(b"Adobe\0\x64\0\0\0\0\x02");
        bytes.extend_from_slice(&[0xFF, 0xC0, 0, 20, 8, 0, 10, 0, 20, 4]);
        bytes.extend_from_slice(&[1, 0x11, 0, 2, 0x11, 0, 3, 0x11, 0, 4, 0x11, 0]);
        let Ok((stream, 20, 10)) = jpeg_xobject(&bytes) else {
            panic!("not embedded as 20x10");
        };
        let name = |key: &[u8]| stream.dict.get(key).and_then(Object::as_name).ok();
        assert_eq!(name(b"ColorSpace"), Some(&b"DeviceCMYK"[..]));
        assert_eq!(name(b"Filter"), Some(&b"DCTDecode"[..]));
        let decode = stream.dict.get(b"Decode").and_then(Object::as_array).ok();
        assert_eq!(decode.map(Vec::len), Some(8));
        assert_eq!(stream.content, bytes);
    }
}
