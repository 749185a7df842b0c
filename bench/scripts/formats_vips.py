"""libvips in process (pyvips) for the formats benchmark: decodes a HEIC and writes a JPEG at
quality 90 (job `jpeg`), or makes a 2048 px WebP at q80, libwebp effort 2 (job `webp`), with no
operation cache. One warm-up, then REPS timed runs.

Usage: python3 formats_vips.py JOB INPUT OUTPUT REPS
Prints: median wall ms, CPU ms of the last run, peak RSS of the process in KiB.
"""

import resource
import statistics
import sys
import time

import pyvips


def main() -> None:
    job, source, output, reps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    data = open(source, "rb").read()
    pyvips.cache_set_max(0)

    def run() -> bytes:
        if job == "jpeg":
            image = pyvips.Image.new_from_buffer(data, "")
            return image.jpegsave_buffer(Q=90, strip=True)
        image = pyvips.Image.thumbnail_buffer(data, 2048, height=2048, size="down")
        return image.webpsave_buffer(Q=80, effort=2, strip=True)

    run()
    times = []
    cpu = 0.0
    for _ in range(reps):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = run()
        times.append((time.perf_counter() - start) * 1e3)
        cpu = (time.process_time() - start_cpu) * 1e3
    open(output, "wb").write(out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{statistics.median(times):.3f} {cpu:.3f} {peak}")


if __name__ == "__main__":
    main()
