//! The files of the conversion benchmark corpus (written by the `corpus` binary).

use imaging_pipeline::MediaType;

/// One corpus file.
#[derive(Debug, Clone, Copy)]
pub struct CorpusFile {
    /// File name inside the corpus directory.
    pub name: &'static str,
    /// Its type.
    pub media: MediaType,
    /// What it is.
    pub description: &'static str,
    /// Part of the conversion table (the tiny files only measure start-up cost).
    pub converted: bool,
}

/// Every corpus file, in table order.
pub const CORPUS_FILES: &[CorpusFile] = &[
    CorpusFile {
        name: "photo-upright.jpg",
        media: MediaType::Jpeg,
        description: "4032x3024 photo-like JPEG, q90, no EXIF",
        converted: true,
    },
    CorpusFile {
        name: "photo-exif6.jpg",
        media: MediaType::Jpeg,
        description: "4032x3024 stored, EXIF orientation 6 (upright 3024x4032), q90",
        converted: true,
    },
    CorpusFile {
        name: "photo-exif3.jpg",
        media: MediaType::Jpeg,
        description: "4032x3024, EXIF orientation 3 (upside down), q90",
        converted: true,
    },
    CorpusFile {
        name: "screenshot.png",
        media: MediaType::Png,
        description: "2560x1600 RGB PNG, flat UI colours and text strokes",
        converted: true,
    },
    CorpusFile {
        name: "receipts-10p.pdf",
        media: MediaType::Pdf,
        description: "10-page A4 PDF, each page a 1240x1754 JPEG scan (q85) and a text line",
        converted: false,
    },
    CorpusFile {
        name: "tiny.jpg",
        media: MediaType::Jpeg,
        description: "16x16 JPEG (command-line start-up cost)",
        converted: false,
    },
    CorpusFile {
        name: "tiny.png",
        media: MediaType::Png,
        description: "16x16 PNG (command-line start-up cost)",
        converted: false,
    },
];
