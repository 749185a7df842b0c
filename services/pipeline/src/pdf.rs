//! Report PDFs: the first upload starts the report (a PDF as-is, an image as a one-page PDF),
//! later uploads append their pages at the end.

use crate::image_page::image_page;
use crate::inspect::{check_type, load_pdf, load_pdf_unscanned};
use crate::{Limits, MediaType, PipelineError};
use lopdf::{Dictionary, Document, Object, ObjectId, dictionary};

/// A whole report PDF.
#[derive(Debug, Clone)]
pub struct ReportPdf {
    /// The PDF file.
    pub bytes: Vec<u8>,
    /// Its page count.
    pub page_count: u32,
}

fn corrupt(err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Corrupt(err.to_string())
}

/// The largest object number a PDF may use (ISO 32000-1, Annex C). A file using larger ones is
/// renumbered before it becomes a report, so appends always have numbers to give new objects.
pub const MAX_OBJECT_NUMBER: u32 = 8_388_607;

fn page_count(doc: &Document) -> u32 {
    u32::try_from(doc.get_pages().len()).unwrap_or(u32::MAX)
}

fn save(mut doc: Document) -> Result<ReportPdf, PipelineError> {
    let page_count = page_count(&doc);
    let mut bytes = Vec::new();
    doc.save_to(&mut bytes).map_err(corrupt)?;
    Ok(ReportPdf { bytes, page_count })
}

/// The first upload to a report: a PDF is returned unchanged (byte-for-byte, after checking it
/// parses and is not encrypted); a JPEG or PNG becomes a one-page PDF (see
/// [`append_to_report`] for how images are placed). WebP is refused with
/// [`PipelineError::UnsupportedMediaType`].
pub fn start_report(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<ReportPdf, PipelineError> {
    check_type(bytes, media)?;
    if media == MediaType::Pdf {
        let mut doc = load_pdf(bytes, limits)?;
        if doc.max_id > MAX_OBJECT_NUMBER {
            // Kept byte for byte, later appends would have no object numbers left.
            doc.renumber_objects();
            return save(doc);
        }
        return Ok(ReportPdf {
            bytes: bytes.to_vec(),
            page_count: page_count(&doc),
        });
    }
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let page_id = image_page(&mut doc, pages_id, bytes, media, limits)?;
    doc.objects.insert(
        pages_id,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => vec![Object::Reference(page_id)],
            "Count" => 1,
        }),
    );
    let catalog_id = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
    doc.trailer.set("Root", catalog_id);
    save(doc)
}

/// Appends the upload's pages at the end of the report `existing` and returns the whole new PDF.
///
/// A PDF's pages are moved over in order, with the attributes they inherited in their own page
/// tree copied onto them. A JPEG or PNG becomes one page whose long edge is 842 pt (A4's), with
/// the EXIF orientation applied; JPEGs are embedded without re-encoding and their pixels are not
/// decoded here (run [`crate::inspect`] on uploads first). WebP is refused with
/// [`PipelineError::UnsupportedMediaType`].
pub fn append_to_report(
    existing: &[u8],
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<ReportPdf, PipelineError> {
    check_type(bytes, media)?;
    let mut doc = load_pdf_unscanned(existing, limits)?;
    if doc.max_id > MAX_OBJECT_NUMBER {
        doc.renumber_objects();
    }
    let before = doc.get_pages().len();
    let root = doc
        .catalog()
        .and_then(|catalog| catalog.get(b"Pages"))
        .and_then(Object::as_reference)
        .map_err(corrupt)?;
    push_down_inherited(&mut doc, root)?;
    let new_pages = if media == MediaType::Pdf {
        adopt_pages(&mut doc, load_pdf(bytes, limits)?, root)?
    } else {
        vec![image_page(&mut doc, root, bytes, media, limits)?]
    };
    let mut kids = doc
        .get_dictionary(root)
        .and_then(|pages| pages.get_deref(b"Kids", &doc))
        .and_then(Object::as_array)
        .map_err(corrupt)?
        .clone();
    kids.extend(new_pages.iter().copied().map(Object::Reference));
    let pages = doc.get_dictionary_mut(root).map_err(corrupt)?;
    pages.set("Kids", kids);
    pages.set(
        "Count",
        i64::try_from(before + new_pages.len()).unwrap_or(i64::MAX),
    );
    if media == MediaType::Pdf {
        // What only the upload's own catalog used (outlines, forms, names, metadata) goes.
        doc.prune_objects();
    }
    let report = save(doc)?;
    // Never hand back a report that lost pages: refuse the append instead.
    if report.page_count as usize != before + new_pages.len() {
        return Err(corrupt(format!(
            "the report would have {} pages instead of {}",
            report.page_count,
            before + new_pages.len()
        )));
    }
    Ok(report)
}

/// Attributes a page may inherit from its ancestors in the page tree.
const INHERITED: [&[u8]; 4] = [b"Resources", b"MediaBox", b"CropBox", b"Rotate"];

/// Moves the root's inheritable attributes onto its children, so pages added under the root
/// inherit nothing they were not made for (e.g. a `/Rotate 90` meant for the first upload).
fn push_down_inherited(doc: &mut Document, root: ObjectId) -> Result<(), PipelineError> {
    let pages = doc.get_dictionary(root).map_err(corrupt)?;
    let inherited: Vec<(&[u8], Object)> = INHERITED
        .into_iter()
        .filter_map(|key| Some((key, pages.get(key).ok()?.clone())))
        .collect();
    if inherited.is_empty() {
        return Ok(());
    }
    let kids: Vec<ObjectId> = pages
        .get_deref(b"Kids", doc)
        .and_then(Object::as_array)
        .map_err(corrupt)?
        .iter()
        .filter_map(|kid| kid.as_reference().ok())
        .collect();
    for kid in kids {
        if let Ok(kid) = doc.get_dictionary_mut(kid) {
            for (key, value) in &inherited {
                if !kid.has(key) {
                    kid.set(*key, value.clone());
                }
            }
        }
    }
    let pages = doc.get_dictionary_mut(root).map_err(corrupt)?;
    for (key, _) in &inherited {
        pages.remove(key);
    }
    Ok(())
}

/// Moves every page of `other` (in order) into `doc` under `parent`; returns their new IDs.
fn adopt_pages(
    doc: &mut Document,
    mut other: Document,
    parent: ObjectId,
) -> Result<Vec<ObjectId>, PipelineError> {
    other.renumber_objects_with(doc.max_id + 1);
    let page_ids: Vec<ObjectId> = other.get_pages().into_values().collect();
    for &page_id in &page_ids {
        let inherited = inherited_attributes(&other, page_id);
        let page = other.get_dictionary_mut(page_id).map_err(corrupt)?;
        for (key, value) in inherited {
            if !page.has(key) {
                page.set(key, value);
            }
        }
        page.set("Parent", parent);
    }
    let is_tree_node = |object: &Object| {
        let kind = object
            .as_dict()
            .and_then(|dict| dict.get(b"Type")?.as_name());
        matches!(kind, Ok(b"Catalog" | b"Pages"))
    };
    doc.objects.extend(
        other
            .objects
            .into_iter()
            .filter(|(_, object)| !is_tree_node(object)),
    );
    doc.max_id = doc.max_id.max(other.max_id);
    if other.version > doc.version {
        doc.version = other.version;
    }
    Ok(page_ids)
}

/// The inheritable attributes a page's ancestors give it, nearest ancestor first.
fn inherited_attributes(doc: &Document, page_id: ObjectId) -> Vec<(&'static [u8], Object)> {
    let parent_of = |dict: &Dictionary| dict.get(b"Parent").and_then(Object::as_reference).ok();
    let mut found: Vec<(&'static [u8], Object)> = Vec::new();
    let mut node = doc.get_dictionary(page_id).ok().and_then(parent_of);
    // The depth cap stops a malicious Parent cycle.
    for _ in 0..64 {
        let Some(dict) = node.and_then(|id| doc.get_dictionary(id).ok()) else {
            break;
        };
        for key in INHERITED {
            if let Ok(value) = dict.get(key)
                && !found.iter().any(|(k, _)| *k == key)
            {
                found.push((key, value.clone()));
            }
        }
        node = parent_of(dict);
    }
    found
}
