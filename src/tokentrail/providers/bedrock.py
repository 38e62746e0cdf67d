"""Amazon Bedrock through boto3's ``bedrock-runtime`` client: Converse and InvokeModel.

Pure reading of botocore's parameters and parsed responses; the call mechanics are the shared
botocore ones (:mod:`._botocore`, which patches ``BaseClient._make_api_call``), so ``converse``,
``converse_stream``, ``invoke_model`` and ``invoke_model_with_response_stream`` are covered on
every client, and a ``bedrock-runtime`` operation this module does not know is counted as
unrecognised instead of silently missed. Nothing here knows OpenTelemetry.

Provider quirks handled here, each once:

* Converse's ``usage.inputTokens`` EXCLUDES the prompt cache: the input total is
  ``inputTokens + cacheReadInputTokens + cacheWriteInputTokens``. ``cacheDetails`` splits the
  write by TTL (its ``1h`` part is priced higher). ``outputTokens`` is the whole output (the shape
  has no reasoning count). ``totalTokens`` is reconciled against only when no cache figure is
  present (AWS does not say whether it counts the cache). A ConverseStream carries the same usage
  in its ``metadata`` event, read by the same function: a stream and the same call unstreamed give
  the same record.
* InvokeModel bodies are the model family's own JSON. Usage is read by the body's shape, not by
  the model id (an application inference profile's ARN names no family): Anthropic Messages
  (``usage.input_tokens``, Anthropic's rules), Amazon Nova (``usage.inputTokens``, with
  ``cacheRead/WriteInputTokenCount``), OpenAI gpt-oss (``usage.prompt_tokens``), Titan
  (``inputTextTokenCount``, ``results[].tokenCount``), Meta Llama (``prompt_token_count``,
  ``generation_token_count``). Families that report nothing in the body (Cohere, Mistral,
  DeepSeek) are read from Bedrock's ``x-amzn-bedrock-*-token-count`` response headers, whose
  input count excludes the cache as Converse's does.
* An InvokeModelWithResponseStream's last chunk carries ``amazon-bedrock-invocationMetrics``
  (``inputTokenCount`` excluding the cache, ``outputTokenCount``, ``cacheRead/WriteInputTokenCount``):
  the stream's usage, whatever the family; Anthropic's ``message_start`` adds the one-hour split
  of the cache write that the metrics do not give. Without it (a family that sends none), the
  chunks' own counts are read as the body's would be.
* The operation is ``chat`` for message-shaped bodies (``messages``, Cohere's ``message``),
  ``text_completion`` for prompt-in/text-out ones (Titan's ``inputText``, Llama's and Mistral's
  ``prompt``), ``embeddings`` for embedding models.
* The request model is the ``modelId`` as sent: a cross-region inference profile (``us.``,
  ``eu.``, ``global.``) or an ARN is kept whole, and is also the id the call is priced by (the
  catalogue's AWS prices resolve ``us.`` to the regional price, ``global.`` to the global one, and
  a foundation-model or inference-profile ARN to its model). An application inference profile or
  a provisioned model is an opaque id: unpriced (and flagged so), never $0.
* The provider is ``aws.bedrock`` whatever the endpoint (a VPC or FIPS endpoint, a gateway);
  ``provider_hosts`` can rename a host.

Decisions:

* ``count_tokens`` and the async-invoke listings are not billed calls: not recorded.
  ``apply_guardrail`` (billed per text unit), ``start_async_invoke`` (video) and the bidirectional
  speech stream are not token calls tokentrail prices: counted as unrecognised.
* Bedrock's responses carry no response id (only AWS's request id) and Converse names no
  response model: neither is invented; the request model stands for both.
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from .. import semconv as sc
from ..config import Settings
from ..records import RequestInfo, ResponseInfo
from ..usage import Usage, count
from ._botocore import Instrumentation
from ._contract import NOT_RECORDED, NotRecorded, Plan
from ._estimate import input_tokens
from ._locate import Locator
from .anthropic import message_usage
from .openai import chat_usage

__all__ = ["BEDROCK", "BedrockAdapter", "converse_usage", "invoke_usage", "patches"]

BEDROCK = "aws.bedrock"
SERVICE = "bedrock-runtime"
_METRICS = "amazon-bedrock-invocationMetrics"
# Operations of bedrock-runtime that are not billed model calls.
_NOT_BILLED = frozenset({"CountTokens", "GetAsyncInvoke", "ListAsyncInvokes"})
_HEADER = "x-amzn-bedrock-{}-token-count"


# ---------------------------------------------------------------------------------------------
# Usage in the normal form
# ---------------------------------------------------------------------------------------------


def _aws_usage(
    uncached: Any, output: Any, read: Any, written: Any, written_1h: Any = None, total: Any = None
) -> Usage:
    """Bedrock's own counting (Converse, Nova, invocation metrics, headers): the input count
    excludes the cache, so the input total is its sum with the cache reads and writes."""
    problems: list[str] = []
    uncached_n = count(uncached, "inputTokens", problems)
    read_n = count(read, "cacheReadInputTokens", problems)
    written_n = count(written, "cacheWriteInputTokens", problems)
    record = Usage.of(
        input_tokens=uncached_n + read_n + written_n,
        output_tokens=output,
        cache_read_tokens=read_n,
        cache_write_tokens=written_n,
        cache_write_1h_tokens=written_1h,
        # Whether totalTokens counts the cache AWS does not say: reconciled only without one.
        reported_total_tokens=total if not (read_n or written_n) else None,
    )
    if problems:
        record = replace(record, problems=(*problems, *record.problems))
    return record


def converse_usage(usage: Any) -> Usage | None:
    """Converse's ``TokenUsage`` (also a ConverseStream ``metadata`` event's) in the normal form."""
    if not isinstance(usage, Mapping):
        return None
    written_1h = None
    details = usage.get("cacheDetails")
    if isinstance(details, list | tuple):
        written_1h = sum(
            entry.get("inputTokens") or 0
            for entry in details
            if isinstance(entry, Mapping)
            and entry.get("ttl") == "1h"
            and isinstance(entry.get("inputTokens"), int)
        )
    return _aws_usage(
        usage.get("inputTokens"),
        usage.get("outputTokens"),
        usage.get("cacheReadInputTokens"),
        usage.get("cacheWriteInputTokens"),
        written_1h,
        usage.get("totalTokens"),
    )


def invoke_usage(payload: Any) -> Usage | None:
    """The usage an InvokeModel body reports, read by the body's shape; None if it reports none."""
    if not isinstance(payload, Mapping):
        return None
    usage = payload.get("usage")
    if isinstance(usage, Mapping):
        if "input_tokens" in usage or "output_tokens" in usage:  # Anthropic Messages
            return message_usage(usage)
        if "inputTokens" in usage or "outputTokens" in usage:  # Amazon Nova
            return _aws_usage(
                usage.get("inputTokens"),
                usage.get("outputTokens"),
                usage.get("cacheReadInputTokenCount", usage.get("cacheReadInputTokens")),
                usage.get("cacheWriteInputTokenCount", usage.get("cacheWriteInputTokens")),
            )
        if "prompt_tokens" in usage:  # OpenAI gpt-oss: a chat completion
            return chat_usage(usage)
    if "inputTextTokenCount" in payload:  # Titan text (output per result) and Titan embeddings
        results = payload.get("results")
        output = None
        if isinstance(results, list | tuple):
            output = sum(r.get("tokenCount") or 0 for r in results if isinstance(r, Mapping))
        return Usage.of(input_tokens=payload.get("inputTextTokenCount"), output_tokens=output)
    if "prompt_token_count" in payload or "generation_token_count" in payload:  # Meta Llama
        return Usage.of(
            input_tokens=payload.get("prompt_token_count"),
            output_tokens=payload.get("generation_token_count"),
        )
    return None


def header_usage(headers: Any) -> Usage | None:
    """The ``x-amzn-bedrock-*-token-count`` response headers (any family); None without them."""
    if not isinstance(headers, Mapping):
        return None
    uncached, output = headers.get(_HEADER.format("input")), headers.get(_HEADER.format("output"))
    if uncached is None and output is None:
        return None
    return _aws_usage(
        _number(uncached),
        _number(output),
        _number(headers.get(_HEADER.format("cache-read-input"))),
        _number(headers.get(_HEADER.format("cache-write-input"))),
    )


def metrics_usage(metrics: Any, written_1h: Any = None) -> Usage | None:
    """A stream's ``amazon-bedrock-invocationMetrics``."""
    if not isinstance(metrics, Mapping):
        return None
    return _aws_usage(
        metrics.get("inputTokenCount"),
        metrics.get("outputTokenCount"),
        metrics.get("cacheReadInputTokenCount"),
        metrics.get("cacheWriteInputTokenCount"),
        written_1h,
    )


def _number(value: Any) -> Any:
    """A header's digits as an int; anything else as it came (and flagged by ``Usage.of``)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

# (where, key, attribute): Converse's inferenceConfig, and the families' InvokeModel bodies.
_PARAMS: tuple[tuple[str | None, str, str], ...] = (
    ("inferenceConfig", "maxTokens", sc.REQUEST_MAX_TOKENS),
    ("inferenceConfig", "temperature", sc.REQUEST_TEMPERATURE),
    ("inferenceConfig", "topP", sc.REQUEST_TOP_P),
    (None, "max_tokens", sc.REQUEST_MAX_TOKENS),  # Anthropic, Mistral, Cohere, gpt-oss
    (None, "max_gen_len", sc.REQUEST_MAX_TOKENS),  # Llama
    ("textGenerationConfig", "maxTokenCount", sc.REQUEST_MAX_TOKENS),  # Titan
    ("inferenceConfig", "max_new_tokens", sc.REQUEST_MAX_TOKENS),  # Nova
    (None, "temperature", sc.REQUEST_TEMPERATURE),
    ("textGenerationConfig", "temperature", sc.REQUEST_TEMPERATURE),
    (None, "top_p", sc.REQUEST_TOP_P),
    ("textGenerationConfig", "topP", sc.REQUEST_TOP_P),
    (None, "top_k", sc.REQUEST_TOP_K),
)
_HOLDERS = tuple(dict.fromkeys(where for where, _, _ in _PARAMS))
_NUMBERS = (int, float)
_EMPTY: Mapping[str, Any] = {}


def request_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """Request parameters as attributes (only the ones present)."""
    params: dict[str, Any] = {}
    # Each holder looked up (and checked, an ABC isinstance: slow) once, not once per key.
    holders = {}
    for where in _HOLDERS:
        holder = body if where is None else body.get(where)
        holders[where] = holder if isinstance(holder, Mapping) else _EMPTY
    for where, key, attribute in _PARAMS:
        value = holders[where].get(key)
        if isinstance(value, _NUMBERS) and type(value) is not bool and attribute not in params:
            params[attribute] = value
    config = body.get("inferenceConfig")
    stop = config.get("stopSequences") if isinstance(config, Mapping) else body.get("stop_sequences")
    if isinstance(stop, list | tuple) and stop and all(isinstance(s, str) for s in stop):
        params[sc.REQUEST_STOP_SEQUENCES] = tuple(stop)
    return params


def _invoke_operation(model: str, body: Any) -> str:
    if "embed" in model.lower():
        return "embeddings"
    if isinstance(body, Mapping) and ("messages" in body or "message" in body):
        return "chat"
    if isinstance(body, Mapping) and ("prompt" in body or "inputText" in body):
        return "text_completion"
    return "chat"


def _json_body(body: Any) -> Any:
    """An InvokeModel request body as JSON, if it is bytes or text (a file is the SDK's to read)."""
    if isinstance(body, bytes | bytearray | str):
        try:
            return json.loads(body)
        except ValueError:
            return None
    return None


# ---------------------------------------------------------------------------------------------
# Content (only read when the user opted in to content capture)
# ---------------------------------------------------------------------------------------------


def _parts(content: Any) -> list[dict[str, Any]]:
    """Converse content blocks as GenAI message parts."""
    parts: list[dict[str, Any]] = []
    for block in content if isinstance(content, list | tuple) else ():
        if not isinstance(block, Mapping):
            continue
        if "text" in block:
            parts.append({"type": "text", "content": block["text"]})
        elif "toolUse" in block:
            use = block["toolUse"]
            parts.append({"type": "tool_call", "id": use.get("toolUseId"), "name": use.get("name"),
                          "arguments": use.get("input")})  # fmt: skip
        elif "reasoningContent" in block:
            text = (block["reasoningContent"].get("reasoningText") or {}).get("text")
            parts.append({"type": "reasoning", "content": text})
        elif block:
            parts.append({"type": next(iter(block))})
    return parts


def _converse_messages(params: Mapping[str, Any]) -> tuple[list[Any], list[Any] | None]:
    messages = params.get("messages")
    converted = [
        {"role": message.get("role") or "user", "parts": _parts(message.get("content"))}
        for message in (messages if isinstance(messages, list | tuple) else ())
        if isinstance(message, Mapping)
    ]
    system = _parts(params.get("system"))
    return converted, system or None


def _output(parts: list[dict[str, Any]], finish_reasons: tuple[str, ...]) -> list[Any]:
    message: dict[str, Any] = {"role": "assistant", "parts": parts}
    if finish_reasons:
        message["finish_reason"] = finish_reasons[0]
    return [message]


# ---------------------------------------------------------------------------------------------
# Responses and streams
# ---------------------------------------------------------------------------------------------


def _reasons(*values: Any) -> tuple[str, ...]:
    return tuple(value for value in values if isinstance(value, str) and value)


class Converse:
    """``Converse`` and ``ConverseStream``: Bedrock's one message shape for every model."""

    def response(self, parsed: Any, request: RequestInfo) -> ResponseInfo:
        reasons = _reasons(parsed.get("stopReason"))
        info = ResponseInfo(finish_reasons=reasons, usage=converse_usage(parsed.get("usage")))
        if request.input_messages is not None:
            message = (parsed.get("output") or {}).get("message") or {}
            info.output_messages = _output(_parts(message.get("content")), reasons)
        return info

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> ConverseStreamState:
        return ConverseStreamState(capture=request.input_messages is not None)


class ConverseStreamState:
    """A ConverseStream: the stop reason from ``messageStop``, the usage from ``metadata``."""

    __slots__ = ("capture", "stop_reason", "texts", "usage")

    def __init__(self, capture: bool = False) -> None:
        self.capture = capture
        self.stop_reason: Any = None
        self.usage: Any = None
        self.texts: dict[int, list[str]] = {}

    def add(self, event: Any) -> bool:
        if "contentBlockDelta" in event:  # the most frequent event: nothing to do unless capturing
            if self.capture:
                delta = event["contentBlockDelta"]
                text = (delta.get("delta") or {}).get("text")
                if isinstance(text, str):
                    self.texts.setdefault(delta.get("contentBlockIndex", 0), []).append(text)
        elif "metadata" in event:
            self.usage = event["metadata"].get("usage")
        elif "messageStop" in event:
            self.stop_reason = event["messageStop"].get("stopReason")
        return True

    def result(self) -> ResponseInfo:
        reasons = _reasons(self.stop_reason)
        info = ResponseInfo(finish_reasons=reasons, usage=converse_usage(self.usage))
        if self.capture:
            parts = [{"type": "text", "content": "".join(self.texts[i])} for i in sorted(self.texts)]
            info.output_messages = _output(parts, reasons)
        return info


def _finish_reasons(payload: Mapping[str, Any]) -> tuple[str, ...]:
    """Every family's finish reasons: top level (Anthropic, Llama, Nova, Cohere) or per output."""
    found = list(
        _reasons(
            payload.get("stop_reason"),
            payload.get("stopReason"),
            payload.get("finish_reason"),
            payload.get("completionReason"),  # Titan's stream
            (payload.get("messageStop") or {}).get("stopReason"),  # Nova's stream
        )
    )
    for key, field in (
        ("results", "completionReason"),
        ("outputs", "stop_reason"),
        ("generations", "finish_reason"),
    ):
        entries = payload.get(key)
        for entry in entries if isinstance(entries, list | tuple) else ():
            if isinstance(entry, Mapping):
                found.extend(_reasons(entry.get(field)))
    choices = payload.get("choices")
    for choice in choices if isinstance(choices, list | tuple) else ():
        if isinstance(choice, Mapping):
            found.extend(_reasons(choice.get("finish_reason") or choice.get("stop_reason")))
    return tuple(found)


def _headers(parsed: Mapping[str, Any]) -> Any:
    return (parsed.get("ResponseMetadata") or {}).get("HTTPHeaders")


class InvokeModel:
    """``InvokeModel``: the model family's own JSON body (read from the application's own reads of
    it, see :mod:`._botocore`), else the token-count headers."""

    def response(self, parsed: Any, request: RequestInfo) -> ResponseInfo:
        body = parsed.get("body")
        payload = None
        if isinstance(body, bytes | bytearray) and body:
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
        if not isinstance(payload, Mapping):
            return ResponseInfo(usage=header_usage(_headers(parsed)))
        model, response_id = payload.get("model"), payload.get("id")
        usage = invoke_usage(payload)
        if usage is not None and usage.reported_total_tokens is not None:
            # Reconciled already (a mismatch is in its problems); a stream's metrics carry no total.
            usage = replace(usage, reported_total_tokens=None)
        return ResponseInfo(
            response_model=model if isinstance(model, str) else None,
            response_id=response_id if isinstance(response_id, str) else None,
            finish_reasons=_finish_reasons(payload),
            usage=usage or header_usage(_headers(parsed)),
        )

    def stream_state(self, request: RequestInfo, hide_usage_chunk: bool) -> InvokeStreamState:
        return InvokeStreamState()


class InvokeStreamState:
    """An InvokeModelWithResponseStream: keeps each chunk's bytes (one list append per event) and
    reads them at the end, off the calling thread."""

    __slots__ = ("chunks",)

    def __init__(self) -> None:
        self.chunks: list[Any] = []

    def add(self, event: Any) -> bool:
        chunk = event.get("chunk")
        if chunk is not None:
            self.chunks.append(chunk.get("bytes"))
        return True

    def result(self) -> ResponseInfo:
        info = ResponseInfo()
        reasons: list[str] = []
        metrics: Any = None
        anthropic: dict[str, Any] = {}  # Anthropic's usage fields, cumulative: the latest wins
        counted: Usage | None = None
        for data in self.chunks:
            try:
                payload = json.loads(data)
            except (TypeError, ValueError):
                continue
            if not isinstance(payload, Mapping):
                continue
            metrics = payload.get(_METRICS, metrics)
            kind = payload.get("type")
            if kind == "message_start":  # Anthropic Messages
                message = payload.get("message") or {}
                info.response_model, info.response_id = message.get("model"), message.get("id")
                anthropic.update(message.get("usage") or {})
            elif kind == "message_delta":
                anthropic.update(payload.get("usage") or {})
                reasons.extend(_reasons((payload.get("delta") or {}).get("stop_reason")))
            else:
                reasons.extend(_finish_reasons(payload))
                counted = _stream_counts(payload) or counted
        info.finish_reasons = tuple(reasons)
        written_1h = (anthropic.get("cache_creation") or {}).get("ephemeral_1h_input_tokens")
        info.usage = (
            metrics_usage(metrics, written_1h) or (message_usage(anthropic) if anthropic else None) or counted
        )
        return info


def _stream_counts(payload: Mapping[str, Any]) -> Usage | None:
    """A family's own counts in a stream chunk, for a stream without invocation metrics."""
    if "totalOutputTextTokenCount" in payload:  # Titan: the last chunk
        return Usage.of(
            input_tokens=payload.get("inputTextTokenCount"),
            output_tokens=payload["totalOutputTextTokenCount"],
        )
    if "generation_token_count" in payload:  # Llama: cumulative per chunk
        return Usage.of(
            input_tokens=payload.get("prompt_token_count"),
            output_tokens=payload.get("generation_token_count"),
        )
    return invoke_usage(payload) if "usage" in payload else None


_CONVERSE = Converse()
_INVOKE = InvokeModel()


# ---------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------


def _bedrock(kind: Hashable, host: str | None, port: int | None) -> str:
    return BEDROCK


class BedrockAdapter:
    """Decides which ``bedrock-runtime`` operations are LLM calls and describes them."""

    service = SERVICE

    def __init__(self) -> None:
        self._locate = Locator(_bedrock)

    def plan(
        self, client: Any, operation: str, params: Mapping[str, Any], settings: Settings
    ) -> Plan | NotRecorded | None:
        if operation in ("Converse", "ConverseStream"):
            endpoint: Any = _CONVERSE
            body: Any = params
            name = "chat"
        elif operation in ("InvokeModel", "InvokeModelWithResponseStream"):
            endpoint = _INVOKE
            body = _json_body(params.get("body"))
            name = _invoke_operation(str(params.get("modelId") or ""), body)
        else:
            return NOT_RECORDED if operation in _NOT_BILLED else None
        model = params.get("modelId")
        model = model if isinstance(model, str) and model else None
        provider, address, port = self._locate(None, client.meta.endpoint_url, settings.provider_hosts)
        request = RequestInfo(
            operation=name,
            provider=provider,
            request_model=model,
            server_address=address,
            server_port=port,
            stream=operation.endswith("Stream"),
            params=partial(request_params, body) if isinstance(body, Mapping) else {},
            price_model=model,  # its region prefix sets the price; nothing in the response names one
        )
        if isinstance(body, Mapping) and name == "chat":
            messages, system = body.get("messages"), body.get("system")
            request.input_estimate = partial(_input_estimate, provider, model or "", messages, system)
            if settings.content.enabled and endpoint is _CONVERSE:
                request.input_messages, request.system_instructions = _converse_messages(body)
        return Plan(request=request, endpoint=endpoint)


def _input_estimate(provider: str, model: str, messages: Any, system: Any) -> tuple[int | None, float]:
    """An approximate input count when a budget asks (Bedrock's models have no offline tokenizer here)."""
    tokens, _, margin, _ = input_tokens(provider, model, messages, None, system)
    return tokens, margin


def patches() -> Instrumentation | None:
    """The patch set for the installed botocore (boto3's core), or None if it is not installed."""
    try:
        import botocore.client  # noqa: F401
    except ImportError:
        return None
    return Instrumentation("botocore", (BedrockAdapter(),))
