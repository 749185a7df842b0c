"""A TLS-terminating TCP proxy for the CLI's TLS test: accepts TLS (ALPN h2) on PORT with CERT and
KEY, and forwards the decrypted bytes to 127.0.0.1:UPSTREAM (the service's plaintext gRPC port).

Usage: tls_proxy.py PORT CERT KEY UPSTREAM
"""

import asyncio
import ssl
import sys

PORT, CERT, KEY, UPSTREAM = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer):
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", UPSTREAM)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))


async def main():
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CERT, KEY)
    context.set_alpn_protocols(["h2"])
    server = await asyncio.start_server(handle, "127.0.0.1", PORT, ssl=context)
    async with server:
        await server.serve_forever()


asyncio.run(main())
