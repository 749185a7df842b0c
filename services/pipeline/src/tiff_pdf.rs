//! TIFF pages as PDF pages, one for one. CCITT Group 3 and 4 pieces (strips or tiles) are
//! embedded as they are coded, as `CCITTFaxDecode` images with the `/DecodeParms` the TIFF's
//! tags give; JPEG pieces as `DCTDecode` images (the shared tables spliced in front of each
//! piece's scan, the coded data untouched). Each piece is its own image, drawn where it lies on
//! the page, so a page of many strips needs no re-encoding either. Every other page is decoded
//! (the `tiff` crate) and embedded as Flate-compressed samples. Embedded pieces are proven
//! decodable first, as every upload is.
//!
//! The page size comes from the resolution tags (a 204x196 dpi fax page is a letter page);
//! without them, the long edge is 842 pt (A4's) and the pixel aspect is kept. The TIFF
//! orientation is applied as for a photo's EXIF orientation.

use crate::image_page::{over_white, placement, upright};
use crate::tiff_scan::{self, Page};
use crate::{Limits, PipelineError};
use image::metadata::Orientation;
use lopdf::{Dictionary, Document, Object, ObjectId, Stream, dictionary};
use std::io::{Cursor, Write};

/// Long edge of a page without resolution tags, in points (A4's long edge).
const PAGE_LONG_EDGE: f64 = 842.0;

/// The longest side a PDF page may have, in points (ISO 32000-1, Annex C: 200 inches).
const MAX_PAGE_SIDE: f64 = 14_400.0;

fn corrupt(err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Corrupt(err.to_string())
}

/// How a page is embedded.
enum Embedding {
    /// CCITT pieces as they are.
    Fax,
    /// JPEG pieces as they are.
    Jpeg,
    /// Decoded and Flate-compressed.
    Decoded,
}

fn embedding(page: &Page) -> Embedding {
    let bilevel = page.bits == 1 && page.samples == 1 && matches!(page.photometric, 0 | 1);
    match page.compression {
        3 if bilevel && page.t4_options & 2 == 0 => Embedding::Fax,
        4 if bilevel => Embedding::Fax,
        7 if page.bits == 8
            && page.planar == 1
            && matches!((page.samples, page.photometric), (1, 1) | (3, 2) | (3, 6)) =>
        {
            Embedding::Jpeg
        }
        _ => Embedding::Decoded,
    }
}

/// From one scan of the directories: the first page's pixel size, and the bytes converting the
/// TIFF takes at most besides its pages' bytes in the output: the largest page decoded (twice:
/// the decoder's result and the samples made of it) and the Flate stream.
pub(crate) fn header(bytes: &[u8], limits: &Limits) -> Result<(u32, u32, u64), PipelineError> {
    let tiff = tiff_scan::scan(bytes, limits)?;
    let largest = tiff
        .pages
        .iter()
        .map(Page::decoded_bytes)
        .max()
        .unwrap_or(0);
    let first = &tiff.pages[0];
    // Strips copied into the document, the document written out: the file's size each.
    let cost = largest * 3 + bytes.len() as u64 * 3 + (16 << 20);
    Ok((first.width, first.height, cost))
}

/// Adds a page for every TIFF page to `doc` (not yet listed in `parent`'s Kids); returns them.
pub(crate) fn add_pages(
    doc: &mut Document,
    parent: ObjectId,
    bytes: &[u8],
    limits: &Limits,
) -> Result<Vec<ObjectId>, PipelineError> {
    add_scanned_pages(doc, parent, bytes, &tiff_scan::scan(bytes, limits)?, limits)
}

/// [`add_pages`] for a TIFF already scanned.
fn add_scanned_pages(
    doc: &mut Document,
    parent: ObjectId,
    bytes: &[u8],
    tiff: &tiff_scan::Tiff,
    limits: &Limits,
) -> Result<Vec<ObjectId>, PipelineError> {
    let mut decoder = Decoder::new(bytes, limits)?;
    let mut ids = Vec::with_capacity(tiff.pages.len());
    for page in &tiff.pages {
        let images = match embedding(page) {
            Embedding::Fax => {
                let pieces = fax_pieces(bytes, page)?;
                // Group 4 pages are decoded once, which proves them decodable; Group 3 pieces
                // (which the decoder does not read) are checked line by line.
                if page.compression == 4 {
                    decoder.page(page)?;
                } else {
                    for piece in &pieces {
                        check_g3(&piece.stream.content, page, piece.rect)?;
                    }
                }
                pieces
            }
            Embedding::Jpeg => match jpeg_pieces(bytes, page, limits)? {
                Some(pieces) => pieces,
                None => vec![decoded_image(page, decoder.page(page)?)?],
            },
            Embedding::Decoded => vec![decoded_image(page, decoder.page(page)?)?],
        };
        ids.push(add_page(doc, parent, page, images));
        crate::meter::check()?;
    }
    Ok(ids)
}

/// A TIFF made one PDF.
pub(crate) struct TiffPdf {
    pub bytes: Vec<u8>,
    pub pages: u32,
    /// The first page's pixel size.
    pub first: (u32, u32),
}

/// A whole PDF of the TIFF's pages.
pub(crate) fn to_pdf(bytes: &[u8], limits: &Limits) -> Result<TiffPdf, PipelineError> {
    let tiff = tiff_scan::scan(bytes, limits)?;
    let first = (tiff.pages[0].width, tiff.pages[0].height);
    let mut doc = Document::with_version("1.5");
    let catalog = doc.new_object_id();
    let root = doc.new_object_id();
    let pages = add_scanned_pages(&mut doc, root, bytes, &tiff, limits)?;
    let count = u32::try_from(pages.len()).unwrap_or(u32::MAX);
    doc.objects.insert(
        root,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => pages.into_iter().map(Object::Reference).collect::<Vec<_>>(),
            "Count" => i64::from(count),
        }),
    );
    doc.objects.insert(
        catalog,
        Object::Dictionary(dictionary! { "Type" => "Catalog", "Pages" => root }),
    );
    doc.trailer.set("Root", catalog);
    doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
    let mut out = Vec::new();
    doc.save_to(&mut out).map_err(corrupt)?;
    Ok(TiffPdf {
        bytes: out,
        pages: count,
        first,
    })
}

/// An image placed on a page: the XObject and the pixel rectangle `(x, y, w, h)` it covers.
struct Placed {
    stream: Stream,
    rect: (u32, u32, u32, u32),
}

/// Adds one page drawing `images` (clipped to the page's pixels) and returns its ID.
fn add_page(doc: &mut Document, parent: ObjectId, page: &Page, images: Vec<Placed>) -> ObjectId {
    let (width, height) = (f64::from(page.width), f64::from(page.height));
    // Points per pixel.
    let (sx, sy) = match (page.dpi, page.aspect) {
        (Some((x, y)), _) => (72.0 / x, 72.0 / y),
        (None, aspect) => {
            let aspect = aspect.unwrap_or(1.0);
            let scale = PAGE_LONG_EDGE / width.max(height / aspect);
            (scale, scale / aspect)
        }
    };
    let (mut w, mut h) = (width * sx, height * sy);
    if w.max(h) > MAX_PAGE_SIDE {
        let shrink = MAX_PAGE_SIDE / w.max(h);
        (w, h) = (w * shrink, h * shrink);
    }
    let orientation =
        Orientation::from_exif(page.orientation as u8).unwrap_or(Orientation::NoTransforms);
    let (page_w, page_h) = upright(orientation, (w, h));
    let outer = placement(orientation, page_w as f32, page_h as f32)
        .map(|n| format!("{n:.4}"))
        .join(" ");
    // In the unit square of the image (y up), each piece at its place; the square clips them.
    let mut content = format!("q {outer} cm 0 0 1 1 re W n\n");
    let mut xobjects = Dictionary::new();
    for (i, placed) in images.into_iter().enumerate() {
        let (x, y, pw, ph) = placed.rect;
        let inner = [
            f64::from(pw) / width,
            0.0,
            0.0,
            f64::from(ph) / height,
            f64::from(x) / width,
            1.0 - f64::from(y + ph) / height,
        ]
        .map(|n| format!("{n:.6}"))
        .join(" ");
        let name = format!("Im{i}");
        content.push_str(&format!("q {inner} cm /{name} Do Q\n"));
        let id = doc.add_object(placed.stream);
        xobjects.set(name.into_bytes(), id);
    }
    content.push('Q');
    let content_id = doc.add_object(Stream::new(dictionary! {}, content.into_bytes()));
    doc.add_object(dictionary! {
        "Type" => "Page",
        "Parent" => parent,
        "MediaBox" => vec![
            0.into(),
            0.into(),
            Object::Real(page_w as f32),
            Object::Real(page_h as f32),
        ],
        "Resources" => dictionary! { "XObject" => xobjects },
        "Contents" => content_id,
    })
}

/// The rows of piece `index` that hold pixels (a strip's real rows; a tile's full height).
fn coded_rows(page: &Page, index: usize) -> u32 {
    page.piece_rect(index).3
}

/// Each CCITT piece as an image of its own, coded data as in the file (bits reversed in each
/// byte for a file that stores them least significant first, which PDF does not know).
fn fax_pieces(bytes: &[u8], page: &Page) -> Result<Vec<Placed>, PipelineError> {
    let mut parms = Dictionary::new();
    match page.compression {
        4 => parms.set("K", -1),
        _ => {
            // Group 3: one-dimensional, or mixed with two-dimensional lines; lines start with
            // EOL codes (which fill bits before them do not change for the reader).
            parms.set("K", if page.t4_options & 1 == 1 { 1 } else { 0 });
            parms.set("EndOfLine", true);
        }
    }
    // The coding's "black" runs are the samples of value 1; with BlackIsZero they are white.
    if page.photometric == 1 {
        parms.set("BlackIs1", true);
    }
    page.chunks
        .iter()
        .enumerate()
        .map(|(index, chunk)| {
            let (x, y, w, _) = page.piece_rect(index);
            let rows = coded_rows(page, index);
            let mut data = bytes[chunk.clone()].to_vec();
            if page.fill_order == 2 {
                for byte in &mut data {
                    *byte = byte.reverse_bits();
                }
            }
            let mut parms = parms.clone();
            parms.set("Columns", i64::from(w));
            parms.set("Rows", i64::from(rows));
            let dict = dictionary! {
                "Type" => "XObject",
                "Subtype" => "Image",
                "Width" => i64::from(w),
                "Height" => i64::from(rows),
                "BitsPerComponent" => 1,
                "ColorSpace" => "DeviceGray",
                "Filter" => "CCITTFaxDecode",
                "DecodeParms" => parms,
            };
            Ok(Placed {
                stream: Stream::new(dict, data).with_compression(false),
                rect: (x, y, w, rows),
            })
        })
        .collect()
}

/// Checks a Group 3 piece (most significant bit first) line by line: every coded line starts
/// with an EOL code (eleven or more zero bits, then a one: no run code has that many zeros), and
/// there is one for each of the piece's rows. A one-dimensional piece is also decoded (every
/// line's runs fill the width exactly).
fn check_g3(data: &[u8], page: &Page, rect: (u32, u32, u32, u32)) -> Result<(), PipelineError> {
    let rows = u64::from(rect.3);
    let mut eols = 0u64;
    let mut zeros = 0u32;
    for byte in data {
        for bit in (0..8).rev() {
            if byte >> bit & 1 == 0 {
                zeros += 1;
            } else {
                if zeros >= 11 {
                    eols += 1;
                }
                zeros = 0;
            }
        }
    }
    if eols < rows {
        return Err(corrupt(format!(
            "Group 3 strip has {eols} lines for {rows} rows"
        )));
    }
    if page.t4_options & 1 == 0 {
        let width = u16::try_from(rect.2).map_err(|_| corrupt("fax line too wide"))?;
        let mut lines = 0u64;
        let mut bad = false;
        fax::decoder::decode_g3(data.iter().copied(), |transitions| {
            if lines < rows && transitions.last().is_some_and(|&end| end > width) {
                bad = true;
            }
            lines += 1;
        });
        if bad || lines < rows {
            return Err(corrupt("Group 3 strip does not decode"));
        }
    }
    Ok(())
}

/// Each JPEG piece as an image of its own: the shared tables (without their SOI and EOI) spliced
/// after the piece's SOI, each piece proven decodable. `None` if a piece is not the JPEG of its
/// rectangle (the page is then decoded instead).
fn jpeg_pieces(
    bytes: &[u8],
    page: &Page,
    limits: &Limits,
) -> Result<Option<Vec<Placed>>, PipelineError> {
    let tables = match &page.jpeg_tables {
        Some(range) => {
            let tables = &bytes[range.clone()];
            if !(tables.starts_with(&[0xFF, 0xD8]) && tables.ends_with(&[0xFF, 0xD9])) {
                return Ok(None);
            }
            &tables[2..tables.len() - 2]
        }
        None => &[][..],
    };
    let mut placed = Vec::with_capacity(page.chunks.len());
    for (index, chunk) in page.chunks.iter().enumerate() {
        let piece = &bytes[chunk.clone()];
        if !piece.starts_with(&[0xFF, 0xD8]) {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(piece.len() + tables.len());
        data.extend_from_slice(&piece[..2]);
        data.extend_from_slice(tables);
        data.extend_from_slice(&piece[2..]);
        let (x, y, w, h) = page.piece_rect(index);
        let Some(layout) = crate::header::jpeg_layout(&data) else {
            return Ok(None);
        };
        let rows = coded_rows(page, index);
        if layout.width != w
            || !(layout.height == rows || layout.height == h)
            || u16::from(layout.components) != page.samples
        {
            return Ok(None);
        }
        let cost = crate::inspect::decode_cost(&data, crate::MediaType::Jpeg, limits)?;
        if !crate::header::jpeg_is_complete(&data) {
            return Err(corrupt("truncated JPEG strip"));
        }
        crate::jpeg::verify(&data, cost.check_bytes)?;
        let mut dict = dictionary! {
            "Type" => "XObject",
            "Subtype" => "Image",
            "Width" => i64::from(layout.width),
            "Height" => i64::from(layout.height),
            "BitsPerComponent" => 8,
            "ColorSpace" => if page.samples == 1 { "DeviceGray" } else { "DeviceRGB" },
            "Filter" => "DCTDecode",
        };
        if page.photometric == 2 {
            // RGB coded as it is, not as YCbCr.
            dict.set("DecodeParms", dictionary! { "ColorTransform" => 0 });
        }
        placed.push(Placed {
            stream: Stream::new(dict, data).with_compression(false),
            rect: (x, y, w, layout.height),
        });
    }
    Ok(Some(placed))
}

/// A decoded page's samples, as the `tiff` crate gives them.
struct Samples {
    color: tiff::ColorType,
    data: tiff::decoder::DecodingResult,
}

/// The `tiff` crate's decoder over the file, under the limits.
struct Decoder<'a> {
    inner: tiff::decoder::Decoder<Cursor<&'a [u8]>>,
}

impl<'a> Decoder<'a> {
    fn new(bytes: &'a [u8], limits: &Limits) -> Result<Self, PipelineError> {
        let mut decode_limits = tiff::decoder::Limits::default();
        decode_limits.decoding_buffer_size =
            usize::try_from(limits.max_image_bytes).unwrap_or(usize::MAX);
        decode_limits.intermediate_buffer_size = decode_limits.decoding_buffer_size;
        decode_limits.ifd_value_size = 8 << 20;
        let inner = tiff::decoder::Decoder::new(Cursor::new(bytes))
            .map_err(tiff_error)?
            .with_limits(decode_limits);
        Ok(Decoder { inner })
    }

    /// Decodes `page`, which must be the page the scan saw.
    fn page(&mut self, page: &Page) -> Result<Samples, PipelineError> {
        self.inner.seek_to_image(page.ifd).map_err(tiff_error)?;
        if self.inner.dimensions().map_err(tiff_error)? != (page.width, page.height) {
            return Err(corrupt("the decoder reads another page size than the scan"));
        }
        let color = self.inner.colortype().map_err(tiff_error)?;
        let data = self.inner.read_image().map_err(tiff_error)?;
        Ok(Samples { color, data })
    }
}

fn tiff_error(err: tiff::TiffError) -> PipelineError {
    match err {
        tiff::TiffError::UnsupportedError(_) => PipelineError::Unsupported("this kind of TIFF"),
        tiff::TiffError::LimitsExceeded => PipelineError::TooComplex {
            what: "decoded image",
        },
        other => corrupt(format!("TIFF: {other}")),
    }
}

/// The decoded page as one image: its samples (8 or 16 bits, or packed 1 to 4 bits of grey),
/// alpha laid over white, Flate-compressed.
fn decoded_image(page: &Page, samples: Samples) -> Result<Placed, PipelineError> {
    use tiff::ColorType as C;
    use tiff::decoder::DecodingResult as D;
    let (width, height) = (page.width, page.height);
    let (space, bits, data): (&str, u8, Vec<u8>) = match (samples.color, samples.data) {
        (C::Gray(b @ (1 | 2 | 4 | 8)), D::U8(data)) => ("DeviceGray", b, data),
        (C::Gray(16), D::U16(data)) => ("DeviceGray", 16, big_endian(&data)),
        (C::RGB(8), D::U8(data)) => ("DeviceRGB", 8, data),
        (C::RGB(16), D::U16(data)) => ("DeviceRGB", 16, big_endian(&data)),
        (C::CMYK(8), D::U8(data)) => ("DeviceCMYK", 8, data),
        (C::GrayA(8), D::U8(data)) => ("DeviceGray", 8, over_white(&data, 2).collect()),
        (C::RGBA(8), D::U8(data)) => ("DeviceRGB", 8, over_white(&data, 4).collect()),
        _ => return Err(PipelineError::Unsupported("this kind of TIFF")),
    };
    let mut encoder = flate2::write::ZlibEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::new(6),
    );
    encoder.write_all(&data).map_err(corrupt)?;
    drop(data);
    let compressed = encoder.finish().map_err(corrupt)?;
    let dict = dictionary! {
        "Type" => "XObject",
        "Subtype" => "Image",
        "Width" => i64::from(width),
        "Height" => i64::from(height),
        "BitsPerComponent" => i64::from(bits),
        "ColorSpace" => space,
        "Filter" => "FlateDecode",
    };
    Ok(Placed {
        stream: Stream::new(dict, compressed).with_compression(false),
        rect: (0, 0, width, height),
    })
}

fn big_endian(samples: &[u16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_be_bytes()).collect()
}

/// The first page as 8-bit RGB pixels (for a conversion to WebP): a one-page TIFF only.
pub(crate) fn first_page_rgb(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(image::DynamicImage, Orientation), PipelineError> {
    let tiff = tiff_scan::scan(bytes, limits)?;
    if tiff.pages.len() != 1 {
        return Err(PipelineError::Unsupported(
            "a TIFF of several pages for a one-image target",
        ));
    }
    let page = &tiff.pages[0];
    let samples = Decoder::new(bytes, limits)?.page(page)?;
    use tiff::ColorType as C;
    use tiff::decoder::DecodingResult as D;
    let (w, h) = (page.width, page.height);
    let short = || corrupt("TIFF decoded short");
    let image = match (samples.color, samples.data) {
        (C::Gray(8), D::U8(data)) => image::DynamicImage::ImageLuma8(
            image::GrayImage::from_raw(w, h, data).ok_or_else(short)?,
        ),
        (C::Gray(1), D::U8(data)) => {
            let row = w.div_ceil(8) as usize;
            let mut grey = Vec::with_capacity(w as usize * h as usize);
            for line in data.chunks_exact(row).take(h as usize) {
                grey.extend((0..w as usize).map(|x| {
                    if line[x / 8] >> (7 - x % 8) & 1 == 1 {
                        255
                    } else {
                        0
                    }
                }));
            }
            image::DynamicImage::ImageLuma8(
                image::GrayImage::from_raw(w, h, grey).ok_or_else(short)?,
            )
        }
        (C::RGB(8), D::U8(data)) => {
            image::DynamicImage::ImageRgb8(image::RgbImage::from_raw(w, h, data).ok_or_else(short)?)
        }
        (C::RGBA(8), D::U8(data)) => image::DynamicImage::ImageRgba8(
            image::RgbaImage::from_raw(w, h, data).ok_or_else(short)?,
        ),
        (C::Gray(16), D::U16(data)) => image::DynamicImage::ImageLuma16(
            image::ImageBuffer::from_raw(w, h, data).ok_or_else(short)?,
        ),
        (C::RGB(16), D::U16(data)) => image::DynamicImage::ImageRgb16(
            image::ImageBuffer::from_raw(w, h, data).ok_or_else(short)?,
        ),
        _ => return Err(PipelineError::Unsupported("this kind of TIFF")),
    };
    let orientation =
        Orientation::from_exif(page.orientation as u8).unwrap_or(Orientation::NoTransforms);
    Ok((image, orientation))
}
