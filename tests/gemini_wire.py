"""Gemini wire-format bodies and a mock transport that answers like the API does.

Bodies follow the API reference (camelCase JSON, zero counts left out) and parse with the SDK's own
types: ``GenerateContentResponse`` with ``usageMetadata`` (thoughts beside the candidates, the
cached content inside the prompt, tool-use prompt tokens outside it), SSE streams whose every
chunk carries the running usage total, embeddings, Vertex AI ``predict``, Google-shaped errors.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MODEL = "gemini-2.5-flash"
VERSION = "gemini-2.5-flash"  # what the API answers in modelVersion for the stable alias
RESPONSE_ID = "r3spOnSe-1d"
WORDS = ["Hel", "lo", " there", "!"]


def http_module() -> Any:
    """The HTTP library google-genai is built on here: httpx2 where the SDK takes it (and it is
    installed: the 3.x default), else httpx (google-genai 1.x knows only httpx)."""
    from google.genai import _api_client

    try:
        import httpx2
    except ImportError:  # pragma: no cover - httpx2 ships with every google-genai 2.x/3.x
        httpx2 = None
    if httpx2 is not None and hasattr(_api_client, "httpx2"):
        return httpx2
    import httpx

    return httpx


def usage(
    prompt: int = 1500,
    candidates: int = 40,
    thoughts: int = 120,
    cached: int = 1024,
    tool_use: int = 0,
    prompt_details: list[tuple[str, int]] | None = None,
    candidates_details: list[tuple[str, int]] | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    """``usageMetadata`` as the API sends it (``totalTokenCount`` is the sum of all four counts)."""
    body: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates:
        body["candidatesTokenCount"] = candidates
    body["totalTokenCount"] = prompt + candidates + thoughts + tool_use if total is None else total
    if cached:
        body["cachedContentTokenCount"] = cached
        body["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if tool_use:
        body["toolUsePromptTokenCount"] = tool_use
    if thoughts:
        body["thoughtsTokenCount"] = thoughts
    details = prompt_details if prompt_details is not None else [("TEXT", prompt)]
    body["promptTokensDetails"] = [{"modality": m, "tokenCount": n} for m, n in details]
    if candidates:
        out = candidates_details if candidates_details is not None else [("TEXT", candidates)]
        body["candidatesTokensDetails"] = [{"modality": m, "tokenCount": n} for m, n in out]
    return body


def response(
    usage_metadata: dict[str, Any] | None = None,
    text: str = "Hello there!",
    finish: str = "STOP",
    version: str = VERSION,
    parts: list[dict[str, Any]] | None = None,
    continuation: bytes | None = None,
) -> dict[str, Any]:
    candidate: dict[str, Any] = {
        "content": {"parts": parts if parts is not None else [{"text": text}], "role": "model"},
        "finishReason": finish,
        "index": 0,
    }
    if continuation is not None:
        candidate["continuationToken"] = base64.b64encode(continuation).decode()
    return {
        "candidates": [candidate],
        "usageMetadata": usage_metadata if usage_metadata is not None else usage(),
        "modelVersion": version,
        "responseId": RESPONSE_ID,
    }


def stream_chunks(usage_metadata: dict[str, Any] | None = None, words: list[str] | None = None) -> list[dict]:
    """One chunk per word; each chunk's usage is the running total, the last one the final usage."""
    final = usage_metadata if usage_metadata is not None else usage()
    words = words if words is not None else WORDS
    chunks = []
    for number, word in enumerate(words, start=1):
        running = dict(final)
        answered = final.get("candidatesTokenCount", 0) * number // len(words)
        running["candidatesTokenCount"] = answered
        running["totalTokenCount"] = (
            final["totalTokenCount"] - final.get("candidatesTokenCount", 0) + answered
        )
        chunk: dict[str, Any] = {
            "candidates": [{"content": {"parts": [{"text": word}], "role": "model"}, "index": 0}],
            "usageMetadata": running,
            "modelVersion": VERSION,
            "responseId": RESPONSE_ID,
        }
        if number == len(words):
            chunk["candidates"][0]["finishReason"] = "STOP"
        chunks.append(chunk)
    return chunks


def sse(chunks: list[dict]) -> bytes:
    return "".join(f"data: {json.dumps(chunk)}\r\n\r\n" for chunk in chunks).encode()


def error(code: int = 429) -> dict[str, Any]:
    status = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT", 500: "INTERNAL"}[code]
    return {
        "error": {
            "code": code,
            "message": "Resource has been exhausted (e.g. check quota).",
            "status": status,
        }
    }


Reply = dict[str, Any] | list[dict[str, Any]] | Callable[[Any], Any]


@dataclass
class FakeGemini:
    """A mock transport that answers like the Gemini API (or Vertex AI) and records what it was sent.

    ``replies`` scripts the answers in order (a generateContent body, a list of stream chunks, or a
    callable returning an HTTP response); once used up, every request gets the defaults.
    """

    usage: dict[str, Any] = field(default_factory=usage)
    status: int = 200
    replies: list[Reply] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def handler(self, request: Any) -> Any:
        httpx = http_module()
        body = json.loads(request.content or b"{}")
        url = str(request.url)
        self.sent.append({"url": url, "body": body, "headers": dict(request.headers)})
        if self.status != 200:
            return httpx.Response(self.status, json=error(self.status))
        stream = ":streamGenerateContent" in url
        if self.replies:
            reply = self.replies.pop(0)
            if callable(reply):
                return reply(request)
            if stream:
                return _sse_response(httpx, sse(reply if isinstance(reply, list) else [reply]))
            return httpx.Response(200, json=reply)
        if stream:
            return _sse_response(httpx, sse(stream_chunks(self.usage)))
        if ":batchEmbedContents" in url:
            count = len(body["requests"])
            return httpx.Response(200, json={
                "embeddings": [{"values": [0.1, 0.2, 0.3]} for _ in range(count)],
                "usageMetadata": {"promptTokenCount": 7 * count, "totalTokenCount": 7 * count},
            })  # fmt: skip
        if ":predict" in url:  # Vertex AI embeddings: a token count per input
            predictions = [
                {
                    "embeddings": {
                        "values": [0.1, 0.2],
                        "statistics": {"token_count": 5.0 + i, "truncated": False},
                    }
                }
                for i in range(len(body["instances"]))
            ]
            return httpx.Response(
                200, json={"predictions": predictions, "metadata": {"billableCharacterCount": 9}}
            )
        return httpx.Response(200, json=response(self.usage))

    def client(self, *, vertexai: bool = False, base_url: str | None = None, **kwargs: Any) -> Any:
        """A ``genai.Client`` whose sync and async requests both come here."""
        from google import genai
        from google.genai import types

        httpx = http_module()
        transport = httpx.MockTransport(self.handler)
        offered = types.HttpOptions.model_fields
        if "httpx_client" in offered:  # google-genai >= 1.50
            options = types.HttpOptions(
                base_url=base_url,
                httpx_client=httpx.Client(transport=transport),
                httpx_async_client=httpx.AsyncClient(transport=transport),
            )
        elif "client_args" in offered:  # 1.13 to 1.49: arguments for the clients it builds
            options = types.HttpOptions(
                base_url=base_url,
                client_args={"transport": transport},
                async_client_args={"transport": transport},
            )
        else:  # before 1.13 there is no option: the clients it built are swapped below
            options = types.HttpOptions(base_url=base_url)
        if vertexai and "api_key" not in kwargs:
            from google.oauth2.credentials import Credentials

            kwargs = {"project": "my-project", "location": "us-central1",
                      "credentials": Credentials(token="ya29.fake-token"), **kwargs}  # fmt: skip
            client = genai.Client(vertexai=True, http_options=options, **kwargs)
        else:
            kwargs.setdefault("api_key", "AIza-fake-SECRET")
            client = genai.Client(vertexai=vertexai, http_options=options, **kwargs)
        if "httpx_client" not in offered and "client_args" not in offered:
            client._api_client._httpx_client = httpx.Client(transport=transport)
            client._api_client._async_httpx_client = httpx.AsyncClient(transport=transport)
        return client


def _sse_response(httpx: Any, content: bytes) -> Any:
    return httpx.Response(200, content=content, headers={"content-type": "text/event-stream"})


def _sdk_keeps_response_id(vertexai: bool) -> bool:
    """Whether this google-genai hands ``responseId`` back (the Gemini API's: lost up to 1.20, read in 1.30).

    Asked of the SDK itself over the mock, once, when the tests are collected (nothing is instrumented
    yet), so a span can only be expected to name what the application could see.
    """
    result = FakeGemini().client(vertexai=vertexai).models.generate_content(model=MODEL, contents="probe")
    return result.response_id == RESPONSE_ID


# gen_ai.provider.name -> whether the SDK reads the response id on that platform.
SDK_KEEPS_RESPONSE_ID = {
    "gcp.gemini": _sdk_keeps_response_id(False),
    "gcp.vertex_ai": _sdk_keeps_response_id(True),
}
