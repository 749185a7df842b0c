"""Uploads a file with tuspy, as a Python client would (each PATCH with a SHA-1
`Upload-Checksum`), and prints one JSON line: the upload URL, the offsets it resumed from, and
what a HEAD on the finished upload says (Image-Id, Content-Location). Exits 1 on failure.

python3 tus_upload.py ENDPOINT FILE TOKEN METADATA_JSON CHUNK_SIZE
"""

import json
import sys

import requests
from tusclient import client

endpoint, path, token, metadata, chunk_size = sys.argv[1:6]
auth = {"Authorization": f"Bearer {token}"}
tus = client.TusClient(endpoint, headers=auth)
with open(path, "rb") as stream:
    uploader = tus.uploader(
        file_stream=stream,
        chunk_size=int(chunk_size),
        metadata=json.loads(metadata),
        retries=6,
        retry_delay=0.3,
        store_url=False,
        upload_checksum=True,
    )
    offsets = []
    try:
        while uploader.offset < uploader.get_file_size():
            offsets.append(uploader.offset)
            uploader.upload_chunk()
    except Exception as error:  # noqa: BLE001 - printed for the test to show
        print(json.dumps({"error": repr(error), "offsets": offsets}))
        sys.exit(1)
head = requests.head(uploader.url, headers={**auth, "Tus-Resumable": "1.0.0"}, timeout=30)
print(
    json.dumps(
        {
            "url": uploader.url,
            "offsets": offsets,
            "status": head.status_code,
            "offset": head.headers.get("Upload-Offset"),
            "imageId": head.headers.get("Image-Id"),
            "location": head.headers.get("Content-Location"),
        }
    )
)
