"""libvips in process (pyvips): the conversion the ingest service does, timed without process
start-up. Reads the file once, then times `thumbnail_buffer` (shrink-on-load, EXIF rotation,
Lanczos3, long edge at most MAX_EDGE) + `webpsave_buffer` (lossy, quality Q, libwebp effort
EFFORT, metadata stripped) over REPS repetitions after one warm-up, and writes the last output.

Usage: python3 vips_inprocess.py INPUT OUTPUT MAX_EDGE Q EFFORT REPS
Prints one line of JSON: {"median_ms", "bytes", "width", "height", "threads", "vips"}.
The number of libvips worker threads comes from the VIPS_CONCURRENCY environment variable.
"""

import json
import statistics
import sys
import time

import pyvips


def main() -> None:
    source, output, max_edge, quality, effort, reps = sys.argv[1:7]
    max_edge, quality, effort, reps = int(max_edge), int(quality), int(effort), int(reps)
    data = open(source, "rb").read()
    pyvips.cache_set_max(0)  # no operation cache: every repetition does the whole work

    def convert() -> tuple[bytes, int, int]:
        image = pyvips.Image.thumbnail_buffer(data, max_edge, height=max_edge, size="down")
        webp = image.webpsave_buffer(Q=quality, effort=effort, strip=True)
        return webp, image.width, image.height

    convert()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        webp, width, height = convert()
        times.append((time.perf_counter() - start) * 1e3)
    open(output, "wb").write(webp)
    print(json.dumps({
        "median_ms": statistics.median(times),
        "bytes": len(webp),
        "width": width,
        "height": height,
        "threads": pyvips.concurrency_get() if hasattr(pyvips, "concurrency_get") else None,
        "vips": pyvips.version(0) * 10000 + pyvips.version(1) * 100 + pyvips.version(2),
    }))


if __name__ == "__main__":
    main()
