// Uploads a file with tus-js-client (under Node.js), as a phone app or a browser would, and
// prints what it saw as one JSON line: the upload URL, the completing PATCH's Image-Id and
// Content-Location, and every offset the server acknowledged. Exits 1 on failure.
//
// node tus_upload.mjs ENDPOINT FILE TOKEN METADATA_JSON [CHUNK_SIZE]
import * as tus from "tus-js-client";
import fs from "node:fs";

const [endpoint, file, token, metadata, chunkSize] = process.argv.slice(2);
const bytes = fs.readFileSync(file);
const seen = { offsets: [], statuses: [] };
const upload = new tus.Upload(bytes, {
  endpoint,
  headers: { Authorization: `Bearer ${token}` },
  metadata: JSON.parse(metadata),
  uploadSize: bytes.length,
  chunkSize: chunkSize ? Number(chunkSize) : Infinity,
  retryDelays: [0, 100, 300, 1000, 2000, 4000],
  storeFingerprintForResuming: false,
  onAfterResponse(request, response) {
    seen.statuses.push(`${request.getMethod()} ${response.getStatus()}`);
    const offset = response.getHeader("Upload-Offset");
    if (offset !== undefined && offset !== null) seen.offsets.push(Number(offset));
    const imageId = response.getHeader("Image-Id");
    if (imageId) {
      seen.imageId = imageId;
      seen.location = response.getHeader("Content-Location");
    }
  },
  onError(error) {
    console.log(JSON.stringify({ error: String(error), ...seen }));
    process.exit(1);
  },
  onSuccess() {
    console.log(JSON.stringify({ url: upload.url, ...seen }));
  },
});
upload.start();
