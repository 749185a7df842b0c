//! JPEG decoding through libjpeg-turbo (as built by `mozjpeg-sys`), for what its DCT scaling
//! makes cheap: proving a JPEG complete and decodable by entropy-decoding every coefficient at
//! 1/8 scale (only the DC term goes through an inverse DCT), and decoding a large photo straight
//! to a reduced size (M/8 of each edge) before the final resize. And JPEG encoding (a HEIC photo
//! stored as JPEG) with libjpeg-turbo's own settings: baseline, Huffman tables optimised, none of
//! mozjpeg's slower extensions.
//!
//! libjpeg reports errors through a callback that must not return; here it unwinds (the
//! library is built for that) to a `catch_unwind` at the edge of this module, and every warning
//! about corrupt data is made such an error: libjpeg would otherwise fill a damaged or truncated
//! scan with grey and carry on.
//!
//! One of the two modules of the workspace allowed `unsafe` (with `yuv`, for libwebp): every
//! block is a call into libjpeg with the state this module created, and says why it is sound.
#![allow(unsafe_code)]

use crate::PipelineError;
use crate::arrival::{Arrival, Next};
use bytes::Bytes;
use mozjpeg_sys as ffi;
use std::mem;
use std::os::raw::c_int;
use std::panic::{self, AssertUnwindSafe};

/// Scans a progressive JPEG may have. Real encoders write about ten; each scan re-reads the
/// whole coefficient buffer, so thousands of tiny scans would be a cheap way to burn CPU.
const MAX_SCANS: c_int = 500;

/// Pixels decoded at a reduced scale.
#[derive(Debug)]
pub(crate) struct Scaled {
    /// 8-bit RGB, row after row.
    pub pixels: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Encodes 8-bit RGB (`channels` 3) or grey (`channels` 1) pixels, row after row, as a baseline
/// JFIF JPEG at `quality` (1 to 100; chroma subsampled 4:2:0 as libjpeg does by default), with
/// no metadata.
pub(crate) fn encode(
    pixels: &[u8],
    (width, height): (u32, u32),
    channels: u8,
    quality: u8,
) -> Result<Vec<u8>, PipelineError> {
    let row_len = width as usize * usize::from(channels);
    if !matches!(channels, 1 | 3) || pixels.len() != row_len * height as usize || row_len == 0 {
        return Err(PipelineError::Corrupt(
            "pixels do not fill the image".to_owned(),
        ));
    }
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut encoder = Encoder::new();
        encoder.compress(pixels, (width, height), channels, quality)
    }));
    match outcome {
        Ok(bytes) => Ok(bytes),
        Err(payload) => match payload.downcast::<Failure>() {
            Ok(failure) => Err(PipelineError::Corrupt(failure.0)),
            Err(other) => panic::resume_unwind(other),
        },
    }
}

/// libjpeg's compressor, its error handler and the growing buffer it writes to (boxed: libjpeg
/// keeps pointers to them), destroyed on drop, also while unwinding from an error.
struct Encoder {
    cinfo: Box<ffi::jpeg_compress_struct>,
    _err: Box<ffi::jpeg_error_mgr>,
    sink: Box<Sink>,
}

/// A destination manager writing into a `Vec` (the manager first, so libjpeg's pointer to it is
/// a pointer to the whole).
#[repr(C)]
struct Sink {
    manager: ffi::jpeg_destination_mgr,
    out: Vec<u8>,
}

/// The first output buffer; it doubles whenever libjpeg fills it.
const SINK_START: usize = 64 * 1024;

impl Encoder {
    /// Only call inside [`encode`]'s `catch_unwind`.
    fn new() -> Self {
        // SAFETY: plain C data for which all-zero is the state libjpeg expects before
        // `jpeg_std_error` / `jpeg_create_compress` fill them in.
        let mut err: Box<ffi::jpeg_error_mgr> = Box::new(unsafe { mem::zeroed() });
        unsafe { ffi::jpeg_std_error(&mut err) };
        err.error_exit = Some(error_exit);
        let mut cinfo: Box<ffi::jpeg_compress_struct> = Box::new(unsafe { mem::zeroed() });
        cinfo.common.err = &raw mut *err;
        // SAFETY: `cinfo` has its error manager; both boxes live as long as the encoder.
        unsafe { ffi::jpeg_create_compress(&raw mut *cinfo) };
        let mut sink = Box::new(Sink {
            manager: ffi::jpeg_destination_mgr {
                next_output_byte: std::ptr::null_mut(),
                free_in_buffer: 0,
                init_destination: Some(sink_init),
                empty_output_buffer: Some(sink_grow),
                term_destination: Some(sink_term),
            },
            out: Vec::new(),
        });
        cinfo.dest = &raw mut sink.manager;
        Encoder {
            cinfo,
            _err: err,
            sink,
        }
    }

    fn compress(
        &mut self,
        pixels: &[u8],
        (width, height): (u32, u32),
        channels: u8,
        quality: u8,
    ) -> Vec<u8> {
        let cinfo = &mut *self.cinfo;
        cinfo.image_width = width;
        cinfo.image_height = height;
        cinfo.input_components = c_int::from(channels);
        cinfo.in_color_space = if channels == 1 {
            ffi::J_COLOR_SPACE::JCS_GRAYSCALE
        } else {
            ffi::J_COLOR_SPACE::JCS_RGB
        };
        // SAFETY: the compressor was created; errors unwind to `encode`. The profile must be set
        // before the defaults, which it selects.
        unsafe {
            ffi::jpeg_c_set_int_param(
                cinfo,
                ffi::J_INT_PARAM::JINT_COMPRESS_PROFILE,
                ffi::JCP_FASTEST as c_int,
            );
            ffi::jpeg_set_defaults(cinfo);
            ffi::jpeg_set_quality(cinfo, c_int::from(quality.clamp(1, 100)), 1);
        }
        cinfo.optimize_coding = 1;
        // SAFETY: as above; `pixels` holds `height` rows of `row_len` bytes (checked by
        // `encode`), and libjpeg reads one row per call.
        unsafe { ffi::jpeg_start_compress(cinfo, 1) };
        let row_len = width as usize * usize::from(channels);
        for row in pixels.chunks_exact(row_len) {
            let row_ptr = row.as_ptr();
            let written = unsafe { ffi::jpeg_write_scanlines(cinfo, &raw const row_ptr, 1) };
            if written != 1 {
                fail("JPEG encoder took no row");
            }
        }
        unsafe { ffi::jpeg_finish_compress(cinfo) };
        mem::take(&mut self.sink.out)
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // SAFETY: created in `new`; destroying frees every pool libjpeg allocated.
        unsafe { ffi::jpeg_destroy_compress(&mut self.cinfo) };
    }
}

/// The [`Sink`] of a compressor that [`Encoder::new`] set up.
fn sink_of(cinfo: &mut ffi::jpeg_compress_struct) -> &mut Sink {
    // SAFETY: `dest` points to the `manager` field, the first field of a `repr(C)` `Sink` that
    // the encoder owns and keeps alive while libjpeg runs.
    unsafe { &mut *cinfo.dest.cast::<Sink>() }
}

unsafe extern "C-unwind" fn sink_init(cinfo: &mut ffi::jpeg_compress_struct) {
    let sink = sink_of(cinfo);
    sink.out = vec![0; SINK_START];
    sink.manager.next_output_byte = sink.out.as_mut_ptr();
    sink.manager.free_in_buffer = sink.out.len();
}

unsafe extern "C-unwind" fn sink_grow(cinfo: &mut ffi::jpeg_compress_struct) -> ffi::boolean {
    let sink = sink_of(cinfo);
    // libjpeg calls this when the whole buffer is full.
    let used = sink.out.len();
    sink.out.resize(used * 2, 0);
    // SAFETY: `used` is within the resized buffer.
    sink.manager.next_output_byte = unsafe { sink.out.as_mut_ptr().add(used) };
    sink.manager.free_in_buffer = sink.out.len() - used;
    1
}

unsafe extern "C-unwind" fn sink_term(cinfo: &mut ffi::jpeg_compress_struct) {
    let sink = sink_of(cinfo);
    let used = sink.out.len() - sink.manager.free_in_buffer;
    sink.out.truncate(used);
}

/// An error raised by libjpeg, carried by the unwind to [`run`].
struct Failure(String);

/// Checks that a JPEG decodes without error or corrupt-data warning, reading every entropy-coded
/// coefficient of every scan up to the end-of-image marker, at 1/8 scale and one row at a time
/// (memory: the decoder's tables, and the coefficients of a progressive image, which must fit in
/// `max_bytes`).
pub(crate) fn verify(bytes: &[u8], max_bytes: u64) -> Result<(), PipelineError> {
    run(Input::Whole(bytes), max_bytes, |decoder| {
        decoder.cinfo.scale_num = 1;
        decoder.cinfo.scale_denom = 8;
        decoder.cinfo.do_fancy_upsampling = 0;
        decoder.decompress(false);
    })
}

/// The smallest scale `M/8` (1 to 8) at which an image of `stored` size is still at least
/// `target` in both edges.
pub(crate) fn scale_for(stored: (u32, u32), target: (u32, u32)) -> u8 {
    let scaled = |side: u32, m: u32| (u64::from(side) * u64::from(m)).div_ceil(8);
    (1..=8u8)
        .find(|&m| {
            scaled(stored.0, u32::from(m)) >= u64::from(target.0)
                && scaled(stored.1, u32::from(m)) >= u64::from(target.1)
        })
        .unwrap_or(8)
}

/// Decodes a JPEG to 8-bit RGB at `numerator/8` of its size (libjpeg rounds each edge up), its
/// whole-image buffers within `max_bytes`. `Ok(None)` for colour spaces libjpeg cannot turn into
/// RGB (CMYK, YCCK).
pub(crate) fn decode_rgb_scaled(
    bytes: &[u8],
    numerator: u8,
    max_bytes: u64,
) -> Result<Option<Scaled>, PipelineError> {
    decode_scaled(
        Input::Whole(bytes),
        numerator,
        max_bytes,
        ffi::J_COLOR_SPACE::JCS_RGB,
    )
}

/// The same in 8-bit grey (the luma alone, without upsampling the chroma).
pub(crate) fn decode_grey_scaled(
    input: Input<'_>,
    numerator: u8,
    max_bytes: u64,
) -> Result<Option<Scaled>, PipelineError> {
    decode_scaled(
        input,
        numerator,
        max_bytes,
        ffi::J_COLOR_SPACE::JCS_GRAYSCALE,
    )
}

fn decode_scaled(
    input: Input<'_>,
    numerator: u8,
    max_bytes: u64,
    out: ffi::J_COLOR_SPACE,
) -> Result<Option<Scaled>, PipelineError> {
    run(input, max_bytes, |decoder| {
        let space = decoder.cinfo.jpeg_color_space;
        if !matches!(
            space,
            ffi::J_COLOR_SPACE::JCS_YCbCr
                | ffi::J_COLOR_SPACE::JCS_GRAYSCALE
                | ffi::J_COLOR_SPACE::JCS_RGB
        ) {
            return None;
        }
        decoder.cinfo.out_color_space = out;
        decoder.cinfo.scale_num = numerator.clamp(1, 8).into();
        decoder.cinfo.scale_denom = 8;
        if out == ffi::J_COLOR_SPACE::JCS_GRAYSCALE {
            decoder.cinfo.do_fancy_upsampling = 0;
        }
        let (pixels, width, height) = decoder.decompress(true);
        Some(Scaled {
            pixels,
            width,
            height,
        })
    })
}

/// One plane of a JPEG's raw (YCbCr) output: `rows` of `stride` samples, of which the top-left
/// `width` x `height` are the image (the rest is the padding of the last DCT blocks).
#[derive(Debug)]
pub struct Plane {
    /// `rows` x `stride` samples.
    pub samples: Vec<u8>,
    /// Samples per row.
    pub stride: usize,
    /// Rows.
    pub rows: usize,
    /// Width of the image area.
    pub width: u32,
    /// Height of the image area.
    pub height: u32,
}

/// Decodes a YCbCr (three components) or grey JPEG at `numerator/8` of its size to its planes
/// as stored (full-range YCbCr as JFIF defines it, or grey; luma first, then Cb and Cr, each at
/// its own sampled size),
/// without libjpeg's upsampling or colour conversion (its raw output), whole-image buffers within
/// `max_bytes`. `Ok(None)` for other colour spaces (RGB, CMYK, YCCK).
pub(crate) fn decode_planes_scaled(
    bytes: &[u8],
    numerator: u8,
    max_bytes: u64,
) -> Result<Option<Vec<Plane>>, PipelineError> {
    run(Input::Whole(bytes), max_bytes, |decoder| {
        let cinfo = &mut *decoder.cinfo;
        let ycbcr =
            cinfo.jpeg_color_space == ffi::J_COLOR_SPACE::JCS_YCbCr && cinfo.num_components == 3;
        let grey = cinfo.jpeg_color_space == ffi::J_COLOR_SPACE::JCS_GRAYSCALE
            && cinfo.num_components == 1;
        if !(ycbcr || grey) {
            return None;
        }
        cinfo.raw_data_out = 1;
        cinfo.scale_num = numerator.clamp(1, 8).into();
        cinfo.scale_denom = 8;
        decoder.decompress_raw()
    })
}

/// The DCT scale libjpeg-turbo gives component `comp` when the image is decoded at
/// `numerator/8`: chroma is scaled up in the inverse DCT (up to 8/8) rather than upsampled
/// afterwards (`jdmaster.c`, `jpeg_calc_output_dimensions`).
fn component_scale(cinfo: &ffi::jpeg_decompress_struct, comp: &ffi::jpeg_component_info) -> usize {
    let min = cinfo.scale_num as usize;
    let (max_h, max_v) = (
        cinfo.max_h_samp_factor as usize,
        cinfo.max_v_samp_factor as usize,
    );
    let (h, v) = (comp.h_samp_factor as usize, comp.v_samp_factor as usize);
    let mut size = min;
    while size < 8
        && (max_h * min).is_multiple_of(h * size * 2)
        && (max_v * min).is_multiple_of(v * size * 2)
    {
        size *= 2;
    }
    size
}

/// What libjpeg itself set for a component after `jpeg_start_decompress`: its DCT scale and its
/// sampled width and height (fields the bindings keep private).
fn component_layout(comp: *const ffi::jpeg_component_info) -> (usize, u32, u32) {
    let base = std::mem::offset_of!(ffi::jpeg_component_info, height_in_blocks);
    // SAFETY: `comp` points to a live `jpeg_component_info` (`repr(C)`): after the public
    // `height_in_blocks` (a `JDIMENSION`) come `DCT_scaled_size` (`c_int`), `downsampled_width`
    // and `downsampled_height` (`JDIMENSION`), all 4-byte fields inside the struct. Were the
    // layout another (libjpeg 7's ABI), the values would disagree with `component_scale`, and
    // the caller refuses them before using any.
    unsafe {
        let at = comp.cast::<u8>().add(base);
        let size = at.add(4).cast::<c_int>().read();
        let width = at.add(8).cast::<u32>().read();
        let height = at.add(12).cast::<u32>().read();
        (usize::try_from(size).unwrap_or(0), width, height)
    }
}

/// A decompressor over `bytes` with its header read, handed to `body`; libjpeg errors and
/// corrupt-data warnings become [`PipelineError::Corrupt`]. libjpeg's whole-image arrays (the
/// coefficients of a progressive or multi-scan image) may take at most `max_bytes`: past that it
/// would need a backing store, which this build refuses.
fn run<T>(
    input: Input<'_>,
    max_bytes: u64,
    body: impl FnOnce(&mut Decoder) -> T,
) -> Result<T, PipelineError> {
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut decoder = Decoder::new(input, max_bytes);
        body(&mut decoder)
    }));
    match outcome {
        Ok(value) => Ok(value),
        Err(payload) => match payload.downcast::<Failure>() {
            Ok(failure) => Err(PipelineError::Corrupt(failure.0)),
            Err(other) => panic::resume_unwind(other),
        },
    }
}

/// What a decoder reads: a whole file in memory, or an upload as it arrives.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Input<'a> {
    Whole(&'a [u8]),
    Arriving(&'a Arrival),
}

/// A libjpeg data source reading an [`Arrival`] chunk by chunk, waiting for each (the decoder
/// runs on a thread of its own). It holds the chunk being read; libjpeg's pointer is into it.
#[repr(C)]
struct ArrivalSource {
    /// First, so that libjpeg's `src` pointer is also this struct's.
    manager: ffi::jpeg_source_mgr,
    arrival: *const Arrival,
    current: Bytes,
}

impl Drop for ArrivalSource {
    fn drop(&mut self) {
        // The last chunk read goes back too: the reading thread frees none.
        let read = mem::take(&mut self.current);
        // SAFETY: the arrival outlives the decoder that owns this source (see `arrival_fill`).
        unsafe { &*self.arrival }.spend(read);
    }
}

/// The source behind a decompressor that reads an [`Arrival`].
///
/// # Safety
/// `cinfo.src` must be the `manager` of a live [`ArrivalSource`] (as `Decoder::new` sets it).
unsafe fn arrival_source(cinfo: &mut ffi::jpeg_decompress_struct) -> &mut ArrivalSource {
    // SAFETY: per the contract, `src` points at the first field of a `repr(C)` ArrivalSource.
    unsafe { &mut *cinfo.src.cast::<ArrivalSource>() }
}

unsafe extern "C-unwind" fn arrival_init(_cinfo: &mut ffi::jpeg_decompress_struct) {}

unsafe extern "C-unwind" fn arrival_term(_cinfo: &mut ffi::jpeg_decompress_struct) {}

/// The next chunk (waiting for it); an upload that ends before the file does, or fails, is an
/// error, as a truncated file in memory is.
unsafe extern "C-unwind" fn arrival_fill(cinfo: &mut ffi::jpeg_decompress_struct) -> ffi::boolean {
    // SAFETY: only installed by `Decoder::new` with an ArrivalSource; the arrival outlives the
    // decoder (both are borrowed for the whole `run`).
    let source = unsafe { arrival_source(cinfo) };
    // SAFETY: as above.
    let arrival = unsafe { &*source.arrival };
    loop {
        match arrival.next() {
            Next::Chunk(chunk) if chunk.is_empty() => {}
            Next::Chunk(chunk) => {
                // The chunk read so far goes back to be freed where it was allocated.
                let read = std::mem::replace(&mut source.current, chunk);
                arrival.spend(read);
                source.manager.next_input_byte = source.current.as_ptr();
                source.manager.bytes_in_buffer = source.current.len();
                return 1;
            }
            Next::End => fail("Premature end of JPEG file"),
            Next::Failed => fail("the upload ended before its last byte"),
        }
    }
}

/// Skips `count` bytes (a segment libjpeg does not read), across chunks.
unsafe extern "C-unwind" fn arrival_skip(
    cinfo: &mut ffi::jpeg_decompress_struct,
    count: std::os::raw::c_long,
) {
    let Ok(mut left) = usize::try_from(count) else {
        return;
    };
    loop {
        // SAFETY: as in `arrival_fill`.
        let source = unsafe { arrival_source(cinfo) };
        let manager = &mut source.manager;
        if left <= manager.bytes_in_buffer {
            // SAFETY: `left` bytes remain in the current chunk.
            manager.next_input_byte = unsafe { manager.next_input_byte.add(left) };
            manager.bytes_in_buffer -= left;
            return;
        }
        left -= manager.bytes_in_buffer;
        manager.bytes_in_buffer = 0;
        // SAFETY: as above; it refills the buffer or unwinds.
        unsafe { arrival_fill(cinfo) };
    }
}

/// libjpeg's state, its error handler and progress monitor (boxed: libjpeg keeps pointers to
/// them), and the data source of an arriving upload, destroyed on drop, also while unwinding
/// from an error.
struct Decoder {
    cinfo: Box<ffi::jpeg_decompress_struct>,
    _err: Box<ffi::jpeg_error_mgr>,
    _progress: Box<ffi::jpeg_progress_mgr>,
    _source: Option<Box<ArrivalSource>>,
}

impl Decoder {
    /// Creates the decompressor and reads the header. Only call inside [`run`].
    fn new(input: Input<'_>, max_bytes: u64) -> Self {
        // SAFETY: both structs are plain C data for which all-zero is the state libjpeg expects
        // before `jpeg_std_error` / `jpeg_create_decompress` fill them in.
        let mut err: Box<ffi::jpeg_error_mgr> = Box::new(unsafe { mem::zeroed() });
        unsafe { ffi::jpeg_std_error(&mut err) };
        err.error_exit = Some(error_exit);
        err.emit_message = Some(emit_message);
        let mut progress: Box<ffi::jpeg_progress_mgr> = Box::new(unsafe { mem::zeroed() });
        progress.progress_monitor = Some(progress_monitor);
        let mut cinfo: Box<ffi::jpeg_decompress_struct> = Box::new(unsafe { mem::zeroed() });
        cinfo.common.err = &raw mut *err;
        // SAFETY: `cinfo` has its error manager; the boxes outlive every libjpeg call, since
        // they are dropped (after `jpeg_destroy_decompress`) with the returned value. `bytes`
        // outlives the decoder, which never leaves `run`'s closure.
        unsafe { ffi::jpeg_create_decompress(&raw mut *cinfo) };
        let mut decoder = Decoder {
            cinfo,
            _err: err,
            _progress: progress,
            _source: None,
        };
        decoder.cinfo.common.progress = &raw mut *decoder._progress;
        // SAFETY: `jpeg_create_decompress` set up the memory manager `mem` points to.
        unsafe {
            (*decoder.cinfo.common.mem).max_memory_to_use =
                std::os::raw::c_long::try_from(max_bytes.max(1))
                    .unwrap_or(std::os::raw::c_long::MAX);
        }
        match input {
            Input::Whole(bytes) => {
                let length = bytes.len().try_into().unwrap_or(std::os::raw::c_ulong::MAX);
                // SAFETY: `bytes` outlives the decoder, which never leaves `run`'s closure.
                unsafe { ffi::jpeg_mem_src(&mut decoder.cinfo, bytes.as_ptr(), length) };
            }
            Input::Arriving(arrival) => {
                let mut source = Box::new(ArrivalSource {
                    manager: ffi::jpeg_source_mgr {
                        next_input_byte: std::ptr::null(),
                        bytes_in_buffer: 0,
                        init_source: Some(arrival_init),
                        fill_input_buffer: Some(arrival_fill),
                        skip_input_data: Some(arrival_skip),
                        resync_to_restart: Some(ffi::jpeg_resync_to_restart),
                        term_source: Some(arrival_term),
                    },
                    arrival: std::ptr::from_ref(arrival),
                    current: Bytes::new(),
                });
                // The box's address is stable; it is dropped after `jpeg_destroy_decompress`.
                decoder.cinfo.src = &raw mut source.manager;
                decoder._source = Some(source);
            }
        }
        // SAFETY: the source is set; errors unwind to `run`.
        unsafe { ffi::jpeg_read_header(&mut decoder.cinfo, 1) };
        decoder
    }

    /// Decompresses the image and reads on to the end-of-image marker: the output rows and their
    /// size, all rows if `keep`, else one row buffer that each row overwrites.
    fn decompress(&mut self, keep: bool) -> (Vec<u8>, u32, u32) {
        // SAFETY: the header was read; errors unwind to `run`.
        unsafe { ffi::jpeg_start_decompress(&mut self.cinfo) };
        let (width, height) = (self.cinfo.output_width, self.cinfo.output_height);
        let row_len = self.row_len();
        let mut pixels = vec![
            0u8;
            if keep {
                row_len * height as usize
            } else {
                row_len
            }
        ];
        for y in 0..height as usize {
            let at = if keep { y * row_len } else { 0 };
            self.read_row(&mut pixels[at..at + row_len]);
        }
        self.finish();
        (pixels, width, height)
    }

    /// Decompresses the image as raw planes (`raw_data_out` set) and reads on to the end-of-image
    /// marker. `None` if libjpeg's layout is not the one computed here (then nothing was read).
    fn decompress_raw(&mut self) -> Option<Vec<Plane>> {
        // SAFETY: the header was read and `raw_data_out` set; errors unwind to `run`.
        unsafe { ffi::jpeg_start_decompress(&mut self.cinfo) };
        let cinfo = &*self.cinfo;
        let count = usize::try_from(cinfo.num_components).unwrap_or(0);
        let max_v = usize::try_from(cinfo.max_v_samp_factor).unwrap_or(0);
        if !(1..=3).contains(&count) || !(1..=4).contains(&max_v) {
            return None;
        }
        // Rows of DCT blocks of the largest vertical sampling (libjpeg's iMCU rows).
        let imcu_rows = (cinfo.image_height as usize).div_ceil(max_v * 8);
        let mut planes = Vec::with_capacity(count);
        let mut per_call = Vec::with_capacity(count);
        for index in 0..count {
            // SAFETY: `comp_info` holds `num_components` entries once the header is read.
            let comp_ptr = unsafe { cinfo.comp_info.add(index) };
            let comp = unsafe { &*comp_ptr };
            let size = component_scale(cinfo, comp);
            let (libjpeg_size, width, height) = component_layout(comp_ptr);
            let v = usize::try_from(comp.v_samp_factor).unwrap_or(0);
            if libjpeg_size != size || !(1..=4).contains(&v) || width == 0 || height == 0 {
                return None;
            }
            // libjpeg writes every block of the component, `v` block rows per iMCU row.
            let stride = comp.width_in_blocks as usize * size;
            let rows = imcu_rows * v * size;
            if (width as usize) > stride || (height as usize) > rows {
                return None;
            }
            planes.push(Plane {
                samples: vec![0; stride * rows],
                stride,
                rows,
                width,
                height,
            });
            per_call.push(v * size);
        }
        let mut pointers: Vec<Vec<*mut u8>> = per_call
            .iter()
            .map(|&n| vec![std::ptr::null_mut(); n])
            .collect();
        let mut image: Vec<*mut *mut u8> = Vec::with_capacity(count);
        let mut row = 0;
        while self.cinfo.output_scanline < self.cinfo.output_height {
            if row >= imcu_rows {
                fail("JPEG decoded more rows than it has");
            }
            image.clear();
            for ((plane, rows), n) in planes.iter_mut().zip(&mut pointers).zip(&per_call) {
                let start = row * n * plane.stride;
                for (i, pointer) in rows.iter_mut().enumerate() {
                    // SAFETY: rows `row * n .. row * n + n` of the plane lie within its
                    // `rows` (= iMCU rows x n) rows of `stride` samples.
                    *pointer = unsafe { plane.samples.as_mut_ptr().add(start + i * plane.stride) };
                }
                image.push(rows.as_mut_ptr());
            }
            // SAFETY: one row pointer per sample row libjpeg writes for each component in one
            // iMCU row (v_samp_factor x DCT scale), each to `stride` writable samples (its width
            // in blocks x DCT scale); `max_lines` is above any iMCU row's height.
            let read = unsafe { ffi::jpeg_read_raw_data(&mut self.cinfo, image.as_mut_ptr(), 64) };
            if read == 0 {
                fail("JPEG ended before its last row");
            }
            row += 1;
        }
        self.finish();
        Some(planes)
    }

    /// Bytes of one output row.
    fn row_len(&self) -> usize {
        self.cinfo.output_width as usize * self.cinfo.output_components.max(1) as usize
    }

    /// Reads the next output row into `row` (at least [`Self::row_len`] bytes).
    fn read_row(&mut self, row: &mut [u8]) {
        assert!(row.len() >= self.row_len(), "row buffer too short");
        let mut row_ptr = row.as_mut_ptr();
        // SAFETY: `row` holds a whole output row; libjpeg writes one row at most.
        let read = unsafe { ffi::jpeg_read_scanlines(&mut self.cinfo, &raw mut row_ptr, 1) };
        if read != 1 {
            fail("JPEG ended before its last row");
        }
    }

    /// Reads the rest of the file up to the end-of-image marker.
    fn finish(&mut self) {
        // SAFETY: every row was read; errors unwind to `run`.
        unsafe { ffi::jpeg_finish_decompress(&mut self.cinfo) };
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created in `new`; destroying also frees every pool libjpeg allocated.
        unsafe { ffi::jpeg_destroy_decompress(&mut self.cinfo) };
    }
}

fn fail(message: impl Into<String>) -> ! {
    // `resume_unwind` does not run the panic hook: a refused upload is not a crash.
    panic::resume_unwind(Box::new(Failure(message.into())))
}

/// libjpeg's own text of the current message.
fn message(cinfo: &mut ffi::jpeg_common_struct) -> String {
    // SAFETY: `err` is the manager set up in `Decoder::new`; `format_message` writes at most
    // JMSG_LENGTH_MAX (80) bytes, NUL-terminated.
    unsafe {
        let err = &*cinfo.err;
        let Some(format) = err.format_message else {
            return format!("JPEG error {}", err.msg_code);
        };
        let buffer = [0u8; 80];
        format(cinfo, &buffer);
        let text = buffer.split(|&c| c == 0).next().unwrap_or_default();
        String::from_utf8_lossy(text).into_owned()
    }
}

extern "C-unwind" fn error_exit(cinfo: &mut ffi::jpeg_common_struct) {
    fail(message(cinfo))
}

/// Warnings (level -1) about damaged data are errors; notices about the file's dialect are not.
extern "C-unwind" fn emit_message(cinfo: &mut ffi::jpeg_common_struct, level: c_int) {
    if level >= 0 {
        return;
    }
    // SAFETY: as in `message`.
    let code = unsafe { (*cinfo.err).msg_code };
    let benign = [
        ffi::JWRN_ADOBE_XFORM,
        ffi::JWRN_JFIF_MAJOR,
        ffi::JWRN_BOGUS_ICC,
        // Padding between segments some cameras write; the coded data is intact.
        ffi::JWRN_EXTRANEOUS_DATA,
    ];
    if !benign.contains(&(code as ffi::J_MESSAGE_CODE)) {
        fail(message(cinfo))
    }
}

extern "C-unwind" fn progress_monitor(cinfo: &mut ffi::jpeg_common_struct) {
    if cinfo.is_decompressor == 0 {
        return;
    }
    // SAFETY: a decompressor's common fields are the first field of its
    // `jpeg_decompress_struct` (both are `repr(C)`), and only `Decoder` installs this monitor.
    let scans = unsafe {
        (*(std::ptr::from_mut(cinfo).cast::<ffi::jpeg_decompress_struct>())).input_scan_number
    };
    if scans > MAX_SCANS {
        fail(format!("JPEG has more than {MAX_SCANS} scans"));
    }
}

#[cfg(test)]
mod tests {
    use super::{scale_for, verify};
    use crate::PipelineError;

    #[test]
    fn a_progressive_image_must_fit_its_coefficients_in_the_allowance() {
        let file = imaging_fixtures::PROGRESSIVE_JPEG;
        // 403x302, 3 components: about 730 KB of coefficients at 2 bytes a sample.
        assert!(verify(file, 4 << 20).is_ok());
        let result = verify(file, 100_000);
        assert!(
            matches!(result, Err(PipelineError::Corrupt(_))),
            "{result:?}"
        );
    }

    #[test]
    fn a_progressive_image_needs_the_coefficients_the_header_counts_and_little_more() {
        let file = imaging_fixtures::PROGRESSIVE_JPEG;
        let layout = crate::header::jpeg_layout(file).unwrap();
        assert!(layout.buffered);
        assert!(verify(file, layout.coefficient_bytes + (512 << 10)).is_ok());
        assert!(verify(file, layout.coefficient_bytes * 9 / 10).is_err());
        // A baseline image keeps no coefficients: tables and rows are enough.
        let baseline = imaging_fixtures::jpeg(640, 480);
        assert!(!crate::header::jpeg_layout(&baseline).unwrap().buffered);
        assert!(verify(&baseline, 512 << 10).is_ok());
    }

    #[test]
    fn the_scale_is_the_smallest_that_keeps_both_edges_at_the_target() {
        assert_eq!(scale_for((4032, 3024), (2048, 1536)), 5);
        assert_eq!(scale_for((3024, 4032), (1536, 2048)), 5);
        assert_eq!(scale_for((4096, 3072), (2048, 1536)), 4);
        assert_eq!(scale_for((2100, 1000), (2048, 975)), 8);
        assert_eq!(scale_for((16000, 100), (2048, 13)), 2);
        assert_eq!(scale_for((800, 600), (800, 600)), 8);
    }
}
