//! Report PDFs: the first upload starts the report (a PDF as-is, an image as a one-page PDF),
//! later uploads append their pages at the end as incremental updates (ISO 32000-1, 7.5.6): an
//! append writes only its own objects, the new version of the page tree's root and a
//! cross-reference section, after the unchanged bytes of the report.

use crate::image_page::image_page;
use crate::inspect::{check_type, load_pdf};
use crate::{Limits, MediaType, PipelineError};
use lopdf::{Dictionary, Document, Object, ObjectId, dictionary};

/// Where a report's structure is: enough to append to it without reading the file. Kept with
/// the report's record and replaced by every append.
///
/// A report's page tree is ours: a root `pages` node whose kids are the first upload's own page
/// tree (or its one image page) followed by one node per append, holding that append's pages.
/// An append therefore writes its new objects, a new version of the root node and a
/// cross-reference section (ISO 32000-1, 7.5.6), and never reads or rewrites earlier bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportLayout {
    /// Byte offset of the last cross-reference section (the next section's `/Prev`).
    pub xref_offset: u64,
    /// The trailer's `/Size`: the next free object number.
    pub size: u32,
    /// Object number of the catalog (generation 0).
    pub catalog: u32,
    /// Object number of the page tree's root (generation 0).
    pub pages: u32,
    /// The root's kids in page order, as (object number, generation).
    pub kids: Vec<(u32, u16)>,
}

/// A report after a start or an append.
#[derive(Debug, Clone)]
pub struct ReportUpdate {
    /// The bytes to write after the current report: the whole file for a start, only the
    /// increment for an append (the current report stays an exact prefix of the new one).
    pub bytes: Vec<u8>,
    /// Where the new report's structure is.
    pub layout: ReportLayout,
    /// Pages of the new report.
    pub page_count: u32,
}

fn corrupt(err: impl std::fmt::Display) -> PipelineError {
    PipelineError::Corrupt(err.to_string())
}

/// The largest object number a PDF may use (ISO 32000-1, Annex C). A file using larger ones is
/// renumbered before it becomes a report, so appends always have numbers to give new objects.
pub const MAX_OBJECT_NUMBER: u32 = 8_388_607;

fn page_count(doc: &Document) -> u32 {
    u32::try_from(crate::inspect::pages(doc).len()).unwrap_or(u32::MAX)
}

/// The first upload to a report. A PDF is kept byte for byte (after checking it parses and is
/// not encrypted) and followed by an update that puts its page tree under the report's root; a
/// JPEG, PNG, HEIC or GIF becomes a one-page PDF, a TIFF a PDF of its pages (see
/// [`append_to_report`] for how images are placed). WebP is refused with [`PipelineError::UnsupportedMediaType`].
pub fn start_report(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<ReportUpdate, PipelineError> {
    check_type(bytes, media)?;
    if media == MediaType::Pdf {
        return whole(bytes, load_pdf, limits);
    }
    from_empty(bytes, media, limits)
}

/// An empty report (a catalog and a root with no kids) with the upload appended to it.
fn from_empty(
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<ReportUpdate, PipelineError> {
    let mut doc = Document::with_version("1.5");
    let catalog = doc.new_object_id();
    let pages = doc.new_object_id();
    doc.objects.insert(
        pages,
        Object::Dictionary(dictionary! { "Type" => "Pages", "Kids" => vec![], "Count" => 0 }),
    );
    doc.objects.insert(
        catalog,
        Object::Dictionary(dictionary! { "Type" => "Catalog", "Pages" => pages }),
    );
    doc.trailer.set("Root", catalog);
    // A classic cross-reference table: a cross-reference stream would be an object of its own,
    // numbered after the two above, where the first append puts its first object.
    doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
    let mut empty = Vec::new();
    doc.save_to(&mut empty).map_err(corrupt)?;
    let layout = ReportLayout {
        xref_offset: xref_offset_of(&empty)?,
        size: doc.max_id + 1,
        catalog: catalog.0,
        pages: pages.0,
        kids: Vec::new(),
    };
    let appended = append_to_report(&layout, empty.len() as u64, 0, bytes, media, limits)?;
    empty.extend_from_slice(&appended.bytes);
    Ok(ReportUpdate {
        bytes: empty,
        ..appended
    })
}

/// Takes over a whole report that has no [`ReportLayout`] yet (one written by an earlier
/// version, which rewrote reports in full): returns the update that puts its page tree under a
/// root of ours. Reads the whole report once; every later append reads none of it.
pub fn adopt_report(existing: &[u8], limits: &Limits) -> Result<ReportUpdate, PipelineError> {
    whole(existing, crate::inspect::load_pdf_unscanned, limits)
}

/// How a PDF is read: guarded (an upload) or not (a report this service stored).
type Reader = fn(&[u8], &Limits) -> Result<Document, PipelineError>;

/// The whole file of [`adopt`]'s update: the PDF followed by the increment, or the renumbered
/// file. The PDF is kept as it is only if the result reads back with the same pages: the pages of
/// a file the parser could read only by scanning for its objects (a damaged cross-reference) are
/// appended to an empty report instead, so that readers find what was validated.
fn whole(bytes: &[u8], read: Reader, limits: &Limits) -> Result<ReportUpdate, PipelineError> {
    let doc = read(bytes, limits)?;
    let (end, _) = final_revision(bytes)?;
    let bytes = &bytes[..end];
    let (mut update, renumbered) = adopt(bytes, doc)?;
    if !renumbered {
        let mut file = Vec::with_capacity(bytes.len() + update.bytes.len());
        file.extend_from_slice(bytes);
        file.extend_from_slice(&update.bytes);
        update.bytes = file;
    }
    if reads_back(&update, read, limits) {
        return Ok(update);
    }
    // Its pages, appended to an empty report like any upload's: a page tree of ours. What is
    // stored must read back; a file whose pages cannot be carried over either way is refused.
    drop(update);
    let update = from_empty(bytes, MediaType::Pdf, limits)?;
    if reads_back(&update, read, limits) {
        Ok(update)
    } else {
        Err(corrupt("the PDF's pages cannot be read back in a report"))
    }
}

/// True if the whole report `update` holds parses with the pages it counts, read as its input
/// was: a report started from an upload must pass the same guard as any upload, so that what is
/// stored is never refused when it is read or appended to later.
fn reads_back(update: &ReportUpdate, read: Reader, limits: &Limits) -> bool {
    read(&update.bytes, limits).is_ok_and(|read| page_count(&read) == update.page_count)
}

/// The update that makes the PDF `bytes` (parsed as `doc`) a report: a catalog of ours and a
/// root whose one kid is the PDF's own page tree. Returns the increment alone, and `false`; if
/// the PDF uses object numbers too large to leave room for appends, it is renumbered and the
/// whole new file is returned instead, and `true`.
fn adopt(bytes: &[u8], mut doc: Document) -> Result<(ReportUpdate, bool), PipelineError> {
    let page_count = page_count(&doc);
    let declared = doc
        .trailer
        .get(b"Size")
        .and_then(Object::as_i64)
        .ok()
        .and_then(|size| u32::try_from(size).ok())
        .unwrap_or(u32::MAX);
    // The numbers in use, whatever the file declares, cross-reference streams included.
    let highest = doc.objects.keys().map(|(id, _)| *id).max().unwrap_or(0);
    let headers = u32::try_from(highest_object_header(bytes)).unwrap_or(u32::MAX);
    doc.max_id = doc.max_id.max(highest).max(headers);
    if doc.max_id > MAX_OBJECT_NUMBER / 2 || declared > MAX_OBJECT_NUMBER / 2 {
        doc.renumber_objects();
        doc.trailer.set("Size", i64::from(doc.max_id) + 1);
        let mut renumbered = Vec::new();
        doc.save_to(&mut renumbered).map_err(corrupt)?;
        let reparsed = Document::load_mem(&renumbered).map_err(corrupt)?;
        let (mut update, _) = adopt(&renumbered, reparsed)?;
        renumbered.extend_from_slice(&update.bytes);
        update.bytes = renumbered;
        return Ok((update, true));
    }
    let old_root = doc
        .catalog()
        .and_then(|catalog| catalog.get(b"Pages"))
        .and_then(Object::as_reference)
        .map_err(corrupt)?;
    let first = declared.max(doc.max_id + 1);
    let catalog = first;
    let pages = first + 1;
    let mut tree_root = doc.get_dictionary(old_root).map_err(corrupt)?.clone();
    tree_root.set("Parent", Object::Reference((pages, 0)));
    let objects = vec![
        (old_root, Object::Dictionary(tree_root)),
        (
            (pages, 0),
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => vec![Object::Reference(old_root)],
                "Count" => i64::from(page_count),
            }),
        ),
        (
            (catalog, 0),
            Object::Dictionary(dictionary! { "Type" => "Catalog", "Pages" => (pages, 0) }),
        ),
    ];
    let previous = xref_offset_of(bytes)?;
    let (increment, xref_offset) = increment(
        bytes.len() as u64,
        objects,
        None,
        pages + 1,
        catalog,
        previous,
    )?;
    let update = ReportUpdate {
        bytes: increment,
        layout: ReportLayout {
            xref_offset,
            size: pages + 1,
            catalog,
            pages,
            kids: vec![old_root],
        },
        page_count,
    };
    Ok((update, false))
}

/// The increment that appends the upload's pages at the end of the report described by
/// `layout` (`report_len` bytes long, `page_count` pages), without reading the report.
///
/// A PDF's pages are moved over in order, with the attributes they inherited in their own page
/// tree copied onto them. A TIFF's pages are added as [`crate::tiff_pdf`] makes them; a HEIC
/// becomes the page of the JPEG it is stored as, a GIF the page of its first frame. A JPEG or
/// PNG becomes one page whose long edge is 842 pt (A4's), with
/// the EXIF orientation applied; JPEGs are embedded without re-encoding and their pixels are not
/// decoded here (run [`crate::inspect`] on uploads first). WebP is refused with
/// [`PipelineError::UnsupportedMediaType`].
pub fn append_to_report(
    layout: &ReportLayout,
    report_len: u64,
    page_count: u32,
    bytes: &[u8],
    media: MediaType,
    limits: &Limits,
) -> Result<ReportUpdate, PipelineError> {
    check_type(bytes, media)?;
    // New objects are numbered from the report's next free number.
    let mut doc = Document::with_version("1.5");
    doc.max_id = layout.size;
    let node = (layout.size, 0);
    let new_pages = match media {
        MediaType::Pdf => adopt_pages(&mut doc, load_pdf(bytes, limits)?, node)?,
        MediaType::Tiff => crate::tiff_pdf::add_pages(&mut doc, node, bytes, limits)?,
        _ => vec![image_page(&mut doc, node, bytes, media, limits)?],
    };
    let added = u32::try_from(new_pages.len()).unwrap_or(u32::MAX);
    doc.objects.insert(
        node,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Parent" => (layout.pages, 0),
            "Kids" => new_pages.iter().copied().map(Object::Reference).collect::<Vec<_>>(),
            "Count" => i64::from(added),
        }),
    );
    if media == MediaType::Pdf {
        // What only the upload's own catalog used (outlines, forms, names, metadata) goes.
        doc.trailer.set("Root", node);
        doc.prune_objects();
    }
    // One more than the highest number written: the upload's objects no page uses are gone.
    let size = doc
        .objects
        .keys()
        .map(|(id, _)| id + 1)
        .max()
        .unwrap_or(node.0 + 1);
    if size > MAX_OBJECT_NUMBER {
        return Err(PipelineError::TooComplex {
            what: "report objects",
        });
    }
    let total = page_count.saturating_add(added);
    let mut kids = layout.kids.clone();
    kids.push(node);
    let mut objects: Vec<(ObjectId, Object)> =
        std::mem::take(&mut doc.objects).into_iter().collect();
    // A JPEG is embedded as uploaded: it is written from the upload, not from a copy.
    let mut payload = None;
    if media == MediaType::Jpeg {
        for (id, object) in &mut objects {
            if let Object::Stream(stream) = object
                && stream.content.as_slice() == bytes
            {
                stream.content = Vec::new();
                payload = Some((*id, bytes));
                break;
            }
        }
    }
    objects.push((
        (layout.pages, 0),
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids.iter().copied().map(Object::Reference).collect::<Vec<_>>(),
            "Count" => i64::from(total),
        }),
    ));
    let (bytes, xref_offset) = increment(
        report_len,
        objects,
        payload,
        size,
        layout.catalog,
        layout.xref_offset,
    )?;
    Ok(ReportUpdate {
        bytes,
        layout: ReportLayout {
            xref_offset,
            size,
            catalog: layout.catalog,
            pages: layout.pages,
            kids,
        },
        page_count: total,
    })
}

/// An incremental update written after `base_len` bytes: `objects`, a cross-reference section
/// listing them, and a trailer pointing back to the section at `previous`. Returns the bytes and
/// the offset (in the whole file) of the new section.
///
/// `payload`, if given, is the data of one stream object written straight from the caller's
/// bytes (an uploaded JPEG), so that the increment is the only copy made of it. The buffer is
/// sized once: an increment never holds more than its own bytes.
fn increment(
    base_len: u64,
    objects: Vec<(ObjectId, Object)>,
    payload: Option<(ObjectId, &[u8])>,
    size: u32,
    catalog: u32,
    previous: u64,
) -> Result<(Vec<u8>, u64), PipelineError> {
    use std::io::Write as _;
    let data: usize = objects
        .iter()
        .map(|(_, object)| match object {
            Object::Stream(stream) => stream.content.len(),
            _ => 0,
        })
        .sum::<usize>()
        + payload.map_or(0, |(_, bytes)| bytes.len());
    let mut out = Vec::with_capacity(data + 256 * objects.len() + 4096);
    // A line break first: the file before may end without one.
    out.push(b'\n');
    let mut offsets: Vec<(u32, u16, u64)> = Vec::with_capacity(objects.len());
    for ((id, generation), object) in objects {
        crate::meter::check()?;
        offsets.push((id, generation, base_len + out.len() as u64));
        writeln!(out, "{id} {generation} obj").map_err(corrupt)?;
        match object {
            Object::Stream(mut stream) => {
                let content = match payload {
                    Some((payload_id, bytes)) if payload_id == (id, generation) => bytes,
                    _ => stream.content.as_slice(),
                };
                stream.dict.set("Length", content.len() as i64);
                lopdf::Writer::write_object(&mut out, &Object::Dictionary(stream.dict.clone()))
                    .map_err(corrupt)?;
                out.extend_from_slice(b"stream\n");
                out.extend_from_slice(content);
                out.extend_from_slice(b"\nendstream");
            }
            other => lopdf::Writer::write_object(&mut out, &other).map_err(corrupt)?,
        }
        out.extend_from_slice(b"\nendobj\n");
    }
    offsets.sort_unstable();
    let xref_offset = base_len + out.len() as u64;
    out.extend_from_slice(b"xref\n");
    let mut run = 0;
    while run < offsets.len() {
        let mut end = run + 1;
        while end < offsets.len() && offsets[end].0 == offsets[end - 1].0 + 1 {
            end += 1;
        }
        writeln!(out, "{} {}", offsets[run].0, end - run).map_err(corrupt)?;
        for (_, generation, offset) in &offsets[run..end] {
            write!(out, "{offset:010} {generation:05} n\r\n").map_err(corrupt)?;
        }
        run = end;
    }
    write!(
        out,
        "trailer\n<< /Size {size} /Root {catalog} 0 R /Prev {previous} >>\nstartxref\n{xref_offset}\n%%EOF\n"
    )
    .map_err(corrupt)?;
    Ok((out, xref_offset))
}

/// Where a PDF's last revision ends and its last cross-reference section starts, found the way
/// the parser finds them (lopdf, like other readers): the last `%%EOF` within the last 1024 bytes
/// (trailing white space aside), and the `startxref` just before it. Returns the length of the
/// file up to that `%%EOF` and the section's offset. Bytes after it are no revision of the file:
/// a report drops them, so that the chain it appends to is the one that was validated.
fn final_revision(bytes: &[u8]) -> Result<(usize, u64), PipelineError> {
    let end = bytes
        .iter()
        .rposition(|byte| !b" \t\n\r\0\x0C".contains(byte))
        .map_or(0, |at| at + 1);
    let tail_start = end.saturating_sub(1024);
    let eof = memchr::memmem::rfind(&bytes[tail_start..end], b"%%EOF")
        .map(|at| tail_start + at)
        .filter(|&at| at > 25)
        .ok_or_else(|| corrupt("no %%EOF at the end of the PDF"))?;
    let at = memchr::memmem::rfind(&bytes[eof - 25..eof], b"startxref")
        .map(|at| eof - 25 + at)
        .ok_or_else(|| corrupt("no startxref before the final %%EOF"))?;
    let digits: String = bytes[at + 9..eof]
        .iter()
        .skip_while(|byte| byte.is_ascii_whitespace())
        .take_while(|byte| byte.is_ascii_digit())
        .map(|&byte| char::from(byte))
        .collect();
    let offset = digits
        .parse()
        .map_err(|_| corrupt("unreadable startxref at the end of the PDF"))?;
    Ok((eof + 5, offset))
}

/// The offset of a PDF's last cross-reference section (see [`final_revision`]).
fn xref_offset_of(bytes: &[u8]) -> Result<u64, PipelineError> {
    final_revision(bytes).map(|(_, offset)| offset)
}

/// The highest object number any `N G obj` header in the file names, whether or not a
/// cross-reference section lists it (a cross-reference stream is an object too, and a reader
/// may find objects by scanning): new objects are numbered above all of them, so that no reader
/// can take one for another.
fn highest_object_header(bytes: &[u8]) -> u64 {
    let mut highest = 0;
    for at in memchr::memmem::find_iter(bytes, b"obj") {
        // Backwards over "<number> <generation> " before the keyword.
        let before = &bytes[..at];
        let Some(gen_end) = before.iter().rposition(|b| !b.is_ascii_whitespace()) else {
            continue;
        };
        let gen_start = before[..=gen_end]
            .iter()
            .rposition(|b| !b.is_ascii_digit())
            .map_or(0, |p| p + 1);
        if gen_start > gen_end || gen_start == 0 || !before[gen_start - 1].is_ascii_whitespace() {
            continue;
        }
        let Some(num_end) = before[..gen_start]
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
        else {
            continue;
        };
        let num_start = before[..=num_end]
            .iter()
            .rposition(|b| !b.is_ascii_digit())
            .map_or(0, |p| p + 1);
        if num_start > num_end || num_end - num_start > 12 {
            continue;
        }
        let number = before[num_start..=num_end]
            .iter()
            .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        highest = highest.max(number);
    }
    highest
}

/// Moves every page of `other` (in order) into `doc` under `parent`; returns their new IDs.
///
/// A page leaves its page tree, so what it inherited there is set on it. A value the tree shares
/// (an inherited `/Resources`, a `/MediaBox` of any length) is written once, as an object of its
/// own that every page refers to, never copied per page: the pages cost what the file holds, not
/// its pages times its shared values.
fn adopt_pages(
    doc: &mut Document,
    mut other: Document,
    parent: ObjectId,
) -> Result<Vec<ObjectId>, PipelineError> {
    other.renumber_objects_with(doc.max_id + 1);
    let page_ids = crate::inspect::pages(&other);
    // The object holding each (ancestor, attribute) value that has been made shared.
    let mut shared: std::collections::HashMap<(ObjectId, &'static [u8]), Object> =
        std::collections::HashMap::new();
    // Where each page inherits from, read before any value is taken from a tree node.
    let mut inherited = Vec::with_capacity(page_ids.len());
    for &page_id in &page_ids {
        crate::meter::check()?;
        inherited.push(inherited_attributes(&other, page_id));
    }
    for (&page_id, inherited) in page_ids.iter().zip(inherited) {
        crate::meter::check()?;
        for (key, ancestor) in inherited {
            if other.get_dictionary(page_id).map_err(corrupt)?.has(key) {
                continue;
            }
            let value = match shared.get(&(ancestor, key)) {
                Some(value) => value.clone(),
                None => {
                    let node = other.get_dictionary_mut(ancestor).map_err(corrupt)?;
                    // A tree node is dropped once its pages are moved: its value is taken, not
                    // copied. (A `Parent` naming a page is malformed, but its page keeps its own.)
                    let value = if node.has_type(b"Pages") {
                        node.remove(key)
                    } else {
                        node.get(key).ok().cloned()
                    };
                    let value = match value.ok_or_else(|| corrupt("inherited value vanished"))? {
                        // Small or already shared: as it is.
                        small @ (Object::Reference(_)
                        | Object::Integer(_)
                        | Object::Real(_)
                        | Object::Boolean(_)
                        | Object::Name(_)
                        | Object::Null) => small,
                        large => Object::Reference(other.add_object(large)),
                    };
                    shared.insert((ancestor, key), value.clone());
                    value
                }
            };
            other
                .get_dictionary_mut(page_id)
                .map_err(corrupt)?
                .set(key, value);
        }
        other
            .get_dictionary_mut(page_id)
            .map_err(corrupt)?
            .set("Parent", parent);
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

/// Attributes a page may inherit from its ancestors in the page tree.
const INHERITED: [&[u8]; 4] = [b"Resources", b"MediaBox", b"CropBox", b"Rotate"];

/// The inheritable attributes a page's ancestors give it, each with the nearest ancestor that
/// holds it.
fn inherited_attributes(doc: &Document, page_id: ObjectId) -> Vec<(&'static [u8], ObjectId)> {
    let parent_of = |dict: &Dictionary| dict.get(b"Parent").and_then(Object::as_reference).ok();
    let mut found: Vec<(&'static [u8], ObjectId)> = Vec::new();
    let mut node = doc.get_dictionary(page_id).ok().and_then(parent_of);
    // The depth cap stops a malicious Parent cycle.
    for _ in 0..64 {
        let Some((id, dict)) = node.and_then(|id| Some((id, doc.get_dictionary(id).ok()?))) else {
            break;
        };
        for key in INHERITED {
            if dict.has(key) && !found.iter().any(|(k, _)| *k == key) {
                found.push((key, id));
            }
        }
        node = parent_of(dict);
    }
    found
}
