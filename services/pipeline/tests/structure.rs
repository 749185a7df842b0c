//! Structure-aware property tests of report appends: generated PDFs with page trees of any
//! shape (nested nodes, attributes inherited from any ancestor, resources shared between
//! pages), saved with or without object streams and cross-reference streams, some with an
//! incremental update of their own. Every one is either appended, each page keeping what it
//! inherited, within the memory it reserved (metered), or refused cleanly.

#![allow(clippy::unwrap_used)]

mod common;

use common::jpeg;
use imaging_pipeline::{
    Limits, MediaType, Step, append_to_report, memory_cost, meter, start_report,
};
use lopdf::{Document, Object, ObjectId, Stream, dictionary};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: imaging_pipeline::MeteredAlloc = imaging_pipeline::MeteredAlloc;

/// A page tree node as generated: a page, or a node with kids; either may carry a MediaBox
/// width (inheritable) and a shared resource dictionary index.
#[derive(Debug, Clone)]
enum Node {
    Page {
        width: Option<u16>,
        resources: Option<u8>,
    },
    Pages {
        width: Option<u16>,
        resources: Option<u8>,
        kids: Vec<Node>,
    },
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = (
        proptest::option::of(50u16..900),
        proptest::option::of(0u8..3),
    )
        .prop_map(|(width, resources)| Node::Page { width, resources });
    leaf.prop_recursive(4, 40, 5, |inner| {
        (
            proptest::option::of(50u16..900),
            proptest::option::of(0u8..3),
            proptest::collection::vec(inner, 1..5),
        )
            .prop_map(|(width, resources, kids)| Node::Pages {
                width,
                resources,
                kids,
            })
    })
}

/// Builds `tree` under a root that always has a MediaBox, so every page has a width to inherit.
/// Returns the document and the width each page (in order) must show.
fn build(tree: &Node, root_width: u16) -> (Document, Vec<i64>) {
    let mut doc = Document::with_version("1.5");
    let shared: Vec<ObjectId> = (0..3)
        .map(|n| {
            let font = doc.add_object(dictionary! {
                "Type" => "Font", "Subtype" => "Type1", "BaseFont" => format!("F{n}"),
            });
            doc.add_object(dictionary! { "Font" => dictionary! { "F" => font } })
        })
        .collect();
    let mut widths = Vec::new();
    let root = doc.new_object_id();
    let kids = match tree {
        Node::Page { .. } => vec![add(
            &mut doc,
            tree,
            root,
            i64::from(root_width),
            &shared,
            &mut widths,
        )],
        Node::Pages { kids, .. } => kids
            .iter()
            .map(|kid| {
                add(
                    &mut doc,
                    kid,
                    root,
                    i64::from(root_width),
                    &shared,
                    &mut widths,
                )
            })
            .collect(),
    };
    let count = widths.len() as i64;
    doc.objects.insert(
        root,
        Object::Dictionary(dictionary! {
            "Type" => "Pages",
            "Kids" => kids.into_iter().map(Object::Reference).collect::<Vec<_>>(),
            "Count" => count,
            "MediaBox" => vec![0.into(), 0.into(), i64::from(root_width).into(), 800.into()],
            "Resources" => shared[0],
        }),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => root });
    doc.trailer.set("Root", catalog);
    (doc, widths)
}

fn add(
    doc: &mut Document,
    node: &Node,
    parent: ObjectId,
    inherited: i64,
    shared: &[ObjectId],
    widths: &mut Vec<i64>,
) -> ObjectId {
    let id = doc.new_object_id();
    let (width, resources) = match node {
        Node::Page { width, resources }
        | Node::Pages {
            width, resources, ..
        } => (*width, *resources),
    };
    let mut dict = dictionary! { "Parent" => parent };
    let here = width.map_or(inherited, i64::from);
    if let Some(width) = width {
        dict.set(
            "MediaBox",
            vec![0.into(), 0.into(), i64::from(width).into(), 800.into()],
        );
    }
    if let Some(index) = resources {
        dict.set("Resources", shared[usize::from(index)]);
    }
    match node {
        Node::Page { .. } => {
            let content = doc.add_object(Stream::new(dictionary! {}, b"0 0 m 1 1 l S".to_vec()));
            dict.set("Type", "Page");
            dict.set("Contents", content);
            widths.push(here);
        }
        Node::Pages { kids, .. } => {
            let before = widths.len();
            let ids: Vec<Object> = kids
                .iter()
                .map(|kid| Object::Reference(add(doc, kid, id, here, shared, widths)))
                .collect();
            dict.set("Type", "Pages");
            dict.set("Kids", ids);
            dict.set("Count", (widths.len() - before) as i64);
        }
    }
    doc.objects.insert(id, Object::Dictionary(dict));
    id
}

/// How the generated PDF is written.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// A classic cross-reference table.
    Table,
    /// Cross-reference and object streams.
    ObjectStreams,
    /// A table, then an incremental update of its own that rewrites the root's MediaBox.
    Updated,
}

fn save(mut doc: Document, form: Form) -> Vec<u8> {
    let mut out = Vec::new();
    match form {
        Form::Table => {
            doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
            doc.save_to(&mut out).unwrap();
        }
        Form::ObjectStreams => {
            let options = lopdf::SaveOptions::builder()
                .use_object_streams(true)
                .use_xref_streams(true)
                .build();
            doc.save_with_options(&mut out, options).unwrap();
        }
        Form::Updated => {
            doc.reference_table.cross_reference_type = lopdf::xref::XrefType::CrossReferenceTable;
            let root = doc
                .catalog()
                .unwrap()
                .get(b"Pages")
                .unwrap()
                .as_reference()
                .unwrap();
            let mut first = Vec::new();
            doc.save_to(&mut first).unwrap();
            let prev = Document::load_mem(&first).unwrap();
            let mut update = lopdf::IncrementalDocument::create_from(first, prev);
            // The page tree's root written again in an update of the file's own.
            update.opt_clone_object_to_new_document(root).unwrap();
            update.save_to(&mut out).unwrap();
        }
    }
    out
}

/// The width of each page of `bytes` as a reader resolves it (inheritance and references).
fn widths_of(bytes: &[u8]) -> Vec<i64> {
    let doc = Document::load_mem(bytes).unwrap();
    doc.get_pages()
        .into_values()
        .map(|page| {
            let mut node = Some(page);
            for _ in 0..32 {
                let Some(id) = node else { break };
                let dict = doc.get_dictionary(id).unwrap();
                if let Ok(media_box) = dict.get(b"MediaBox") {
                    let array = doc.dereference(media_box).unwrap().1.as_array().unwrap();
                    return array[2].as_float().unwrap() as i64;
                }
                node = dict.get(b"Parent").and_then(Object::as_reference).ok();
            }
            panic!("page {page:?} has no MediaBox")
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, ..ProptestConfig::default() })]

    #[test]
    fn any_page_tree_is_appended_with_what_each_page_inherited(
        tree in node(),
        root_width in 100u16..800,
        form in prop_oneof![Just(Form::Table), Just(Form::ObjectStreams), Just(Form::Updated)],
    ) {
        let limits = Limits::default();
        let (doc, widths) = build(&tree, root_width);
        let upload = save(doc, form);
        let report = start_report(&jpeg(20, 10), MediaType::Jpeg, &limits).unwrap();
        let reserved = memory_cost(&upload, MediaType::Pdf, Step::Report { report_bytes: 0 }, &limits)
            .unwrap();
        let appended = meter::run(u64::MAX, || {
            append_to_report(
                &report.layout,
                report.bytes.len() as u64,
                report.page_count,
                &upload,
                MediaType::Pdf,
                &limits,
            )
        });
        let (update, peak) = appended.unwrap();
        prop_assert!(peak.0 <= reserved, "peak {} over the reservation {} for {} bytes", peak.0, reserved, upload.len());
        prop_assert_eq!(update.page_count as usize, 1 + widths.len());
        let mut whole = report.bytes.clone();
        whole.extend_from_slice(&update.bytes);
        let read = widths_of(&whole);
        // The first page is the report's own image page.
        prop_assert_eq!(&read[1..], &widths[..]);
    }
}
