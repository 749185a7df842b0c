//! A guarded front end for lopdf: a fast lexical pass over an uploaded PDF that counts what
//! parsing it would cost (tokens, objects, nesting, and the inflated size of the object and
//! cross-reference streams lopdf decompresses while loading) and refuses, before lopdf allocates
//! anything, a file over the budget. The inflation is done here with a bounded output, so a
//! small stream that would inflate to gigabytes costs at most its limit plus one buffer.

use crate::{PdfLimits, PipelineError};
use std::collections::HashMap;
use std::io::Read;

/// What parsing a PDF will cost, as counted by [`scan`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PdfCost {
    /// Tokens (numbers, names, strings, keywords, brackets) outside stream data, object
    /// streams' contents included: what lopdf turns into objects.
    pub tokens: u64,
    /// Indirect objects, those packed in object streams included.
    pub objects: u64,
    /// Bytes the object and cross-reference streams inflate to.
    pub inflated: u64,
}

impl PdfCost {
    /// A bound on the memory lopdf needs to load the file: about 192 bytes per parsed token (a
    /// damaged cross-reference makes lopdf scan and parse the objects again, which the
    /// coverage-guided fuzzing found past 128), the inflated streams, the file itself, and
    /// 128 KiB of tables any document needs.
    pub fn memory(&self, file_len: u64) -> u64 {
        self.tokens
            .saturating_mul(192)
            .saturating_add(128 * 1024)
            .saturating_add(self.inflated)
            .saturating_add(file_len)
    }
}

fn too_complex(what: &'static str) -> PipelineError {
    PipelineError::TooComplex { what }
}

/// Counts what loading `bytes` would cost and refuses it if over `limits`.
pub fn scan(bytes: &[u8], limits: &PdfLimits) -> Result<PdfCost, PipelineError> {
    let mut scanner = Scanner {
        limits,
        cost: PdfCost::default(),
        // Encrypted streams cannot be inflated here; lopdf refuses such files anyway.
        encrypted: contains(bytes, b"/Encrypt"),
        lengths: None,
    };
    scanner.lex(bytes, true)?;
    Ok(scanner.cost)
}

struct Scanner<'l> {
    limits: &'l PdfLimits,
    cost: PdfCost,
    encrypted: bool,
    /// The file's integer objects (`N G obj 42 endobj`), found once, when a stream first names
    /// its `/Length` by reference.
    lengths: Option<HashMap<(u64, u64), Option<usize>>>,
}

fn is_white(byte: u8) -> bool {
    matches!(byte, 0 | b'\t' | b'\n' | 0x0C | b'\r' | b' ')
}

fn is_delimiter(byte: u8) -> bool {
    matches!(
        byte,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

/// Where `needle` first occurs (SIMD search: stream data runs to megabytes).
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

impl Scanner<'_> {
    fn token(&mut self) -> Result<(), PipelineError> {
        self.cost.tokens += 1;
        if self.cost.tokens > self.limits.max_tokens {
            return Err(too_complex("PDF tokens"));
        }
        Ok(())
    }

    fn objects(&mut self, count: u64) -> Result<(), PipelineError> {
        self.cost.objects = self.cost.objects.saturating_add(count);
        if self.cost.objects > self.limits.max_objects {
            return Err(too_complex("PDF objects"));
        }
        Ok(())
    }

    /// Lexes `data`; `top` is the file itself (streams are followed), not an object stream.
    fn lex(&mut self, data: &[u8], top: bool) -> Result<(), PipelineError> {
        let mut at = 0;
        let mut depth: u32 = 0;
        let mut object_start = 0;
        while at < data.len() {
            let byte = data[at];
            if is_white(byte) {
                at += 1;
                continue;
            }
            match byte {
                b'%' => {
                    while at < data.len() && data[at] != b'\n' && data[at] != b'\r' {
                        at += 1;
                    }
                }
                b'(' => {
                    self.token()?;
                    let mut parens = 1u32;
                    at += 1;
                    while at < data.len() && parens > 0 {
                        match data[at] {
                            b'\\' => at += 1,
                            b'(' => parens += 1,
                            b')' => parens -= 1,
                            _ => {}
                        }
                        at += 1;
                    }
                }
                b'<' if data.get(at + 1) == Some(&b'<') => {
                    self.token()?;
                    depth += 1;
                    at += 2;
                }
                b'>' if data.get(at + 1) == Some(&b'>') => {
                    depth = depth.saturating_sub(1);
                    at += 2;
                }
                b'<' => {
                    self.token()?;
                    while at < data.len() && data[at] != b'>' {
                        at += 1;
                    }
                    at += 1;
                }
                b'[' | b'{' => {
                    self.token()?;
                    depth += 1;
                    at += 1;
                }
                b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    at += 1;
                }
                b'/' => {
                    self.token()?;
                    at += 1;
                    while at < data.len() && !is_white(data[at]) && !is_delimiter(data[at]) {
                        at += 1;
                    }
                }
                _ => {
                    let start = at;
                    while at < data.len() && !is_white(data[at]) && !is_delimiter(data[at]) {
                        at += 1;
                    }
                    if at == start {
                        // A stray delimiter such as ')' or '>'.
                        at += 1;
                        continue;
                    }
                    self.token()?;
                    match &data[start..at] {
                        b"obj" => {
                            self.objects(1)?;
                            object_start = at;
                        }
                        b"stream" if top => {
                            at = self.stream(data, object_start, at)?;
                        }
                        _ => {}
                    }
                }
            }
            if depth > self.limits.max_depth {
                return Err(too_complex("PDF nesting"));
            }
        }
        Ok(())
    }

    /// Skips the stream whose keyword ends at `keyword_end`; object and cross-reference
    /// streams are inflated under the limits (and object streams lexed). Returns where to go on.
    fn stream(
        &mut self,
        data: &[u8],
        object_start: usize,
        keyword_end: usize,
    ) -> Result<usize, PipelineError> {
        let mut start = keyword_end;
        if data.get(start) == Some(&b'\r') {
            start += 1;
        }
        if data.get(start) == Some(&b'\n') {
            start += 1;
        }
        let dict = &data[object_start.min(keyword_end)..keyword_end];
        // The stream's own /Length (direct, or the integer object it names) when it ends at
        // `endstream`, as a parser reads it: binary data (a JPEG) may carry the text `endstream`
        // itself. Otherwise the first `endstream`, which never lies past where a parser ends the
        // stream, so the bytes the guard skips are never more than the parser's.
        let length = match length_entry(dict) {
            Some(Length::Direct(length)) => Some(length),
            Some(Length::Reference(id)) => self
                .lengths
                .get_or_insert_with(|| integer_objects(data))
                .get(&id)
                .copied()
                .flatten(),
            None => None,
        };
        let declared = length.and_then(|length| {
            let end = start.checked_add(length)?;
            let after = data.get(end..)?;
            let skipped = after.iter().take_while(|b| is_white(**b)).count();
            after[skipped..].starts_with(b"endstream").then_some(end)
        });
        let end = match declared {
            Some(end) => end,
            None => match find(&data[start..], b"endstream") {
                Some(length) => start + length,
                None => return Ok(data.len()),
            },
        };
        let object_stream = contains(dict, b"/ObjStm");
        if (object_stream || contains(dict, b"/XRef")) && !self.encrypted {
            let content = self.inflate(dict, &data[start..end])?;
            if object_stream {
                self.objects(declared_count(dict))?;
                self.lex(&content, false)?;
            }
        }
        let skipped = data[end..].iter().take_while(|b| is_white(**b)).count();
        Ok(end + skipped + b"endstream".len())
    }

    /// The stream's content, inflated if its filter is FlateDecode; other filters on the
    /// streams lopdf decodes at load are refused.
    fn inflate(&mut self, dict: &[u8], raw: &[u8]) -> Result<Vec<u8>, PipelineError> {
        let flate = contains(dict, b"/FlateDecode");
        let decodes = dict.windows(6).filter(|w| *w == b"Decode").count();
        if decodes > usize::from(flate) + usize::from(contains(dict, b"/DecodeParms")) {
            return Err(too_complex("PDF object stream filters"));
        }
        let per_stream = self.limits.max_stream_inflated_bytes;
        let left = self
            .limits
            .max_inflated_bytes
            .saturating_sub(self.cost.inflated);
        let cap = per_stream.min(left);
        let content = if flate {
            // Count first, into nothing; then inflate into a buffer of exactly that size, so a
            // stream costs its inflated size once, never a doubling buffer's slack.
            let inflated = std::io::copy(
                &mut flate2::read::ZlibDecoder::new(raw).take(cap.saturating_add(1)),
                &mut std::io::sink(),
            )
            .map_err(|err| PipelineError::Corrupt(format!("object stream: {err}")))?;
            if inflated > cap {
                return Err(too_complex("PDF inflated streams"));
            }
            let mut out = Vec::with_capacity(usize::try_from(inflated).unwrap_or(0));
            flate2::read::ZlibDecoder::new(raw)
                .take(inflated)
                .read_to_end(&mut out)
                .map_err(|err| PipelineError::Corrupt(format!("object stream: {err}")))?;
            out
        } else {
            raw.to_vec()
        };
        if content.len() as u64 > cap {
            return Err(too_complex("PDF inflated streams"));
        }
        self.cost.inflated += content.len() as u64;
        Ok(content)
    }
}

/// The `/N` of an object stream's dictionary (0 if absent or malformed).
fn declared_count(dict: &[u8]) -> u64 {
    let Some(at) = find(dict, b"/N") else {
        return 0;
    };
    let digits: Vec<u8> = dict[at + 2..]
        .iter()
        .copied()
        .skip_while(|b| is_white(*b))
        .take_while(u8::is_ascii_digit)
        .collect();
    std::str::from_utf8(&digits)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// A stream dictionary's `/Length`: an integer, or a reference to one.
enum Length {
    Direct(usize),
    Reference((u64, u64)),
}

/// Digits at the start of `bytes` after white space: the number and where it ends.
fn number(bytes: &[u8]) -> Option<(u64, usize)> {
    let white = bytes.iter().take_while(|b| is_white(**b)).count();
    let digits = bytes[white..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 12 {
        return None;
    }
    let value = std::str::from_utf8(&bytes[white..white + digits])
        .ok()?
        .parse()
        .ok()?;
    Some((value, white + digits))
}

/// True if `bytes` starts with a delimiter, white space, or nothing: a token ended.
fn token_ends(bytes: &[u8]) -> bool {
    bytes
        .first()
        .is_none_or(|byte| is_white(*byte) || is_delimiter(*byte))
}

/// The last `/Length` of a dictionary.
fn length_entry(dict: &[u8]) -> Option<Length> {
    let at = memchr::memmem::rfind(dict, b"/Length")? + b"/Length".len();
    let rest = &dict[at..];
    if !token_ends(rest) {
        return None;
    }
    let (first, used) = number(rest)?;
    let rest = &rest[used..];
    if !token_ends(rest) {
        return None;
    }
    // `12 0 R` is a reference, not a length.
    if let Some((generation, used)) = number(rest) {
        let rest = &rest[used..];
        let white = rest.iter().take_while(|b| is_white(**b)).count();
        return (rest.get(white) == Some(&b'R') && token_ends(&rest[white + 1..]))
            .then_some(Length::Reference((first, generation)));
    }
    usize::try_from(first).ok().map(Length::Direct)
}

/// Every `N G obj <integer> endobj` of the file: what an indirect `/Length` names. One pass; an
/// object defined twice with different values is `None` (the parser's cross-reference decides
/// which it reads, and the guard does not guess). This is an estimate like the rest of the
/// guard: the parser then runs under the memory meter, which holds whatever the guard missed.
fn integer_objects(data: &[u8]) -> HashMap<(u64, u64), Option<usize>> {
    let mut found = HashMap::new();
    for at in memchr::memmem::find_iter(data, b"obj") {
        let after = &data[at + 3..];
        if !token_ends(after) || data[..at].ends_with(b"end") {
            continue;
        }
        let Some((value, used)) = number(after) else {
            continue;
        };
        let rest = &after[used..];
        let white = rest.iter().take_while(|b| is_white(**b)).count();
        if !rest[white..].starts_with(b"endobj") {
            continue;
        }
        // Backwards: white, the generation, white, the number.
        let before = &data[..at];
        let Some((generation, before)) = number_before(before) else {
            continue;
        };
        let Some((object, _)) = number_before(before) else {
            continue;
        };
        let value = usize::try_from(value).ok();
        found
            .entry((object, generation))
            .and_modify(|known: &mut Option<usize>| {
                if *known != value {
                    *known = None;
                }
            })
            .or_insert(value);
    }
    found
}

/// The number that ends `bytes` (after trailing white space), and what comes before it.
fn number_before(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let white = bytes.iter().rev().take_while(|b| is_white(**b)).count();
    let end = bytes.len() - white;
    let digits = bytes[..end]
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 12 {
        return None;
    }
    let start = end - digits;
    if start > 0 && !(is_white(bytes[start - 1]) || is_delimiter(bytes[start - 1])) {
        return None;
    }
    let value = std::str::from_utf8(&bytes[start..end]).ok()?.parse().ok()?;
    Some((value, &bytes[..start]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn limits() -> PdfLimits {
        PdfLimits::default()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn object_stream_pdf(content: &[u8], n: u64) -> Vec<u8> {
        let packed = zlib(content);
        let mut out = b"%PDF-1.7\n1 0 obj\n<< /Type /ObjStm /N ".to_vec();
        out.extend_from_slice(
            format!(
                "{n} /First 0 /Length {} /Filter /FlateDecode >>\nstream\n",
                packed.len()
            )
            .as_bytes(),
        );
        out.extend_from_slice(&packed);
        out.extend_from_slice(b"\nendstream\nendobj\n%%EOF\n");
        out
    }

    #[test]
    fn an_object_stream_that_inflates_past_the_limit_is_refused_before_parsing() {
        let bomb = object_stream_pdf(&vec![b' '; 64 * 1024 * 1024], 1);
        assert!(bomb.len() < 200_000, "{}", bomb.len());
        assert!(matches!(
            scan(&bomb, &limits()),
            Err(PipelineError::TooComplex {
                what: "PDF inflated streams"
            })
        ));
    }

    #[test]
    fn an_object_stream_of_a_million_tiny_objects_is_refused_for_its_tokens() {
        let content: Vec<u8> = b"0 ".repeat(2_000_000);
        let pdf = object_stream_pdf(&content, 10);
        assert!(matches!(
            scan(&pdf, &limits()),
            Err(PipelineError::TooComplex { what: "PDF tokens" })
        ));
    }

    #[test]
    fn one_huge_array_and_deep_nesting_are_refused() {
        let mut array = b"%PDF-1.7\n1 0 obj\n[".to_vec();
        array.extend_from_slice(&b"0 ".repeat(1_500_000));
        array.extend_from_slice(b"]\nendobj\n");
        assert!(matches!(
            scan(&array, &limits()),
            Err(PipelineError::TooComplex { what: "PDF tokens" })
        ));
        let mut deep = b"%PDF-1.7\n1 0 obj\n".to_vec();
        deep.extend_from_slice(&b"[".repeat(1000));
        assert!(matches!(
            scan(&deep, &limits()),
            Err(PipelineError::TooComplex {
                what: "PDF nesting"
            })
        ));
    }

    #[test]
    fn a_modest_pdf_is_counted_not_refused() {
        let pdf = object_stream_pdf(b"<< /Type /Page >> << /A [1 2 3] >>", 2);
        let cost = scan(&pdf, &limits()).unwrap();
        assert!(cost.tokens > 10 && cost.tokens < 50, "{cost:?}");
        assert_eq!(cost.objects, 3);
        assert!(cost.inflated > 0);
    }

    /// A stream whose binary data carries the text `endstream` followed by bytes that lexed as
    /// PDF would be refused (nesting past the limit), its length given as `length`.
    fn binary_stream_pdf(length: &str, length_object: &str) -> Vec<u8> {
        let mut data = b"\xff\xd8 endstream ".to_vec();
        data.extend_from_slice(&b"[".repeat(1000));
        let length = length.replace("{}", &data.len().to_string());
        let length_object = length_object.replace("{}", &data.len().to_string());
        let mut out = format!("%PDF-1.7\n5 0 obj\n<< /Length {length} >>\nstream\n").into_bytes();
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\nendstream\nendobj\n");
        out.extend_from_slice(length_object.as_bytes());
        out.extend_from_slice(b"%%EOF\n");
        out
    }

    #[test]
    fn a_stream_is_skipped_by_its_length_direct_or_by_reference() {
        for (length, object) in [("{}", ""), ("6 0 R", "6 0 obj\n{}\nendobj\n")] {
            let pdf = binary_stream_pdf(length, object);
            let cost = scan(&pdf, &limits()).unwrap();
            assert!(cost.tokens < 20, "{length}: {cost:?}");
        }
    }

    #[test]
    fn a_length_that_does_not_end_at_endstream_falls_back_to_the_first_endstream() {
        // Wrong lengths (direct, by reference, or naming no object): the guard lexes from the
        // first `endstream` on, and counts what a parser recovering the stream might read.
        for (length, object) in [
            ("7", ""),
            ("6 0 R", "6 0 obj\n7\nendobj\n"),
            ("9 0 R", "6 0 obj\n{}\nendobj\n"),
        ] {
            let pdf = binary_stream_pdf(length, object);
            assert!(
                matches!(
                    scan(&pdf, &limits()),
                    Err(PipelineError::TooComplex {
                        what: "PDF nesting"
                    })
                ),
                "{length}"
            );
        }
    }

    #[test]
    fn lengths_are_read_as_tokens() {
        assert!(matches!(
            length_entry(b"<< /Length 12 >>"),
            Some(Length::Direct(12))
        ));
        assert!(matches!(
            length_entry(b"<</Length 12 0 R>>"),
            Some(Length::Reference((12, 0)))
        ));
        assert!(length_entry(b"<< /Lengths 12 >>").is_none());
        assert!(length_entry(b"<< /Length 12 0 >>").is_none());
        assert!(length_entry(b"<< /Length 12x >>").is_none());
        let objects = integer_objects(b"1 0 obj 5 endobj 12 3 obj\n77\nendobj 2 0 obj /X endobj");
        assert_eq!(objects.get(&(1, 0)), Some(&Some(5)));
        assert_eq!(objects.get(&(12, 3)), Some(&Some(77)));
        assert_eq!(objects.len(), 2);
        let twice =
            integer_objects(b"1 0 obj 5 endobj 1 0 obj 6 endobj 2 0 obj 4 endobj 2 0 obj 4 endobj");
        assert_eq!(twice.get(&(1, 0)), Some(&None));
        assert_eq!(twice.get(&(2, 0)), Some(&Some(4)));
    }
}
