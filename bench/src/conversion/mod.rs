//! Pieces of the conversion benchmark: the corpus file list, output quality (SSIM, PSNR), the
//! stage-by-stage replica of the WebP conversion and the command-line baselines.

pub mod cli;
pub mod corpus;
pub mod quality;
pub mod stages;
