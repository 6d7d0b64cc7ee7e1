#!/usr/bin/env python3
"""A small OpenAI-style streaming upstream for the streaming benchmark.

    python bench/sse_upstream.py --port 18081 --chunks 20 --delay-ms 5

Every POST answers with Server-Sent Events: a role chunk at once, then `--chunks` content
chunks (`tok0 `, `tok1 `, ...) `--delay-ms` apart, a finish chunk and `data: [DONE]`; GET
answers a model list (for readiness probes). Unlike tests/mock-upstream it sets TCP_NODELAY
on every connection, as real providers do: without it, Nagle's algorithm holds each small
chunk until the previous one is acknowledged, and a peer that delays its ACKs (40 ms on
Linux) turns that into a 40 ms stall.
"""

import argparse
import asyncio
import json
import socket


def event(obj) -> bytes:
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def chunk(model: str, delta: dict, finish=None) -> bytes:
    return event({"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1700000000,
                  "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                               "finish_reason": finish}]})


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, chunks: int, delay: float):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method = lines[0].split(" ", 1)[0]
            length = 0
            for line in lines[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v.strip())
            body = await reader.readexactly(length) if length else b""
            if method != "POST":
                payload = b'{"object":"list","data":[{"id":"bench-stream","object":"model","owned_by":"bench"}]}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(payload), payload))
                await writer.drain()
                continue
            try:
                model = json.loads(body).get("model", "bench")
            except ValueError:
                model = "bench"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n"
                         + chunk(model, {"role": "assistant", "content": ""}))
            await writer.drain()
            for i in range(chunks):
                await asyncio.sleep(delay)
                writer.write(chunk(model, {"content": f"tok{i} "}))
                await writer.drain()
            await asyncio.sleep(delay)
            done = b"data: [DONE]\n\n"
            writer.write(chunk(model, {}, "stop") + b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=18081)
    ap.add_argument("--chunks", type=int, default=20)
    ap.add_argument("--delay-ms", type=float, default=5.0)
    a = ap.parse_args()
    server = await asyncio.start_server(lambda r, w: handle(r, w, a.chunks, a.delay_ms / 1000),
                                        a.host, a.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
